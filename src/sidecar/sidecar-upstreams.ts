// The sidecar's upstream side: one local listener per upstream, each call dialed over mTLS to one
// of the upstream's endpoints (round robin, the next on a refused connection), its identity checked.
import type net from 'node:net';
import tls from 'node:tls';
import type { FlowIdentity } from '../dataflow/index.js';
import type { DataPath } from '../netio/index.js';
import { spiffeOf, traceIdFromKeylog } from './identity.js';
import { RelayTarget, relay, relayRead } from './relay.js';
import type { SidecarUpstream } from './sidecar-config.js';
import { ZERO_TRACE, listen, type SidecarContext } from './sidecar-context.js';
import { describeTlsError } from './tls-refusal.js';

export class UpstreamListeners {
  /** Local listeners by upstreamKey(): one service may be an upstream in several DCs. */
  readonly outbound = new Map<string, { server: net.Server; rr: number; name: string }>();
  /** How the upstream listeners accept (chosen at start, see netio/). */
  dataPath: DataPath | undefined;

  constructor(private readonly ctx: SidecarContext) {}

  async start(u: SidecarUpstream): Promise<void> {
    const key = upstreamKey(u);
    // The caller's bytes are read through the shared buffer, and kept until the upstream is connected.
    const path = this.dataPath!;
    const server = path.createServer((accepted) => {
      const target = new RelayTarget();
      const client: net.Socket = path.socketOf(
        accepted,
        relayRead(this.ctx.readBuffer, target, () => client),
      );
      this.dial(key, client, target);
    });
    const entry = { server, rr: 0, name: u.name };
    await listen(entry.server, u.localBindHost, u.localBindPort);
    this.outbound.set(key, entry);
  }

  private dial(key: string, client: net.Socket, clientTarget: RelayTarget): void {
    const up = this.ctx.config.upstreams.find((x) => upstreamKey(x) === key);
    const entry = this.outbound.get(key);
    const name = entry?.name ?? key;
    const start = Date.now();
    this.ctx.sockets.add(client);
    client.once('close', () => this.ctx.sockets.delete(client));
    client.on('error', () => {});
    const dest = (spiffeId: string): FlowIdentity => ({ ...this.ctx.identity(spiffeId, name), service: name });
    if (!up || !entry || up.endpoints.length === 0) {
      client.destroy();
      this.ctx.record({
        traceId: ZERO_TRACE,
        requestIndex: 0,
        hop: 'client-sidecar',
        source: this.ctx.self(),
        destination: dest(''),
        sni: '',
        verdict: 'error',
        reason: `no healthy endpoint for upstream ${name}`,
        intentionId: '',
        startTime: start,
        durationMs: 0,
        bytesIn: 0,
        bytesOut: 0,
      });
      return;
    }
    // The endpoints as they are now: a push while this call fails over does not reshuffle it.
    const endpoints = up.endpoints;
    const first = entry.rr++;
    const refused: string[] = [];
    const attempt = (k: number): void => {
      const ep = endpoints[(first + k) % endpoints.length];
      const sessionKey = `${ep.host}:${ep.port}/${ep.sni}/${ep.spiffeId}`;
      let traceId = ZERO_TRACE;
      let identityError: string | undefined;
      const serverTarget = new RelayTarget();
      // (Node's tls.connect takes `onread` since v15.1; its type here lacks it.)
      const options: tls.ConnectionOptions & { onread: net.OnReadOpts } = {
        host: ep.host,
        port: ep.port,
        servername: ep.sni,
        secureContext: this.ctx.secureContext,
        session: this.ctx.sessions.get(sessionKey),
        minVersion: 'TLSv1.3',
        ALPNProtocols: up.protocol === 'http2' || up.protocol === 'grpc' ? ['h2'] : undefined,
        onread: relayRead(this.ctx.readBuffer, serverTarget, () => server),
        checkServerIdentity: (_host, cert) => {
          const got = spiffeOf(cert);
          if (got !== ep.spiffeId) {
            identityError = `upstream presented ${got ?? 'no SPIFFE ID'}, expected ${ep.spiffeId}`;
            return new Error(identityError);
          }
          return undefined;
        },
      };
      const server: tls.TLSSocket = tls.connect(options);
      server.setNoDelay(true);
      this.ctx.sockets.add(server);
      const contextAtDial = this.ctx.secureContext;
      server.on('session', (session: Buffer) => {
        if (this.ctx.secureContext === contextAtDial) this.ctx.sessions.set(sessionKey, session);
      });
      server.on('keylog', (line) => {
        if (traceId === ZERO_TRACE) traceId = traceIdFromKeylog(line) ?? ZERO_TRACE;
      });
      let tcpConnected = false;
      let retried = false;
      server.once('connect', () => (tcpConnected = true));
      let ok = false;
      let failure: string | undefined;
      server.once('secureConnect', () => {
        ok = true;
        relay(client, clientTarget, server, serverTarget);
      });
      server.once('error', (err: Error & { code?: string }) => {
        // Nothing reached that endpoint (its process is gone, its port closed): the caller's bytes are
        // still unread, so the next endpoint can take the call before a push says this one is dead.
        if (!tcpConnected && k + 1 < endpoints.length && !client.destroyed) {
          retried = true;
          refused.push(`${ep.host}:${ep.port} (${err.code ?? err.message})`);
          this.ctx.log.warn('upstream endpoint refused the connection; trying the next', {
            upstream: name,
            endpoint: `${ep.host}:${ep.port}`,
            error: err.code ?? err.message,
          });
          attempt(k + 1);
          return;
        }
        failure = identityError ?? describeTlsError(err);
        client.destroy();
      });
      server.once('close', () => {
        this.ctx.sockets.delete(server);
        if (retried) return;
        if (!ok) client.destroy();
        const reason = failure ?? (ok ? 'connected' : 'connection closed during handshake (refused by the destination)');
        this.ctx.record({
          traceId,
          requestIndex: 0,
          hop: 'client-sidecar',
          source: this.ctx.self(),
          destination: dest(ep.spiffeId),
          sni: ep.sni,
          verdict: ok && !failure ? 'allowed' : ok ? 'error' : identityError ? 'denied' : 'error',
          reason: refused.length ? `${reason}, after ${refused.join(', ')} refused` : reason,
          intentionId: '',
          startTime: start,
          durationMs: Date.now() - start,
          bytesIn: server.bytesRead,
          bytesOut: server.bytesWritten,
        });
      });
    };
    attempt(0);
  }
}

/** An upstream's identity among a sidecar's: the same service may be an upstream in several DCs. */
export function upstreamKey(u: SidecarUpstream): string {
  return `${u.namespace}/${u.name}@${u.datacenter}`;
}
