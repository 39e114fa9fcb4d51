// What the security tests share: regions in this process, waiting for a condition, certificates a
// test crafts (self-signed, from a CA of its own, from a DC's own intermediate), and clients that
// present them: a raw TLS probe and a federation gRPC client.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import * as x509 from '@peculiar/x509';
import { loadRegionConfig } from '../../src/config/index.js';
import { startRegion, type Region } from '../../src/region/index.js';
import { silentLogger } from '../../src/telemetry/index.js';
import { createRoot, signLeaf } from '../../src/ca/index.js';
import { federationService, type FederationClient, type PeerMessage } from '../../src/federation/proto.js';
import { until } from '../harness/until.js';

x509.cryptoProvider.set(webcrypto as never);

export interface Identity {
  certPem: string;
  keyPem: string;
  /** Certificates sent after the leaf (intermediates, or a rogue root). */
  chain: string[];
}

/** A server region in this process, on `host` with ports picked at bind time; nothing persisted. */
export async function region(dc: string, host: string, flags: Record<string, string> = {}): Promise<Region> {
  const config = loadRegionConfig({
    mode: 'server',
    flags: {
      dc,
      'http-addr': `${host}:0`,
      'grpc-addr': `${host}:0`,
      'grpc-tls-addr': `${host}:0`,
      'acl-default-policy': 'allow',
      'log-level': 'error',
      ...flags,
    },
    env: {},
  });
  return startRegion({ ...config, dataDir: undefined }, { heartbeatMs: 300, processMetrics: false, logger: silentLogger });
}

export { until };

/** One HTTP call to a server's API (the harness's). */
export { api as http } from '../harness/server-process.js';

/** A certificate that signs itself, with `uri` as its SPIFFE ID: right name, no trusted issuer. */
export async function selfSigned(uri: string): Promise<Identity> {
  const keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: 'CN=self-signed',
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 3_600_000),
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: uri }]),
    ],
  });
  const der = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { certPem: cert.toString('pem'), keyPem: x509.PemConverter.encode(der, 'PRIVATE KEY'), chain: [] };
}

/**
 * A leaf for `uri` from a CA made here for the same trust domain, named like the real first root:
 * a verifier that matched issuers by name alone would take it.
 */
export async function rogueCa(trustDomain: string, uri: string): Promise<Identity> {
  const root = await createRoot({ trustDomain, commonName: 'Isthmus CA Primary Cert 1', ttlMs: 3_600_000 });
  const leaf = await signLeaf({ signer: { certPem: root.certPem, keyPem: root.keyPem }, spiffeId: uri, dnsNames: [], commonName: 'rogue', ttlMs: 3_600_000 });
  return { certPem: leaf.certPem, keyPem: leaf.keyPem, chain: [root.certPem] };
}

/** A leaf for `uri` signed with `r`'s own intermediate key: what that DC's CA could mint for any name. */
export async function mintedBy(r: Region, uri: string): Promise<Identity> {
  const inter = r.ca.intermediate()!;
  const key = r.store.get<string>('ca-secrets', inter.KeyRef)!.value;
  const leaf = await signLeaf({ signer: { certPem: inter.CertPEM, keyPem: key }, spiffeId: uri, dnsNames: [], commonName: 'minted', ttlMs: 3_600_000 });
  return { certPem: leaf.certPem, keyPem: leaf.keyPem, chain: [inter.CertPEM] };
}

export function pemChain(id: Identity): string {
  return [id.certPem, ...id.chain].map((c) => c.trim()).join('\n') + '\n';
}

export interface ProbeResult {
  /** The client finished its side of the handshake (in TLS 1.3 before the server checked its certificate). */
  handshake: boolean;
  /** What came back after the client wrote its payload. */
  data: string;
  /** The other side ended the connection (rather than the probe giving up waiting). */
  closed: boolean;
  /** The handshake resumed a session from a ticket instead of checking certificates anew. */
  resumed: boolean;
  /** The last session ticket the server handed out, to resume with later. */
  session?: Buffer;
  error?: string;
}

/**
 * Dials a TLS listener (directly or through a gateway by SNI), writes `payload` once the client's
 * side of the handshake is done, and reports what came back before the connection ended.
 */
export function probe(opts: {
  host: string;
  port: number;
  servername?: string;
  id?: Identity;
  session?: Buffer;
  payload?: string;
  ms?: number;
}): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let data = '';
    let handshake = false;
    let error: string | undefined;
    let closed = false;
    let resumed = false;
    let session: Buffer | undefined;
    const s = tls.connect({
      host: opts.host,
      port: opts.port,
      servername: opts.servername,
      session: opts.session,
      minVersion: 'TLSv1.3',
      // Which server answered is not the question here; what it refuses is.
      rejectUnauthorized: false,
      ...(opts.id ? { key: opts.id.keyPem, cert: pemChain(opts.id) } : {}),
    });
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ handshake, data, closed, resumed, session, error });
    };
    const timer = setTimeout(finish, opts.ms ?? 4000);
    s.on('session', (b: Buffer) => (session = b));
    s.on('secureConnect', () => {
      handshake = true;
      resumed = s.isSessionReused();
      s.write(opts.payload ?? 'ping');
    });
    s.on('data', (d: Buffer) => {
      data += d.toString();
      finish();
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      error = e.code ?? e.message;
    });
    s.on('close', () => {
      closed = true;
      finish();
    });
  });
}

/** A federation client to `address` that expects `server.<dc>.<td>` and presents `id` (or nothing). */
export function fedClient(address: string, sni: string, roots: string[], id?: Identity): FederationClient {
  const creds = grpc.credentials.createSsl(Buffer.from(roots.join('\n')), id ? Buffer.from(id.keyPem) : null, id ? Buffer.from(pemChain(id)) : null, {
    checkServerIdentity: () => undefined,
  });
  const Ctor = federationService();
  return new Ctor(address, creds, {
    'grpc.ssl_target_name_override': sni,
    'grpc.default_authority': sni,
    // Each client its own connection: a shared one would carry another test's certificate.
    'grpc.use_local_subchannel_pool': 1,
  }) as unknown as FederationClient;
}

export interface CallOutcome<T> {
  ok?: T;
  code?: number;
  details?: string;
}

export function call<Req, Res>(client: FederationClient, method: 'join' | 'signIntermediate' | 'forward' | 'query', req: Req): Promise<CallOutcome<Res>> {
  return new Promise((resolve) => {
    const fn = (client[method] as unknown as (r: Req, o: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Res) => void) => void).bind(client);
    fn(req, { deadline: Date.now() + 8000 }, (err, res) => resolve(err ? { code: err.code, details: err.details } : { ok: res }));
  });
}

export interface StreamOutcome {
  /** Messages the server sent back. */
  received: PeerMessage[];
  /** The status the stream ended with, if it ended within the window. */
  code?: number;
  details?: string;
}

/** Opens a peer stream, sends `messages` in order, listens for `ms`, and ends it. */
export function peerStream(client: FederationClient, messages: PeerMessage[], ms = 1500, until?: (received: PeerMessage[]) => boolean): Promise<StreamOutcome> {
  return new Promise((resolve) => {
    const out: StreamOutcome = { received: [] };
    const stream = client.peerStream();
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      stream.cancel();
      resolve(out);
    };
    const timer = setTimeout(finish, ms);
    stream.on('data', (m: PeerMessage) => {
      out.received.push(m);
      if (until?.(out.received)) finish();
    });
    stream.on('error', (e: grpc.ServiceError) => {
      if (out.code === undefined) {
        out.code = e.code;
        out.details = e.details;
      }
      finish();
    });
    stream.on('status', (s: grpc.StatusObject) => {
      if (out.code === undefined) {
        out.code = s.code;
        out.details = s.details;
      }
    });
    stream.on('end', finish);
    for (const m of messages) stream.write(m);
  });
}
