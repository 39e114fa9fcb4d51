// This server's federation identity: its server certificate (spiffe://<td>/agent/server/dc/<dc>),
// renewed at half its life and whenever the trust bundle changes, pushed into the listener's
// credentials without a restart, and the clients to other DCs' servers that present it.
import type { FederationClient } from './proto.js';
import { federationService } from './proto.js';
import type { FederationContext } from './context.js';
import { serverSni } from '../core/names.js';
import { clientCredentials, PushedCertificates } from './tls.js';

interface ServerCert {
  certPem: string;
  keyPem: string;
  chain: string[];
  notAfter: Date;
}

export class ServerIdentity {
  /** What the gRPC listener presents and trusts; rotations are pushed into it. */
  readonly certificates = new PushedCertificates();
  private cert: ServerCert | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private unBundle: (() => void) | undefined;

  constructor(private readonly ctx: FederationContext) {}

  async start(): Promise<void> {
    await this.refresh();
    this.unBundle = this.ctx.ca.onBundle(() => void this.refresh().catch((err) => this.ctx.log.warn('cannot renew the server certificate', { error: err })));
  }

  stop(): void {
    clearTimeout(this.renewTimer);
    this.unBundle?.();
  }

  /**
   * A client for DC `peerDc`'s servers at `address` (a gateway, or a server itself). With `tls`, it
   * trusts only those roots and presents nothing (the join, before this DC has an identity).
   */
  client(address: string, peerDc: string, tls?: { roots: string[]; trustDomain: string }): FederationClient {
    const td = tls?.trustDomain ?? this.ctx.trustDomain();
    const sni = serverSni({ dc: peerDc, trustDomain: td });
    const creds = clientCredentials({
      roots: tls?.roots ?? this.ctx.ca.bundle().roots,
      certChainPem: tls ? undefined : this.cert ? chainPem(this.cert) : undefined,
      keyPem: tls ? undefined : this.cert?.keyPem,
      trustDomain: td,
      peerDc,
    });
    const Ctor = federationService();
    return new Ctor(address, creds, {
      'grpc.ssl_target_name_override': sni,
      'grpc.default_authority': sni,
      'grpc.max_receive_message_length': 64 << 20,
      'grpc.max_send_message_length': 64 << 20,
      'grpc.keepalive_time_ms': 15_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 2000,
    }) as unknown as FederationClient;
  }

  private async refresh(): Promise<void> {
    if (this.ctx.stopped) return;
    const c = await this.ctx.ca.issueServerCert();
    this.cert = c;
    this.certificates.set(this.ctx.ca.bundle().roots, chainPem(c), c.keyPem);
    clearTimeout(this.renewTimer);
    const half = (c.notAfter.getTime() - Date.now()) / 2;
    this.renewTimer = setTimeout(
      () => void this.refresh().catch((err) => this.ctx.log.warn('cannot renew the server certificate', { error: err })),
      Math.max(1000, Math.min(half, 2 ** 31 - 1)),
    );
    this.renewTimer.unref();
  }
}

function chainPem(c: ServerCert): string {
  return [c.certPem.trim(), ...c.chain.map((x) => x.trim())].join('\n') + '\n';
}
