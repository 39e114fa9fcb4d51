// A gateway's routing table, rebuilt whole on every configuration push and swapped in at once:
// a name for this DC goes to a healthy local sidecar or server, a name for another DC to that DC's
// gateways (each round robin, the rest after it to fail over to), and anything else nowhere.
import type { FlowHop } from '../dataflow/index.js';
import { parseHostPort, parseSni, type HostPort, type SniName } from '../core/names.js';

export interface GatewayEndpoint {
  host: string;
  port: number;
  /**
   * The subsets that select this endpoint (a subset SNI goes to the endpoints listing its name): the
   * server fills in the resolver's subsets it meets, or the instance's tags when no resolver defines any.
   */
  tags?: string[];
}

export interface GatewayLocalService {
  name: string;
  namespace: string;
  /** Healthy sidecar (connect-proxy) endpoints of the service's instances. */
  endpoints: GatewayEndpoint[];
}

export interface GatewayRemoteDc {
  dc: string;
  /** host:port of that DC's gateways' WAN listeners (connections are spread over them). */
  gateways: string[];
}

/** What the server pushes and the table is built from. */
export interface GatewayRoutes {
  dc: string;
  trustDomain: string;
  services: GatewayLocalService[];
  /** host:port of this DC's servers' federation listeners (SNI server.<dc>.<trust-domain>). */
  serverAddresses: string[];
  remotes: GatewayRemoteDc[];
}

export type RouteTarget = HostPort;

export interface RouteFound {
  ok: true;
  hop: Extract<FlowHop, 'gateway-ingress' | 'gateway-egress'>;
  /** Metrics label: `<service>.<ns>.<dc>`, `<subset>.<service>.<ns>.<dc>` or `server.<dc>`. */
  route: string;
  name: SniName;
  /** Where to connect, in the order to try them (the first failing to connect, the next). */
  targets: RouteTarget[];
}

export interface RouteMissing {
  ok: false;
  reason: string;
  name?: SniName;
}

export type RouteDecision = RouteFound | RouteMissing;

export class RouteTable {
  readonly dc: string;
  readonly trustDomain: string;
  private readonly services = new Map<string, GatewayEndpoint[]>();
  private readonly servers: RouteTarget[];
  private readonly remotes = new Map<string, RouteTarget[]>();
  /** Round-robin positions by route key; carried over from the table this one replaces. */
  private readonly rr: Map<string, number>;

  constructor(
    readonly input: GatewayRoutes,
    previous?: RouteTable,
  ) {
    this.dc = input.dc;
    this.trustDomain = input.trustDomain;
    this.rr = previous?.rr ?? new Map();
    for (const s of input.services) {
      if (s.endpoints.length === 0) continue;
      const key = `${s.namespace}/${s.name}`;
      this.services.set(key, [...(this.services.get(key) ?? []), ...s.endpoints]);
    }
    this.servers = input.serverAddresses.map((a) => parseHostPort(a)).filter((t): t is RouteTarget => t !== undefined);
    for (const r of input.remotes) {
      if (r.dc === input.dc) continue;
      const targets = r.gateways.map((a) => parseHostPort(a)).filter((t): t is RouteTarget => t !== undefined);
      if (targets.length) this.remotes.set(r.dc, targets);
    }
  }

  /** A table that routes nothing (before the first configuration arrives). */
  static empty(dc: string, trustDomain = ''): RouteTable {
    return new RouteTable({ dc, trustDomain, services: [], serverAddresses: [], remotes: [] });
  }

  resolve(sni: string): RouteDecision {
    if (!this.trustDomain) return { ok: false, reason: 'the gateway has no routing configuration yet' };
    const name = parseSni(sni, this.trustDomain);
    if (name.kind === 'invalid') return { ok: false, reason: name.reason };
    if (name.dc !== this.dc) {
      const gateways = this.remotes.get(name.dc);
      if (!gateways) return { ok: false, reason: `no gateway known for datacenter ${name.dc}`, name };
      return { ok: true, hop: 'gateway-egress', route: routeLabel(name), name, targets: this.rotate(`dc:${name.dc}`, gateways) };
    }
    if (name.kind === 'server') {
      if (this.servers.length === 0) return { ok: false, reason: `no server federation address known in ${this.dc}`, name };
      return { ok: true, hop: 'gateway-ingress', route: routeLabel(name), name, targets: this.rotate('server', this.servers) };
    }
    const all = this.services.get(`${name.namespace}/${name.service}`);
    if (!all) return { ok: false, reason: `no healthy instance of ${name.service} in namespace ${name.namespace} in ${this.dc}`, name };
    const subset = name.subset;
    const endpoints = subset ? all.filter((e) => e.tags?.includes(subset)) : all;
    if (endpoints.length === 0)
      return { ok: false, reason: `no healthy instance of ${name.service} in namespace ${name.namespace} carries subset tag ${subset}`, name };
    const route = routeLabel(name);
    return { ok: true, hop: 'gateway-ingress', route, name, targets: this.rotate(route, endpoints) };
  }

  private rotate(key: string, list: RouteTarget[]): RouteTarget[] {
    if (list.length === 1) return list;
    const n = this.rr.get(key) ?? 0;
    this.rr.set(key, (n + 1) % list.length);
    const out: RouteTarget[] = [];
    for (let i = 0; i < list.length; i++) out.push(list[(n + i) % list.length]);
    return out;
  }
}

export function routeLabel(name: SniName): string {
  if (name.kind === 'server') return `server.${name.dc}`;
  return `${name.subset ? `${name.subset}.` : ''}${name.service}.${name.namespace}.${name.dc}`;
}
