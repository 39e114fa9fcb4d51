// A DC's exported catalog: its services (name, namespace, instance and healthy counts, tags, meta;
// never the instances) and its mesh gateways' WAN addresses. Sent in full when a link comes up,
// then as diffs against what that link was last sent.
import { meshGateways, type Catalog } from '../catalog/index.js';
import { connectMembers, subsetHealthCounts, type ConfigEntries } from '../config-entries/index.js';
import { formatHostPort } from '../core/names.js';
import type { StoreOp, Store } from '../store/index.js';
import { FED_PEERS, FED_SERVICES, type ExportedService, type PeerExport } from './tables.js';

export interface ExportState {
  gateways: string[];
  services: Map<string, ExportedService>;
}

export interface ExportDiff {
  gateways: string[];
  upserts: ExportedService[];
  deletes: string[];
}

const exportKey = (s: { Namespace: string; Name: string }) => `${s.Namespace}/${s.Name}`;

/** Healthy mesh gateways of this DC: their LAN and WAN addresses as `host:port`, sorted, without repeats. */
export function localGateways(catalog: Catalog): { lan: string[]; wan: string[] } {
  const lan = new Set<string>();
  const wan = new Set<string>();
  for (const g of meshGateways(catalog)) {
    lan.add(formatHostPort(g.lan));
    if (g.wan) wan.add(formatHostPort(g.wan));
  }
  return { lan: [...lan].sort(), wan: [...wan].sort() };
}

/**
 * Per-subset healthy counts are computed here, where the instances are, from this DC's replica of
 * the resolver (config entries replicate to every DC), rather than shipping every instance's tags
 * and meta for the caller's DC to filter: the export stays one small record per service whatever the
 * instance count, and the subset rule is evaluated by the same code that picks this DC's endpoints
 * and its gateway's subset routes. The caller's DC may hold a newer or older resolver for a moment;
 * a subset it asks for and this DC did not count reads as unknown there, not as healthy.
 */
export function computeExport(catalog: Catalog, configEntries?: Pick<ConfigEntries, 'get'>): ExportState {
  const services = new Map<string, ExportedService>();
  for (const [name] of Object.entries(catalog.services())) {
    const all = catalog.instances(name);
    const real = all.filter((e) => e.service.Kind !== 'connect-proxy' && e.service.Kind !== 'mesh-gateway');
    if (real.length === 0) continue;
    const byNs = new Map<string, typeof real>();
    for (const e of real) {
      const list = byNs.get(e.service.Namespace) ?? [];
      list.push(e);
      byNs.set(e.service.Namespace, list);
    }
    const passing = new Set(catalog.instances(name, { passingOnly: true }).map((e) => e.service.ID));
    const proxies = catalog.connectInstances(name, { passingOnly: true });
    for (const [ns, list] of byNs) {
      const tags = new Set<string>();
      for (const e of list) for (const t of e.service.Tags) tags.add(t);
      const s: ExportedService = {
        Name: name,
        Namespace: ns,
        Instances: list.length,
        Healthy: list.filter((e) => passing.has(e.service.ID)).length,
        ConnectHealthy: proxies.filter((p) => p.service.Namespace === ns).length,
        SubsetHealthy: subsetHealthCounts(connectMembers(catalog, name, ns), configEntries?.get('service-resolver', name)),
        Tags: [...tags].sort(),
        Meta: { ...(list[0]?.service.Meta ?? {}) },
      };
      services.set(exportKey(s), s);
    }
  }
  return { gateways: localGateways(catalog).wan, services };
}

/** What changed from `prev` to `next` (everything, when prev is undefined). */
export function diffExport(prev: ExportState | undefined, next: ExportState): ExportDiff {
  const upserts: ExportedService[] = [];
  const deletes: string[] = [];
  for (const [k, s] of next.services) {
    const p = prev?.services.get(k);
    if (!p || JSON.stringify(p) !== JSON.stringify(s)) upserts.push(s);
  }
  if (prev) for (const k of prev.services.keys()) if (!next.services.has(k)) deletes.push(k);
  return { gateways: next.gateways, upserts, deletes };
}

/** Store ops that apply an export received from `dc` (full: replacing all held of it). */
export function exportOps(store: Store, dc: string, index: number, full: boolean, diff: ExportDiff, now: Date): StoreOp[] {
  const ops: StoreOp[] = [];
  const prefix = `${dc}/`;
  const incoming = new Set(diff.upserts.map((s) => prefix + exportKey(s)));
  if (full) {
    for (const e of store.list(FED_SERVICES, prefix)) if (!incoming.has(e.key)) ops.push({ op: 'delete', table: FED_SERVICES, key: e.key });
  } else {
    for (const k of diff.deletes) if (store.get(FED_SERVICES, prefix + k)) ops.push({ op: 'delete', table: FED_SERVICES, key: prefix + k });
  }
  for (const s of diff.upserts) ops.push({ op: 'put', table: FED_SERVICES, key: prefix + exportKey(s), value: s });
  const header: PeerExport = { Datacenter: dc, Gateways: diff.gateways, Index: index, ReceivedAt: now.toISOString() };
  ops.push({ op: 'put', table: FED_PEERS, key: dc, value: header });
  return ops;
}
