// The exported catalogs on a peer link: this DC sends its export (in full when the link comes up,
// then diffs after each catalog change) and applies the peer's. At the primary a peer's gateways also
// go into its member entry, from which every DC learns every other DC's gateways.
import { isHostPort } from '../core/names.js';
import { computeExport, diffExport, exportOps, type ExportState } from './catalog-export.js';
import type { FederationContext } from './context.js';
import type { PeerLink } from './peer-link.js';
import type { PeerMessage } from './proto.js';
import { FED_MEMBERS, type ExportedService, type Member } from './tables.js';

const SERVICE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const NAMESPACE_RE = /^[A-Za-z0-9*][A-Za-z0-9_.-]{0,62}$/;

/** A peer's per-subset counts: subset names (or "") with non-negative integer counts, at most 256 of them. */
function boundedCounts(raw: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(raw).slice(0, 256)) {
    if ((k === '' || /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(k)) && Number.isInteger(v) && v >= 0) out[k] = v;
  }
  return out;
}

export class CatalogExchange {
  constructor(private readonly ctx: FederationContext) {}

  /** Starts sending this DC's export on `link` (full, then diffs); returns the stop function. */
  exportTo(link: PeerLink): () => void {
    const { catalog, store, dc } = this.ctx;
    let last: ExportState | undefined;
    let timer: NodeJS.Timeout | undefined;
    const send = () => {
      timer = undefined;
      if (!link.open) return;
      const next = computeExport(catalog, this.ctx.opts.configEntries);
      const d = diffExport(last, next);
      if (last && d.upserts.length === 0 && d.deletes.length === 0 && JSON.stringify(last.gateways) === JSON.stringify(next.gateways)) return;
      link.send({
        export: {
          datacenter: dc,
          index: store.index(),
          full: !last,
          gateways: d.gateways,
          upserts: d.upserts.map((s) => ({
            name: s.Name,
            namespace: s.Namespace,
            instances: s.Instances,
            healthy: s.Healthy,
            connectHealthy: s.ConnectHealthy,
            tags: s.Tags,
            meta: s.Meta,
            subsetHealthy: s.SubsetHealthy ?? {},
          })),
          deletes: d.deletes,
        },
      });
      last = next;
    };
    send();
    const schedule = () => {
      if (!timer) timer = setTimeout(send, 50);
    };
    const unsub = this.ctx.catalog.onChange(schedule);
    // A resolver's Subsets change what is counted per subset.
    const unsubEntries = this.ctx.opts.configEntries?.onChange(schedule) ?? (() => {});
    return () => {
      unsub();
      unsubEntries();
      clearTimeout(timer);
    };
  }

  /** Applies an export from `link`'s peer; services with invalid names and malformed gateway addresses are skipped. */
  async applyExport(link: PeerLink, msg: NonNullable<PeerMessage['export']>): Promise<void> {
    const { store, log } = this.ctx;
    if (msg.datacenter !== link.peerDc) {
      log.warn('export refused: it names another datacenter than its sender', { peer: link.peerDc, names: msg.datacenter });
      return;
    }
    const upserts: ExportedService[] = [];
    for (const s of msg.upserts) {
      if (!SERVICE_NAME_RE.test(s.name) || !NAMESPACE_RE.test(s.namespace || 'default')) {
        log.warn('exported service with an invalid name skipped', { peer: link.peerDc, name: s.name });
        continue;
      }
      upserts.push({
        Name: s.name,
        Namespace: s.namespace || 'default',
        Instances: s.instances,
        Healthy: s.healthy,
        ConnectHealthy: s.connectHealthy,
        Tags: s.tags,
        Meta: s.meta ?? {},
        ...(s.subsetHealthy && Object.keys(s.subsetHealthy).length ? { SubsetHealthy: boundedCounts(s.subsetHealthy) } : {}),
      });
    }
    const gateways = msg.gateways.filter((g) => isHostPort(g));
    const ops = exportOps(store, link.peerDc, msg.index, msg.full, { gateways, upserts, deletes: msg.deletes }, new Date());
    if (this.ctx.isPrimary) {
      const m = store.get<Member>(FED_MEMBERS, link.peerDc);
      if (m && JSON.stringify(m.value.Gateways) !== JSON.stringify(gateways))
        ops.push({ op: 'put', table: FED_MEMBERS, key: link.peerDc, value: { ...m.value, Gateways: gateways } });
    }
    await store.commit(ops);
  }
}
