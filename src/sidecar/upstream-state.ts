// What an upstream keeps between calls (round robin, chain walker, outlier detectors) and what its
// L4 and L7 sides share: the target plan flattened into attempts, the mTLS dial, the routing record.
import type net from 'node:net';
import tls from 'node:tls';
import type { CompiledChain } from '../config-entries/index.js';
import { parseDuration } from '../core/duration.js';
import type { FlowRouting } from '../dataflow/index.js';
import { ChainWalker, failoverOrder, planTargets, type ChainWalk, type PlannedTarget, type TargetPlan } from './chain-walk.js';
import { spiffeOf, traceIdFromKeylog } from './identity.js';
import { EndpointBalancer, type LbRequest } from './load-balancer.js';
import { OutlierDetector } from './outlier.js';
import type { SidecarEndpoint, SidecarTarget, SidecarUpstream } from './sidecar-config.js';
import { ZERO_TRACE, type SidecarContext } from './sidecar-context.js';

/** One endpoint of one target, in the order a call tries them. */
export interface Attempt {
  target: SidecarTarget;
  endpoint: SidecarEndpoint;
}

/** An endpoint's identity for outlier detection: one gateway address serves many SNI names. */
export function endpointKey(ep: SidecarEndpoint): string {
  return `${ep.host}:${ep.port}/${ep.sni}`;
}

/** A plan with what the balancer adds to the answer: Set-Cookie values a cookie hash policy made up. */
export interface UpstreamPlan extends TargetPlan {
  setCookies: string[];
}

/** What one upstream keeps between calls: its balancer (round robin, hash tables, in-flight counts), its chain walker and its outlier detectors. */
export class UpstreamState {
  rr = 0;
  #walker: ChainWalker | undefined;
  readonly #outliers = new Map<string, OutlierDetector>();
  readonly #balancer = new EndpointBalancer(endpointKey);

  constructor(
    private readonly ctx: SidecarContext,
    readonly key: string,
    readonly name: string,
  ) {}

  /** The upstream's configuration in force now (a push replaces it). */
  current(): SidecarUpstream | undefined {
    return this.ctx.config.upstreams.find((x) => upstreamKey(x) === this.key);
  }

  walker(chain: CompiledChain | undefined): ChainWalker | undefined {
    if (!chain) return undefined;
    if (this.#walker?.chain !== chain) this.#walker = new ChainWalker(chain);
    return this.#walker;
  }

  /**
   * The targets in the order this call tries them, from the chain's resolver (or the upstream's
   * plain endpoints), each target's endpoints in the order its LoadBalancer says for `req` (round
   * robin without one; a hash policy hashes what `req` carries).
   */
  plan(up: SidecarUpstream, walk: ChainWalk | undefined, req?: LbRequest): UpstreamPlan {
    const primary = walk?.resolver.Resolver.Target ?? '';
    const targets = new Map<string, SidecarTarget>();
    const listed = hasTargets(up) ? up.targets! : undefined;
    if (listed) for (const t of listed) targets.set(t.id, t);
    else targets.set(primary, { id: primary, datacenter: up.datacenter, healthy: true, healthAgeMs: 0, endpoints: up.endpoints });
    const order = walk ? failoverOrder(walk.resolver) : listed ? listed.map((t) => t.id) : [primary];
    const lb = this.#balancer.forCall(walk?.resolver.LoadBalancer, req, this.rr++);
    const plan = planTargets(order, targets, (id, ep) => this.detector(id, up).isEjected(endpointKey(ep)), lb.order);
    return { ...plan, setCookies: lb.setCookies };
  }

  /** A request attempt went out to an endpoint: least_request picks by these counts. */
  started(targetId: string, ep: SidecarEndpoint): void {
    this.#balancer.started(targetId, ep);
  }

  /** The attempt is over (answered in full, failed or given up). */
  finished(targetId: string, ep: SidecarEndpoint): void {
    this.#balancer.finished(targetId, ep);
  }

  /**
   * One request's attempt in flight, counted for least_request: `to(a)` ends the one before and
   * counts `a`, `done()` ends the last (answered in full, failed or given up).
   */
  flight(): { to(a: Attempt): void; done(): void } {
    let current: Attempt | undefined;
    const done = () => {
      if (current) this.finished(current.target.id, current.endpoint);
      current = undefined;
    };
    return {
      to: (a) => {
        done();
        this.started(a.target.id, a.endpoint);
        current = a;
      },
      done,
    };
  }

  /** Attempts in flight at an endpoint now. */
  inFlight(targetId: string, ep: SidecarEndpoint): number {
    return this.#balancer.active(targetId, ep);
  }

  detector(targetId: string, up: SidecarUpstream): OutlierDetector {
    let d = this.#outliers.get(targetId);
    if (!d) this.#outliers.set(targetId, (d = new OutlierDetector(up.passiveHealthCheck)));
    return d;
  }

  /** A call's outcome at an endpoint: a success resets its failure run, a failure may eject it. */
  report(up: SidecarUpstream, target: SidecarTarget, ep: SidecarEndpoint, ok: boolean): void {
    const d = this.detector(target.id, up);
    const key = endpointKey(ep);
    if (ok) d.success(key);
    else if (d.failure(key, target.endpoints.map(endpointKey)))
      this.ctx.log.warn('upstream endpoint ejected', {
        upstream: this.name,
        target: target.id,
        endpoint: key,
        until: new Date(d.ejectionEnds(key)).toISOString(),
      });
  }

  /** A push changed the config: outlier detectors follow it (a changed PassiveHealthCheck starts afresh). */
  refresh(prev: SidecarUpstream | undefined, next: SidecarUpstream): void {
    if (JSON.stringify(prev?.passiveHealthCheck) !== JSON.stringify(next.passiveHealthCheck)) this.#outliers.clear();
    const before = new Map((prev?.targets ?? []).map((t) => [t.id, t.healthy]));
    for (const t of next.targets ?? []) {
      // The server saw the target come back (its checks pass again): that outweighs the failures this
      // sidecar counted while it was down, which would otherwise keep it ejected for a base time or more.
      if (t.healthy && before.get(t.id) === false) this.#outliers.delete(t.id);
      else this.#outliers.get(t.id)?.retain(new Set(t.endpoints.map(endpointKey)));
    }
  }
}

/** Consul's default ConnectTimeout, for upstreams without a chain or a resolver that says none. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;

/** The resolver's ConnectTimeout (0 or unparsable: the default). */
export function connectTimeoutOf(walk: ChainWalk | undefined): number {
  const v = walk?.resolver.Resolver.ConnectTimeout;
  if (!v) return DEFAULT_CONNECT_TIMEOUT_MS;
  try {
    return parseDuration(v) || DEFAULT_CONNECT_TIMEOUT_MS;
  } catch {
    return DEFAULT_CONNECT_TIMEOUT_MS;
  }
}

/** A plan flattened into the order endpoints are dialed. */
export function attemptsOf(targets: PlannedTarget[]): Attempt[] {
  return targets.flatMap((t) => t.endpoints.map((endpoint) => ({ target: t.target, endpoint })));
}

/** Whether a chain (or its targets) is behind an upstream: only then do flow records carry `routing`. */
export function routed(up: SidecarUpstream): boolean {
  return up.chain !== undefined || hasTargets(up);
}

/** A server that compiles no chain sends no targets (the wire decodes them as an empty list): `endpoints` is all there is. */
function hasTargets(up: SidecarUpstream): boolean {
  return (up.targets?.length ?? 0) > 0;
}

export function routingOf(walk: ChainWalk | undefined, target: string, retries: number, failover: string): FlowRouting {
  return {
    target,
    route: walk?.routeIndex === undefined ? '' : `Routes[${walk.routeIndex}]`,
    split: walk?.splitIndex === undefined ? '' : `Splits[${walk.splitIndex}]`,
    retries,
    failover,
  };
}

export function joinReasons(a: string, b: string): string {
  return a && b ? `${a}; ${b}` : a || b;
}

/** A TLS connection to an endpoint with the sidecar's identity, the endpoint's SNI, its SPIFFE ID checked. */
export function dialEndpoint(
  ctx: SidecarContext,
  ep: SidecarEndpoint,
  connectTimeoutMs: number,
  onread?: net.OnReadOpts,
  alpn?: string[],
): { socket: tls.TLSSocket; identityError: () => string | undefined; traceId: () => string } {
  const sessionKey = `${ep.host}:${ep.port}/${ep.sni}/${ep.spiffeId}`;
  let traceId = ZERO_TRACE;
  let identityError: string | undefined;
  // (Node's tls.connect takes `onread` since v15.1; its type here lacks it.)
  const options: tls.ConnectionOptions & { onread?: net.OnReadOpts } = {
    host: ep.host,
    port: ep.port,
    servername: ep.sni,
    secureContext: ctx.secureContext,
    session: ctx.sessions.get(sessionKey),
    minVersion: 'TLSv1.3',
    checkServerIdentity: (_host, cert) => {
      const got = spiffeOf(cert);
      if (got !== ep.spiffeId) {
        identityError = `upstream presented ${got ?? 'no SPIFFE ID'}, expected ${ep.spiffeId}`;
        return new Error(identityError);
      }
      return undefined;
    },
  };
  if (onread) options.onread = onread;
  if (alpn) options.ALPNProtocols = alpn;
  const socket = tls.connect(options);
  socket.setNoDelay(true);
  ctx.sockets.add(socket);
  socket.once('close', () => ctx.sockets.delete(socket));
  // A DC whose hosts are gone may drop packets rather than refuse: give up as Envoy's connect_timeout does.
  if (connectTimeoutMs > 0) {
    const timer = setTimeout(
      () => socket.destroy(Object.assign(new Error(`no TLS connection within ${connectTimeoutMs} ms`), { code: 'ETIMEDOUT' })),
      connectTimeoutMs,
    );
    socket.once('secureConnect', () => clearTimeout(timer));
    socket.once('close', () => clearTimeout(timer));
  }
  const contextAtDial = ctx.secureContext;
  socket.on('session', (session: Buffer) => {
    if (ctx.secureContext === contextAtDial) ctx.sessions.set(sessionKey, session);
  });
  socket.on('keylog', (line) => {
    if (traceId === ZERO_TRACE) traceId = traceIdFromKeylog(line) ?? ZERO_TRACE;
  });
  return { socket, identityError: () => identityError, traceId: () => traceId };
}

/** An upstream's identity among a sidecar's: the same service may be an upstream in several DCs. */
export function upstreamKey(u: SidecarUpstream): string {
  return `${u.namespace}/${u.name}@${u.datacenter}`;
}
