// What a sidecar's upstream is pushed: the destination's compiled discovery chain, every target it
// can reach with that target's endpoints and health, and the endpoints of the target its default
// path takes now (the first healthy of the primary target and its failover targets). A target in
// this DC is its healthy sidecars that the subset selects; a target in another DC is reached through
// this DC's mesh gateways (that DC's when there is none here) with the target's SNI, and its health
// is that DC's exported count for the subset, as old as the last word from it.
import { meshGateways, type Catalog, type Upstream } from '../catalog/index.js';
import {
  chainEntries,
  compileDiscoveryChain,
  connectMembers,
  defaultResolver,
  reachableTargets,
  subsetMembers,
  type ChainEntries,
  type ChainTarget,
  type CompiledChain,
} from '../config-entries/index.js';
import { parseHostPort, type HostPort } from '../core/names.js';
import type { FederationView } from '../federation/index.js';
import type { WireEndpoint, WireUpstream } from '../dataplane-client/index.js';

type WireTarget = WireUpstream['targets'][number];

export { MESH_GATEWAY } from '../catalog/index.js';

export interface UpstreamContext {
  catalog: Catalog;
  federation: FederationView;
  dc: string;
  trustDomain: string;
  /** Service names mesh gateways registered under (mesh-gateway unless a gateway said otherwise). */
  gatewayNames: Iterable<string>;
  /** The config entries chains are compiled from; none: every chain is the implicit default. */
  entries?: ChainEntries;
}

/** The failover list of an upstream (Config.failover), without repeats. */
export function failoverOf(u: Upstream): string[] {
  const f = (u.Config as { failover?: unknown } | undefined)?.failover;
  return Array.isArray(f) ? [...new Set(f.filter((d): d is string => typeof d === 'string'))] : [];
}

const NO_ENTRIES: ChainEntries = chainEntries({ get: () => undefined });

export interface UpstreamPlan {
  chain: CompiledChain;
  /** Set when the entries did not compile: the chain is then the implicit default one (with Config.failover). */
  compileError?: Error;
  /** In the order of `reachableTargets`: the default path's target, its failover targets, then the rest. */
  targets: WireTarget[];
  /** The endpoints of the default path's chosen target. */
  endpoints: WireEndpoint[];
}

/** Compiles the upstream's chain (falling back to the default chain when the entries do not compile) and fills its targets. */
export function planUpstream(ctx: UpstreamContext, u: Upstream): UpstreamPlan {
  const base = {
    namespace: u.DestinationNamespace ?? 'default',
    dc: ctx.dc,
    targetDc: u.Datacenter || ctx.dc,
    trustDomain: ctx.trustDomain,
    legacyFailover: failoverOf(u),
  };
  let chain: CompiledChain;
  let compileError: Error | undefined;
  try {
    chain = compileDiscoveryChain(u.DestinationName, { ...base, entries: ctx.entries ?? NO_ENTRIES });
  } catch (err) {
    compileError = err as Error;
    chain = compileDiscoveryChain(u.DestinationName, { ...base, entries: NO_ENTRIES });
  }
  const byId = new Map<string, WireTarget>();
  for (const id of reachableTargets(chain)) byId.set(id, targetState(ctx, chain.Targets[id]));
  const resolver = defaultResolver(chain);
  const order = resolver ? [resolver.Resolver.Target, ...(resolver.Resolver.Failover?.Targets ?? [])] : [];
  const chosen = order.map((id) => byId.get(id)).find((t) => t?.healthy) ?? byId.get(order[0] ?? '');
  return { chain, compileError, targets: [...byId.values()], endpoints: chosen?.endpoints ?? [] };
}

/** One target's endpoints and health as this server sees them now. */
export function targetState(ctx: UpstreamContext, t: ChainTarget): WireTarget {
  const endpoint = (host: string, port: number): WireEndpoint => ({ host, port, sni: t.SNI, spiffeId: t.SpiffeID });
  if (t.Datacenter === ctx.dc) {
    const members = subsetMembers(connectMembers(ctx.catalog, t.Service, t.Namespace), t.ServiceSubset ? t.Subset : undefined);
    const endpoints = members.map((m) => endpoint(m.proxy.service.Address || m.proxy.node.Address, m.proxy.service.Port));
    return { id: t.ID, datacenter: t.Datacenter, healthy: endpoints.length > 0, healthAgeMs: 0, endpoints };
  }
  const count = ctx.federation.remoteSubsetHealthy(t.Datacenter, t.Namespace, t.Service, t.ServiceSubset);
  const age = ctx.federation.stalenessMs(t.Datacenter);
  const local = localGateways(ctx);
  const via = local.length
    ? local
    : ctx.federation
        .gateways(t.Datacenter)
        .map((a) => parseHostPort(a))
        .filter((h): h is HostPort => h !== undefined);
  return {
    id: t.ID,
    datacenter: t.Datacenter,
    healthy: (count ?? 0) > 0,
    healthAgeMs: Math.max(0, Math.round(age ?? 0)),
    endpoints: via.map((h) => endpoint(h.host, h.port)),
  };
}

/** LAN addresses of this DC's passing mesh gateways (registered under any of the gateway names). */
export function localGateways(ctx: Pick<UpstreamContext, 'catalog' | 'gatewayNames'>): HostPort[] {
  return meshGateways(ctx.catalog, ctx.gatewayNames).map((g) => g.lan);
}
