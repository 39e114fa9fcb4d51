// Certificates for federation's gRPC: a grpc-js CertificateProvider that the server's identity and
// the trust bundle are pushed into (so renewals and rotations need no restart), client credentials
// that check the peer server's SPIFFE ID, and reading the caller's identity off a call.
import * as grpc from '@grpc/grpc-js';

type CertificateProvider = grpc.experimental.CertificateProvider;
type CaCertificateUpdateListener = grpc.experimental.CaCertificateUpdateListener;
type IdentityCertificateUpdateListener = grpc.experimental.IdentityCertificateUpdateListener;
const { credentials } = grpc;
import type { PeerCertificate } from 'node:tls';
import { intermediateDcOf } from '../ca/index.js';
import { parseServerSpiffeId, serverSpiffeId, uriSans as uriSansOf } from '../core/names.js';

/** The URI SANs of a peer certificate as Node reports them. */
export function uriSans(cert: PeerCertificate | undefined): string[] {
  return uriSansOf(cert?.subjectaltname);
}

/**
 * The DC whose intermediate signed `cert`, from its issuer's CN (see ca's intermediateDcOf). Only
 * meaningful for a certificate whose chain verified: the root names each intermediate it signs.
 */
export function issuingDcOf(cert: PeerCertificate | undefined): string | undefined {
  const cn = cert?.issuer?.CN;
  return typeof cn === 'string' ? intermediateDcOf(cn) : undefined;
}

/**
 * The DC of a verified server identity in `trustDomain`, or undefined. The identity counts only when
 * that DC's own intermediate signed it: every DC's CA can sign any URI in the trust domain, and a
 * secondary must not be able to speak for the primary or for another secondary.
 */
export function serverDcOf(cert: PeerCertificate | undefined, trustDomain: string): string | undefined {
  const issuer = issuingDcOf(cert);
  for (const u of uriSans(cert)) {
    const id = parseServerSpiffeId(u);
    if (id && id.trustDomain === trustDomain && id.dc === issuer) return id.dc;
  }
  return undefined;
}

/** The verified client certificate of a call (grpc-js only hands it over once the chain verified). */
export function callerCertificate(call: object): PeerCertificate | undefined {
  const ctx = (call as unknown as { getAuthContext?: () => { sslPeerCertificate?: PeerCertificate } }).getAuthContext?.();
  return ctx?.sslPeerCertificate;
}

/** Pushes the latest identity and roots to whoever listens (grpc-js server credentials). */
export class PushedCertificates implements CertificateProvider {
  private ca: Buffer | null = null;
  private identity: { certificate: Buffer; privateKey: Buffer } | null = null;
  private readonly caListeners = new Set<CaCertificateUpdateListener>();
  private readonly idListeners = new Set<IdentityCertificateUpdateListener>();

  set(roots: string[], certChainPem: string, keyPem: string): void {
    this.ca = Buffer.from(roots.join('\n'));
    this.identity = { certificate: Buffer.from(certChainPem), privateKey: Buffer.from(keyPem) };
    for (const l of this.caListeners) l({ caCertificate: this.ca });
    for (const l of this.idListeners) l(this.identity);
  }

  // The latest value goes to a new listener on the next tick: grpc-js registers its own watcher
  // only after adding the listener, so a value handed over at once would reach nobody.
  addCaCertificateListener(l: CaCertificateUpdateListener): void {
    this.caListeners.add(l);
    setImmediate(() => {
      if (this.ca && this.caListeners.has(l)) l({ caCertificate: this.ca });
    });
  }
  removeCaCertificateListener(l: CaCertificateUpdateListener): void {
    this.caListeners.delete(l);
  }
  addIdentityCertificateListener(l: IdentityCertificateUpdateListener): void {
    this.idListeners.add(l);
    setImmediate(() => {
      if (this.identity && this.idListeners.has(l)) l(this.identity);
    });
  }
  removeIdentityCertificateListener(l: IdentityCertificateUpdateListener): void {
    this.idListeners.delete(l);
  }
}

/**
 * Client credentials for a call to DC `peerDc`'s servers: trust only `roots`, present our server
 * identity when we have one, and accept only the peer server's SPIFFE ID (whatever host we dialed:
 * a gateway in between forwards the bytes untouched).
 */
export function clientCredentials(opts: {
  roots: string[];
  certChainPem?: string;
  keyPem?: string;
  trustDomain: string;
  peerDc: string;
}): grpc.ChannelCredentials {
  const expected = serverSpiffeId({ trustDomain: opts.trustDomain, dc: opts.peerDc });
  return credentials.createSsl(
    Buffer.from(opts.roots.join('\n')),
    opts.keyPem ? Buffer.from(opts.keyPem) : null,
    opts.certChainPem ? Buffer.from(opts.certChainPem) : null,
    {
      checkServerIdentity: (_host, cert) => {
        const got = uriSans(cert);
        if (!got.includes(expected)) return new Error(`the server presented ${got.join(', ') || 'no SPIFFE ID'}, expected ${expected}`);
        const issuer = issuingDcOf(cert);
        if (issuer !== opts.peerDc)
          return new Error(`the server presented ${expected} signed by the CA of ${issuer ?? 'no datacenter'}, not of ${opts.peerDc}`);
        return undefined;
      },
    },
  );
}
