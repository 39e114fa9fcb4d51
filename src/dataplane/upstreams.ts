// Where a sidecar's upstream goes: the DC chosen by the upstream's failover order (its own DC first,
// then Config.failover, the first with a healthy instance), and that DC's endpoints: local sidecars,
// or for another DC this DC's healthy mesh gateways (that DC's gateways when there is none here).
import { meshGateways, type Catalog, type Upstream } from '../catalog/index.js';
import { parseHostPort, serviceSni, serviceSpiffeId, type HostPort } from '../core/names.js';
import type { FederationView } from '../federation/index.js';
import type { WireEndpoint } from '../dataplane-client/index.js';

export { MESH_GATEWAY } from '../catalog/index.js';

export interface UpstreamContext {
  catalog: Catalog;
  federation: FederationView;
  dc: string;
  trustDomain: string;
  /** Service names mesh gateways registered under (mesh-gateway unless a gateway said otherwise). */
  gatewayNames: Iterable<string>;
}

/** The failover list of an upstream (Config.failover), without repeats. */
export function failoverOf(u: Upstream): string[] {
  const f = (u.Config as { failover?: unknown } | undefined)?.failover;
  return Array.isArray(f) ? f.filter((d): d is string => typeof d === 'string') : [];
}

/** The DC an upstream's traffic goes to now: the first in its order with a healthy instance, else its own. */
export function chooseDatacenter(ctx: UpstreamContext, u: Upstream): string {
  const ns = u.DestinationNamespace ?? 'default';
  const own = u.Datacenter ?? ctx.dc;
  const order = [...new Set([own, ...failoverOf(u)])];
  if (order.length === 1) return own;
  const healthy = (d: string) =>
    d === ctx.dc
      ? ctx.catalog.connectInstances(u.DestinationName, { passingOnly: true }).length > 0
      : (ctx.federation.remoteHealthy(d, ns, u.DestinationName) ?? 0) > 0;
  return order.find(healthy) ?? own;
}

export function upstreamEndpoints(ctx: UpstreamContext, u: Upstream, dc: string): WireEndpoint[] {
  const ns = u.DestinationNamespace ?? 'default';
  const td = ctx.trustDomain;
  const name = { service: u.DestinationName, namespace: ns, dc, trustDomain: td };
  const sni = serviceSni(name);
  const spiffeId = serviceSpiffeId(name);
  if (dc === ctx.dc) {
    return ctx.catalog.connectInstances(u.DestinationName, { passingOnly: true }).map((e) => ({
      host: e.service.Address || e.node.Address,
      port: e.service.Port,
      sni,
      spiffeId,
    }));
  }
  const local = localGateways(ctx);
  const via = local.length
    ? local
    : ctx.federation
        .gateways(dc)
        .map((a) => parseHostPort(a))
        .filter((t): t is HostPort => t !== undefined);
  return via.map((t) => ({ host: t.host, port: t.port, sni, spiffeId }));
}

/** LAN addresses of this DC's passing mesh gateways (registered under any of the gateway names). */
export function localGateways(ctx: Pick<UpstreamContext, 'catalog' | 'gatewayNames'>): HostPort[] {
  return meshGateways(ctx.catalog, ctx.gatewayNames).map((g) => g.lan);
}
