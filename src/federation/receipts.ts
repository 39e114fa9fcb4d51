// Receipts (primary): which DCs have applied a replicated write. Each DC acknowledges the batches it
// applied on its peer link; the acknowledgements are kept here (with when each index first arrived)
// and in the store (so every replica of the primary answers the same), and a write can wait for them.
import { Histogram, type Registry } from 'prom-client';
import type { FederationContext } from './context.js';
import type { Membership } from './membership.js';
import type { Replication } from './replication.js';
import { FED_ACKS, type AckState } from './tables.js';

export interface Receipt {
  Datacenter: string;
  Applied: boolean;
  /** The primary index this DC had applied when asked. */
  AppliedIndex: number;
  /** When it first reached the asked index, if it has. */
  AppliedAt: string | null;
}

export interface Receipts {
  Index: number;
  Complete: boolean;
  Datacenters: Receipt[];
}

export class ReceiptBook {
  /** Per DC, the acknowledged indexes this replica saw, with when they arrived. */
  private readonly acks = new Map<string, [number, number][]>();
  private readonly waiters = new Set<() => void>();
  /** Per DC, a store write of its acknowledgement in flight, and whether a newer one waits. */
  private readonly persisting = new Map<string, { again: boolean }>();
  private readonly applyLatency: Histogram | undefined;

  constructor(
    private readonly ctx: FederationContext,
    private readonly members: Membership,
    private readonly replication: Replication,
    registry?: Registry,
  ) {
    if (registry) {
      this.applyLatency = new Histogram({
        name: 'isthmus_federation_replication_seconds',
        help: 'Time from a replicated write at the primary to its acknowledgement by a datacenter.',
        labelNames: ['peer'],
        buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
        registers: [registry],
      });
    }
  }

  /** Primary: `dc` acknowledged that it applied the replicated tables up to `index`. */
  acked(dc: string, index: number): void {
    if (!this.ctx.isPrimary) return;
    let list = this.acks.get(dc);
    if (!list) this.acks.set(dc, (list = []));
    const last = list.length ? list[list.length - 1][0] : 0;
    if (index <= last) return;
    const now = Date.now();
    list.push([index, now]);
    if (list.length > 4096) list.splice(0, list.length - 4096);
    const committed = this.replication.commitTime(index);
    if (committed !== undefined) this.applyLatency?.labels(dc).observe((now - committed) / 1000);
    this.persist(dc);
    this.wake();
  }

  /** The highest index `dc` acknowledged, as seen here or by another replica of this DC. */
  ackedIndex(dc: string): number {
    const list = this.acks.get(dc);
    const mine = list?.length ? list[list.length - 1][0] : 0;
    return Math.max(mine, this.ctx.store.get<AckState>(FED_ACKS, dc)?.value.Index ?? 0);
  }

  receipts(asked: number): Receipts {
    const { store, dc: self } = this.ctx;
    // Only replicated changes are acknowledged: a later index of another table counts as the replicated one before it.
    const index = Math.min(asked, this.replication.replicatedIndex());
    const out: Receipt[] = [];
    for (const dc of this.members.datacenters()) {
      if (dc === self) {
        const applied = store.index() >= index;
        out.push({
          Datacenter: dc,
          Applied: applied,
          AppliedIndex: store.index(),
          AppliedAt: applied ? new Date(this.replication.commitTime(index) ?? Date.now()).toISOString() : null,
        });
        continue;
      }
      const last = this.ackedIndex(dc);
      const first = this.acks.get(dc)?.find(([i]) => i >= index);
      const stored = store.get<AckState>(FED_ACKS, dc)?.value;
      const at = first ? first[1] : stored && stored.Index >= index ? stored.At : undefined;
      out.push({ Datacenter: dc, Applied: last >= index, AppliedIndex: last, AppliedAt: at !== undefined ? new Date(at).toISOString() : null });
    }
    return { Index: asked, Complete: out.every((r) => r.Applied), Datacenters: out };
  }

  /** Resolves once every DC has applied `index`, or when the timeout passes (Complete says which). */
  async waitForReceipts(index: number, timeoutMs: number): Promise<Receipts> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = this.receipts(index);
      if (r.Complete || Date.now() >= deadline || this.ctx.stopped) return r;
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(t);
          this.waiters.delete(done);
          resolve();
        };
        const t = setTimeout(done, deadline - Date.now());
        this.waiters.add(done);
      });
    }
  }

  /** Wakes every waiter (a new acknowledgement, one seen through the store, or the server stopping). */
  wake(): void {
    for (const w of [...this.waiters]) w();
  }

  /** One store write per DC at a time; what arrives meanwhile goes in the next. */
  private persist(dc: string): void {
    const pending = this.persisting.get(dc);
    if (pending) {
      pending.again = true;
      return;
    }
    const state = { again: false };
    this.persisting.set(dc, state);
    const list = this.acks.get(dc)!;
    const [index, at] = list[list.length - 1];
    const stored = this.ctx.store.get<AckState>(FED_ACKS, dc)?.value;
    const write =
      stored && stored.Index >= index
        ? Promise.resolve()
        : this.ctx.store.commit([{ op: 'put', table: FED_ACKS, key: dc, value: { Index: index, At: at } satisfies AckState }]).then(() => undefined);
    write
      .catch((err) => this.ctx.log.warn('cannot record an acknowledgement; receipts on other replicas lag until the next', { dc, error: err }))
      .finally(() => {
        this.persisting.delete(dc);
        if (state.again && !this.ctx.stopped) this.persist(dc);
      });
  }
}
