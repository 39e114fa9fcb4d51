// Which sidecars a chain target reaches in this DC: the connect proxies of the service whose
// instance the target's subset filter selects, and which of them count as healthy. Used for this
// DC's targets (the server's upstream endpoints), for the per-subset healthy counts this DC exports
// to the others, and for the gateway's subset routes, so all three agree.
import { aggregate, type Catalog, type CheckRecord, type HealthEntry, type ServiceRecord } from '../catalog/index.js';
import { parseFilter, type Filter } from './filter.js';
import type { ServiceResolver } from './model.js';

export interface ConnectMember {
  proxy: HealthEntry;
  /** The instance behind the sidecar (the proxy itself when its destination instance is not registered). */
  instance: ServiceRecord;
  /** The proxy's checks and its instance's (node checks included): a sidecar in front of a failing app is as failing as the app. */
  checks: CheckRecord[];
}

export interface SubsetSpec {
  Filter?: string;
  OnlyPassing?: boolean;
}

/**
 * Consul's rule for a target's health (service-resolver `OnlyPassing`): with OnlyPassing false (the
 * default) instances whose checks are passing or warning are healthy; with true only passing ones.
 */
export function isHealthy(checks: CheckRecord[], onlyPassing: boolean | undefined): boolean {
  const status = aggregate(checks);
  return onlyPassing ? status === 'passing' : status !== 'critical';
}

/** Every sidecar of `service` (in `namespace`, or in any when undefined), with the instance it fronts and their checks together. */
export function connectMembers(catalog: Catalog, service: string, namespace: string | undefined): ConnectMember[] {
  const out: ConnectMember[] = [];
  for (const p of catalog.connectInstances(service)) {
    if (namespace !== undefined && (p.service.Namespace || 'default') !== namespace) continue;
    const destId = p.service.Proxy?.DestinationServiceID;
    const instance = (destId && catalog.nodeService(p.service.Node, destId)) || p.service;
    const own = instance === p.service ? [] : catalog.checksOf(instance.Node, instance.ID).filter((c) => c.ServiceID === instance.ID);
    out.push({ proxy: p, instance, checks: [...p.checks, ...own] });
  }
  return out;
}

/** A compiled subset selector; a filter that does not parse selects nothing (writes refuse such filters). */
export function subsetSelector(spec: SubsetSpec | undefined): (m: ConnectMember) => boolean {
  let filter: Filter | undefined;
  if (spec?.Filter) {
    try {
      filter = parseFilter(spec.Filter);
    } catch {
      return () => false;
    }
  }
  return (m) =>
    isHealthy(m.checks, spec?.OnlyPassing) &&
    (!filter || filter.matches({ service: m.instance, node: { Node: m.proxy.node.Node, Address: m.proxy.node.Address, Meta: m.proxy.node.Meta } }));
}

/** The healthy members of a subset (`spec` undefined: the whole service, Consul's default health rule). */
export function subsetMembers(members: ConnectMember[], spec: SubsetSpec | undefined): ConnectMember[] {
  const select = subsetSelector(spec);
  return members.filter(select);
}

/**
 * Healthy counts per subset of the service's resolver, `""` for the service as a whole. These are
 * what another DC needs to decide whether a target here is worth failing over to.
 */
export function subsetHealthCounts(members: ConnectMember[], resolver: Pick<ServiceResolver, 'Subsets'> | undefined): Record<string, number> {
  const counts: Record<string, number> = { '': subsetMembers(members, undefined).length };
  for (const [name, spec] of Object.entries(resolver?.Subsets ?? {})) counts[name] = subsetMembers(members, spec).length;
  return counts;
}
