// Replication of the primary's tables (REPLICATED_TABLES) to every other DC over the peer links.
// Primary: sends the changes after the index a peer last applied (a snapshot when that index is older
// than what the store keeps), then every new change, and remembers when each was committed (for lag
// and receipts). Secondary: applies what the primary sends, in order, and records the primary index
// applied here in the same commit.
import type { Change, StoreOp } from '../store/index.js';
import type { FederationContext } from './context.js';
import type { PeerLink } from './peer-link.js';
import type { PeerMessage } from './proto.js';
import { FED_STATE, REPLICATED, REPLICATED_TABLES, type AppliedState } from './tables.js';

export class Replication {
  /** Primary: when each replicated change was committed, for lag and receipts. */
  private readonly commitTimes: [number, number][] = [];
  private lastReplicatedIndex = 0;
  /** Secondary: since when the primary has been ahead of what is applied here. */
  private behindSince = 0;

  constructor(private readonly ctx: FederationContext) {}

  /** Primary: picks up where the store is (at start, before any link). */
  init(): void {
    if (this.ctx.isPrimary) this.lastReplicatedIndex = Math.max(0, ...REPLICATED_TABLES.map((t) => this.ctx.store.tableIndex(t)));
  }

  /** Primary: every store change passes here; replicated ones advance the replicated index. */
  track(changes: Change[]): void {
    if (!this.ctx.isPrimary) return;
    const repl = changes.filter((c) => REPLICATED.has(c.table));
    if (repl.length === 0) return;
    const index = repl[repl.length - 1].index;
    this.lastReplicatedIndex = index;
    this.commitTimes.push([index, Date.now()]);
    if (this.commitTimes.length > 8192) this.commitTimes.splice(0, this.commitTimes.length - 8192);
  }

  /** The primary's index of the replicated tables, the one every DC acknowledges (a secondary: what it applied). */
  replicatedIndex(): number {
    return this.ctx.isPrimary ? this.lastReplicatedIndex : this.appliedIndex();
  }

  /** The index sent in heartbeats. */
  storeIndex(): number {
    return this.ctx.isPrimary ? this.lastReplicatedIndex : this.ctx.store.index();
  }

  /** When the first replicated change at or after `index` was committed (primary). */
  commitTime(index: number): number | undefined {
    const t = this.commitTimes;
    let lo = 0;
    let hi = t.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (t[mid][0] < index) lo = mid + 1;
      else hi = mid;
    }
    return t[lo]?.[1];
  }

  /** Primary: how far behind a DC that acknowledged `acked` is, in ms (0 when caught up). */
  lagOf(acked: number, now: number): number {
    if (acked >= this.lastReplicatedIndex) return 0;
    const firstUnacked = this.commitTimes.find(([i]) => i > acked);
    return firstUnacked ? now - firstUnacked[1] : 0;
  }

  /** Secondary: how long the primary has been ahead of what is applied here, in ms. */
  behindMs(now: number): number {
    return this.behindSince ? now - this.behindSince : 0;
  }

  /** Secondary: the primary index applied here. Primary: its own index. */
  appliedIndex(): number {
    if (this.ctx.isPrimary) return this.ctx.store.index();
    return this.ctx.store.get<AppliedState>(FED_STATE, 'applied')?.value.Index ?? 0;
  }

  /** Secondary: waits until the primary's `index` is applied here (read-your-writes after a forward). */
  async waitApplied(index: number, timeoutMs: number): Promise<boolean> {
    const { store } = this.ctx;
    const deadline = Date.now() + timeoutMs;
    while (this.appliedIndex() < index) {
      const left = deadline - Date.now();
      if (left <= 0 || this.ctx.stopped) return false;
      await store.waitForChange([FED_STATE], store.tableIndex(FED_STATE), left);
    }
    return true;
  }

  /** Primary: starts sending the replicated tables after `fromIndex` on `link`; returns the stop function. */
  replicate(link: PeerLink, fromIndex: number): () => void {
    const { store } = this.ctx;
    let sentUpTo = fromIndex;
    const current = store.index();
    const r = fromIndex > current ? undefined : store.changesSince(fromIndex);
    if (!r || r.kind === 'snapshot') {
      const resources = REPLICATED_TABLES.flatMap((table) =>
        store.list(table).map((e) => ({ table, key: e.key, op: 'put', valueJson: JSON.stringify(e.value), index: e.modifyIndex })),
      );
      link.send({ changes: { snapshot: true, index: current, resources, committedAtMs: Date.now() } });
      this.ctx.log.info('full resync sent', { peer: link.peerDc, from: fromIndex, index: current, resources: resources.length });
      sentUpTo = current;
    } else if (r.index > fromIndex) {
      const resources = r.changes.filter((c) => REPLICATED.has(c.table)).map(toResource);
      link.send({ changes: { snapshot: false, index: r.index, resources, committedAtMs: this.commitTime(r.index) ?? Date.now() } });
      sentUpTo = r.index;
    }
    return store.subscribe((changes) => {
      const fresh = changes.filter((c) => c.index > sentUpTo && REPLICATED.has(c.table));
      if (fresh.length === 0) return;
      const index = fresh[fresh.length - 1].index;
      sentUpTo = index;
      link.send({ changes: { snapshot: false, index, resources: fresh.map(toResource), committedAtMs: this.commitTime(index) ?? Date.now() } });
    });
  }

  /**
   * Secondary: applies a batch from the primary in one commit with the index it brings. An older
   * batch changes nothing; a resource of a table that is not replicated, or a value that is not
   * JSON, is skipped and logged (invalid, not transient). Returns whether CA tables changed.
   */
  async applyChanges(link: PeerLink, msg: NonNullable<PeerMessage['changes']>): Promise<{ caChanged: boolean }> {
    const { store, log } = this.ctx;
    if (link.peerDc !== this.ctx.primaryDc || this.ctx.isPrimary) {
      log.warn('replicated tables refused from a datacenter that is not the primary', { peer: link.peerDc });
      return { caChanged: false };
    }
    const applied = this.appliedIndex();
    if (!msg.snapshot && msg.index <= applied) return { caChanged: false };
    const ops: StoreOp[] = [];
    if (msg.snapshot) {
      const incoming = new Set(msg.resources.map((r) => `${r.table}\u0000${r.key}`));
      for (const table of REPLICATED_TABLES)
        for (const e of store.list(table)) if (!incoming.has(`${table}\u0000${e.key}`)) ops.push({ op: 'delete', table, key: e.key });
    }
    let caChanged = false;
    for (const r of msg.resources) {
      if (!REPLICATED.has(r.table)) {
        log.warn('replicated change for a table that is not replicated; skipped', { table: r.table, key: r.key });
        continue;
      }
      if (r.table.startsWith('ca-')) caChanged = true;
      if (r.op === 'delete') {
        if (store.get(r.table, r.key)) ops.push({ op: 'delete', table: r.table, key: r.key });
        continue;
      }
      let value: unknown;
      try {
        value = JSON.parse(r.valueJson);
      } catch {
        log.warn('replicated value is not JSON; skipped', { table: r.table, key: r.key });
        continue;
      }
      ops.push({ op: 'put', table: r.table, key: r.key, value });
    }
    const state: AppliedState = { Index: msg.index, At: new Date().toISOString() };
    ops.push({ op: 'put', table: FED_STATE, key: 'applied', value: state });
    await store.commit(ops);
    if (link.peerIndex <= msg.index) this.behindSince = 0;
    if (msg.snapshot) log.info('full resync applied', { from: link.peerDc, index: msg.index, resources: msg.resources.length });
    return { caChanged };
  }

  /** Secondary: a heartbeat from the primary says how far it is; note since when this DC is behind. */
  heard(link: PeerLink): void {
    if (this.ctx.isPrimary || link.peerDc !== this.ctx.primaryDc) return;
    if (this.appliedIndex() < link.peerIndex) this.behindSince ||= Date.now();
    else this.behindSince = 0;
  }
}

function toResource(c: Change) {
  return { table: c.table, key: c.key, op: c.op, valueJson: c.op === 'put' ? JSON.stringify(c.entry?.value ?? null) : '', index: c.index };
}
