// Walking a compiled discovery chain (router -> splitter -> resolver) for one request or connection,
// as Envoy runs the routes Consul generates from it: the first matching route, a weighted split, the
// resolver's failover order. Pure: the request, the random draw and the ejected endpoints come in.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { RE2JS } from 're2js';
import type { ChainResolverNode, ChainRoute, ChainSplitterNode, CompiledChain } from '../config-entries/index.js';
import type { SidecarEndpoint, SidecarTarget } from './sidecar-config.js';

export interface HeaderEdits {
  Add?: Record<string, string>;
  Set?: Record<string, string>;
  Remove?: string[];
}

/** What a route match looks at. `url` is the request target as sent (path and query). */
export interface RequestView {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

export interface ChainWalk {
  resolver: ChainResolverNode;
  /** The route that took the request (undefined without a router). */
  routeIndex?: number;
  route?: ChainRoute;
  splitIndex?: number;
  /** In the order they apply: the split's, then the route's (Envoy's default: the route's win). */
  requestHeaders: HeaderEdits[];
  responseHeaders: HeaderEdits[];
}

type HttpMatch = NonNullable<NonNullable<ChainRoute['Match']>['HTTP']>;

const NEVER = { matches: () => false };

/** Nodes are followed at most this many times: a compiled chain has no cycle, a hand-written one might. */
const MAX_HOPS = 16;

export class ChainWalker {
  readonly #regexes = new Map<string, { matches(s: string): boolean }>();

  constructor(readonly chain: CompiledChain) {}

  /** The resolver a request (or, with none, a connection) ends at; undefined when the chain is broken. */
  walk(req: RequestView | undefined, random: () => number = Math.random): ChainWalk | undefined {
    const out: ChainWalk = { resolver: undefined as unknown as ChainResolverNode, requestHeaders: [], responseHeaders: [] };
    let name = this.chain.StartNode;
    for (let hop = 0; hop < MAX_HOPS; hop++) {
      const node = this.chain.Nodes[name];
      if (!node) return undefined;
      if (node.Type === 'resolver') {
        out.resolver = node;
        return out;
      }
      if (node.Type === 'router') {
        // A connection (tcp, or http2/grpc relayed at L4) carries no request to match: it takes the
        // last route, the catch-all Consul's compiler appends to every router.
        const i = req ? node.Routes.findIndex((r) => this.matches(r.Definition.Match?.HTTP, req)) : node.Routes.length - 1;
        if (i < 0) return undefined;
        const r = node.Routes[i];
        out.routeIndex = i;
        out.route = r.Definition;
        name = r.NextNode;
        continue;
      }
      const j = chooseSplit(node, random());
      if (j < 0) return undefined;
      const s = node.Splits[j];
      out.splitIndex = j;
      if (s.RequestHeaders) out.requestHeaders.push(s.RequestHeaders);
      if (s.ResponseHeaders) out.responseHeaders.push(s.ResponseHeaders);
      name = s.NextNode;
    }
    return undefined;
  }

  /** Finishes a walk: the route's header edits go after the split's. */
  edits(w: ChainWalk): { request: HeaderEdits[]; response: HeaderEdits[] } {
    const d = w.route?.Destination;
    return {
      request: d?.RequestHeaders ? [...w.requestHeaders, d.RequestHeaders] : w.requestHeaders,
      response: d?.ResponseHeaders ? [...w.responseHeaders, d.ResponseHeaders] : w.responseHeaders,
    };
  }

  matches(m: HttpMatch | undefined, req: RequestView | undefined): boolean {
    if (!m || isEmptyMatch(m)) return true;
    if (!req) return false;
    const q = req.url.indexOf('?');
    const path = q < 0 ? req.url : req.url.slice(0, q);
    // Envoy's case_sensitive applies to exact and prefix matches, not to safe_regex.
    const ci = m.CaseInsensitive === true;
    if (m.PathExact && !(ci ? path.toLowerCase() === m.PathExact.toLowerCase() : path === m.PathExact)) return false;
    if (m.PathPrefix && !(ci ? path.toLowerCase().startsWith(m.PathPrefix.toLowerCase()) : path.startsWith(m.PathPrefix))) return false;
    if (m.PathRegex && !this.regex(m.PathRegex).matches(path)) return false;
    if (m.Methods?.length && !m.Methods.includes(req.method.toUpperCase())) return false;
    for (const h of m.Header ?? []) if (!this.headerMatches(h, req.headers)) return false;
    if (m.QueryParam?.length) {
      const params = new URLSearchParams(q < 0 ? '' : req.url.slice(q + 1));
      for (const p of m.QueryParam) {
        const v = params.get(p.Name);
        if (v === null) return false;
        if (p.Exact && v !== p.Exact) return false;
        if (p.Regex && !this.regex(p.Regex).matches(v)) return false;
      }
    }
    return true;
  }

  private headerMatches(h: NonNullable<HttpMatch['Header']>[number], headers: IncomingHttpHeaders): boolean {
    const raw = headers[h.Name.toLowerCase()];
    const v = raw === undefined ? undefined : Array.isArray(raw) ? raw.join(',') : String(raw);
    let ok: boolean;
    // Consul leaves a Go zero value unset: an empty Exact, Prefix, Suffix or Regex is no condition.
    if (v === undefined) ok = false;
    else if (h.Exact) ok = v === h.Exact;
    else if (h.Prefix) ok = v.startsWith(h.Prefix);
    else if (h.Suffix) ok = v.endsWith(h.Suffix);
    else if (h.Regex) ok = this.regex(h.Regex).matches(v);
    else ok = true;
    return h.Invert ? !ok : ok;
  }

  /**
   * A pattern compiled once per chain. One that does not compile (the server refuses those when they
   * are written) matches nothing, rather than failing every request that reaches its route.
   */
  private regex(pattern: string): { matches(s: string): boolean } {
    let re = this.#regexes.get(pattern);
    if (!re) {
      try {
        re = RE2JS.compile(pattern);
      } catch {
        re = NEVER;
      }
      this.#regexes.set(pattern, re);
    }
    return re;
  }
}

function isEmptyMatch(m: HttpMatch): boolean {
  return !m.PathExact && !m.PathPrefix && !m.PathRegex && !m.Header?.length && !m.QueryParam?.length && !m.Methods?.length;
}

/**
 * The split a draw `r` in [0, 1) falls in. Weights count in hundredths of a percent, as Consul hands
 * them to Envoy (total 10000), so 0.01 is one draw in 10,000 and 33.33/33.33/33.34 adds up.
 */
export function chooseSplit(node: Pick<ChainSplitterNode, 'Splits'>, r: number): number {
  const x = Math.floor(r * 10_000);
  let acc = 0;
  let last = -1;
  for (let j = 0; j < node.Splits.length; j++) {
    const w = Math.round(node.Splits[j].Weight * 100);
    if (w <= 0) continue;
    acc += w;
    last = j;
    if (x < acc) return j;
  }
  return last;
}

/**
 * Applies header edits in order to a message's headers (names lower-case): per edit, Remove, then
 * Add (appended to a value already there, Envoy's append), then Set (replacing), as Consul orders them.
 */
export function applyHeaderEdits(headers: OutgoingHttpHeaders, edits: HeaderEdits[]): void {
  for (const e of edits) {
    for (const name of e.Remove ?? []) delete headers[name.toLowerCase()];
    for (const [k, v] of Object.entries(e.Add ?? {})) {
      const name = k.toLowerCase();
      const had = headers[name];
      headers[name] = had === undefined ? v : [...(Array.isArray(had) ? had : [String(had)]), v];
    }
    for (const [k, v] of Object.entries(e.Set ?? {})) headers[k.toLowerCase()] = v;
  }
}

/** Envoy's prefix_rewrite: the matched PathPrefix (or the PathExact) replaced by `rewrite`; the query stays. */
export function rewritePath(url: string, m: HttpMatch | undefined, rewrite: string | undefined): string {
  if (rewrite === undefined || !m) return url;
  const matched = m.PathPrefix || m.PathExact;
  if (!matched) return url;
  return rewrite + url.slice(matched.length);
}

/** A target in the order it is tried, with the endpoints to try. */
export interface PlannedTarget {
  target: SidecarTarget;
  endpoints: SidecarEndpoint[];
}

export interface TargetPlan {
  targets: PlannedTarget[];
  /** Why the first target planned is not the resolver's own (empty when it is). */
  failover: string;
}

/**
 * The resolver's targets in the order a call tries them: [Target, ...Failover.Targets], the first
 * healthy one with an endpoint not ejected leading (else the first with endpoints), then the other
 * healthy ones, then the unhealthy ones (another DC's gateways may still reach an instance the
 * server has not heard of). Within a target, ejected endpoints are left out while others remain;
 * `orderEndpoints` puts them in the order the call tries them (the resolver's LoadBalancer; by
 * default as listed).
 */
export function planTargets(
  order: string[],
  targets: ReadonlyMap<string, SidecarTarget>,
  isEjected: (target: string, ep: SidecarEndpoint) => boolean,
  orderEndpoints: (targetId: string, endpoints: SidecarEndpoint[]) => SidecarEndpoint[] = (_, eps) => eps,
): TargetPlan {
  const listed = order.map((id) => targets.get(id)).filter((t): t is SidecarTarget => t !== undefined);
  const usable = (t: SidecarTarget) => t.endpoints.filter((ep) => !isEjected(t.id, ep));
  let chosen = listed.findIndex((t) => t.healthy && usable(t).length > 0);
  if (chosen < 0) chosen = listed.findIndex((t) => t.endpoints.length > 0);
  const reasons: string[] = [];
  for (let i = 0; i < Math.max(chosen, 0); i++) reasons.push(skipReason(listed[i], usable(listed[i]).length));
  const rest = listed.filter((_, i) => i !== chosen);
  const sequence = chosen < 0 ? [] : [listed[chosen], ...rest.filter((t) => t.healthy), ...rest.filter((t) => !t.healthy)];
  const planned = sequence
    .map((t) => {
      const ok = usable(t);
      const eps = ok.length > 0 ? ok : t.endpoints;
      return { target: t, endpoints: eps.length > 1 ? orderEndpoints(t.id, eps) : eps };
    })
    .filter((p) => p.endpoints.length > 0);
  return { targets: planned, failover: reasons.join('; ') };
}

function skipReason(t: SidecarTarget, usable: number): string {
  if (!t.healthy || t.endpoints.length === 0) return `no healthy instance of ${t.id}`;
  return `${t.id}: ${t.endpoints.length - usable} endpoint${t.endpoints.length - usable === 1 ? '' : 's'} ejected`;
}

/** The resolver's failover order: its own target, then Failover.Targets. */
export function failoverOrder(resolver: ChainResolverNode): string[] {
  return [resolver.Resolver.Target, ...(resolver.Resolver.Failover?.Targets ?? [])];
}
