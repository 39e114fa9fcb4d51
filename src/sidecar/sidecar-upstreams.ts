// The sidecar's upstream side: one local listener per upstream. A tcp upstream relays each
// connection (L4) to a target's endpoint over mTLS, its identity checked; an http upstream is an
// HTTP/1.1 proxy (upstream-http.ts) that walks the discovery chain per request, an http2 or grpc
// upstream an h2c (and HTTP/1.1) proxy that walks it per stream (upstream-h2.ts). All choose the
// target by the resolver's failover order, skip ejected endpoints, and move on to the next endpoint,
// then the next target, when a connection fails before anything was sent on it.
import type net from 'node:net';
import type { FlowIdentity } from '../dataflow/index.js';
import type { DataPath } from '../netio/index.js';
import { RelayTarget, relay, relayRead } from './relay.js';
import type { SidecarUpstream } from './sidecar-config.js';
import { ZERO_TRACE, listen, type SidecarContext } from './sidecar-context.js';
import { describeTlsError } from './tls-refusal.js';
import { UpstreamH2 } from './upstream-h2.js';
import { UpstreamHttp } from './upstream-http.js';
import { UpstreamState, attemptsOf, connectTimeoutOf, dialEndpoint, joinReasons, routed, routingOf, upstreamKey } from './upstream-state.js';

export { upstreamKey } from './upstream-state.js';

interface Listener {
  server: net.Server;
  name: string;
  mode: ListenerMode;
  state: UpstreamState;
  http?: UpstreamHttp;
  h2?: UpstreamH2;
}

/** How an upstream's listener takes calls: HTTP/1.1 per request, h2c (or HTTP/1.1) per stream, or bytes per connection. */
export type ListenerMode = 'http' | 'h2' | 'l4';

export function modeOf(u: SidecarUpstream): ListenerMode {
  if (u.protocol === 'http') return 'http';
  return u.protocol === 'http2' || u.protocol === 'grpc' ? 'h2' : 'l4';
}

export class UpstreamListeners {
  /** Local listeners by upstreamKey(): one service may be an upstream in several DCs. */
  readonly outbound = new Map<string, Listener>();
  /** How the upstream listeners accept (chosen at start, see netio/). */
  dataPath: DataPath | undefined;

  constructor(private readonly ctx: SidecarContext) {}

  async start(u: SidecarUpstream, state?: UpstreamState, port = u.localBindPort): Promise<void> {
    const key = upstreamKey(u);
    const st = state ?? new UpstreamState(this.ctx, key, u.name);
    const mode = modeOf(u);
    if (mode === 'http') {
      const h = new UpstreamHttp(this.ctx, st);
      await listen(h.server, u.localBindHost, port);
      this.outbound.set(key, { server: h.server, name: u.name, mode, state: st, http: h });
      return;
    }
    if (mode === 'h2') {
      const h2 = new UpstreamH2(this.ctx, st);
      await listen(h2.server, u.localBindHost, port);
      this.outbound.set(key, { server: h2.server, name: u.name, mode, state: st, h2 });
      return;
    }
    // The caller's bytes are read through the shared buffer, and kept until the upstream is connected.
    const path = this.dataPath!;
    const server = path.createServer((accepted) => {
      const target = new RelayTarget();
      const client: net.Socket = path.socketOf(
        accepted,
        relayRead(this.ctx.readBuffer, target, () => client),
      );
      this.dial(st, client, target);
    });
    await listen(server, u.localBindHost, port);
    this.outbound.set(key, { server, name: u.name, mode: 'l4', state: st });
  }

  /** Applies a push: new upstreams get a listener, a protocol change swaps the listener's mode on the same port, gone ones close. */
  async update(prev: SidecarUpstream[], next: SidecarUpstream[]): Promise<void> {
    for (const u of next) {
      const key = upstreamKey(u);
      const had = this.outbound.get(key);
      if (!had) {
        await this.start(u);
        continue;
      }
      had.state.refresh(
        prev.find((p) => upstreamKey(p) === key),
        u,
      );
      if (had.mode !== modeOf(u)) {
        // Open connections carry on with the old listener's handlers; new ones meet the new mode.
        const port = (had.server.address() as net.AddressInfo | null)?.port ?? u.localBindPort;
        await close(had);
        this.outbound.delete(key);
        await this.start(u, had.state, port);
      }
    }
    for (const [key, o] of this.outbound) {
      if (!next.some((u) => upstreamKey(u) === key)) {
        void close(o);
        this.outbound.delete(key);
      }
    }
  }

  async stop(): Promise<void> {
    await Promise.all([...this.outbound.values()].map((o) => close(o)));
  }

  private dial(state: UpstreamState, client: net.Socket, clientTarget: RelayTarget): void {
    const up = state.current();
    const name = state.name;
    const start = Date.now();
    this.ctx.sockets.add(client);
    client.once('close', () => this.ctx.sockets.delete(client));
    client.on('error', () => {});
    const dest = (spiffeId: string): FlowIdentity => ({ ...this.ctx.identity(spiffeId, name), service: name });
    const walk = up ? state.walker(up.chain)?.walk(undefined) : undefined;
    // A connection has no headers: of the hash policies only SourceIP (the local app's address) applies.
    const plan = up && (!up.chain || walk) ? state.plan(up, walk, { headers: {}, sourceIp: client.remoteAddress }) : undefined;
    // The endpoints as they are now: a push while this call fails over does not reshuffle it.
    const attempts = plan ? attemptsOf(plan.targets) : [];
    if (!up || attempts.length === 0) {
      client.destroy();
      this.ctx.record({
        traceId: ZERO_TRACE,
        requestIndex: 0,
        hop: 'client-sidecar',
        source: this.ctx.self(),
        destination: dest(''),
        sni: '',
        verdict: 'error',
        reason: up?.chain && !walk ? `the discovery chain of upstream ${name} leads to no resolver` : `no healthy endpoint for upstream ${name}`,
        intentionId: '',
        startTime: start,
        durationMs: 0,
        bytesIn: 0,
        bytesOut: 0,
        ...(up && routed(up) ? { routing: routingOf(walk, '', 0, plan?.failover ?? '') } : {}),
      });
      return;
    }
    const refused: string[] = [];
    let failover = plan!.failover;
    const connectTimeoutMs = connectTimeoutOf(walk);
    const attempt = (k: number): void => {
      const { target, endpoint: ep } = attempts[k];
      const serverTarget = new RelayTarget();
      const d = dialEndpoint(
        this.ctx,
        ep,
        connectTimeoutMs,
        relayRead(this.ctx.readBuffer, serverTarget, () => server),
      );
      const server = d.socket;
      let retried = false;
      let ok = false;
      let failure: string | undefined;
      server.once('secureConnect', () => {
        ok = true;
        state.report(up, target, ep, true);
        relay(client, clientTarget, server, serverTarget);
      });
      server.once('error', (err: Error & { code?: string }) => {
        if (!ok) state.report(up, target, ep, false);
        // Nothing was relayed on it (refused, or its handshake failed): the caller's bytes are still
        // unread, so the next endpoint, then the next target, can take the call before a push says
        // this one is dead.
        if (!ok && k + 1 < attempts.length && !client.destroyed) {
          retried = true;
          const why = `${ep.host}:${ep.port} (${d.identityError() ?? err.code ?? err.message})`;
          refused.push(why);
          if (attempts[k + 1].target.id !== target.id) failover = joinReasons(failover, `connect failure at ${why}`);
          this.ctx.log.warn('upstream endpoint failed before the call was relayed; trying the next', {
            upstream: name,
            endpoint: `${ep.host}:${ep.port}`,
            error: d.identityError() ?? err.code ?? err.message,
          });
          attempt(k + 1);
          return;
        }
        failure = d.identityError() ?? describeTlsError(err);
        client.destroy();
      });
      server.once('close', () => {
        if (retried) return;
        if (!ok) client.destroy();
        const reason = failure ?? (ok ? 'connected' : 'connection closed during handshake (refused by the destination)');
        this.ctx.record({
          traceId: d.traceId(),
          requestIndex: 0,
          hop: 'client-sidecar',
          source: this.ctx.self(),
          destination: dest(ep.spiffeId),
          sni: ep.sni,
          verdict: ok && !failure ? 'allowed' : ok ? 'error' : d.identityError() ? 'denied' : 'error',
          reason: refused.length ? `${reason}, after ${refused.join(', ')} failed` : reason,
          intentionId: '',
          startTime: start,
          durationMs: Date.now() - start,
          bytesIn: server.bytesRead,
          bytesOut: server.bytesWritten,
          ...(routed(up) ? { routing: routingOf(walk, target.id, k, failover) } : {}),
        });
      });
    };
    attempt(0);
  }
}

function close(o: Listener): Promise<void> {
  o.http?.close();
  o.h2?.close();
  return new Promise((r) => o.server.close(() => r()));
}
