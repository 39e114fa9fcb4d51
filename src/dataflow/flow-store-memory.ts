// Flow records of one DC in a bounded ring (the default store). Secondary indexes by trace, service
// and verdict follow the ring's eviction, so a query by trace or a rare verdict touches only its own
// records; a time range narrows the scan by binary search, although records arrive out of order.
import { invalid } from '../core/errors.js';
import type { Component } from '../core/lifecycle.js';
import type { Logger } from '../telemetry/index.js';
import type { FlowRecord } from './flow-record.js';
import {
  DEFAULT_FLOW_CAPACITY,
  LATE_MS,
  matchesNormal,
  normalizeFilter,
  serviceKeys,
  type FlowFilter,
  type FlowListener,
  type FlowStore,
  type NormalFilter,
  type SubscribeOptions,
} from './flow-store.js';
import { Interner } from './intern.js';
import { SeqQueue } from './seq-queue.js';

type Segment = [list: SeqQueue | null | undefined, from: number, to: number];

export interface MemoryFlowStoreOptions {
  /** Records kept; the oldest go first (default 100,000). */
  capacity?: number;
  /** Where a subscriber that throws is reported. */
  logger?: Logger;
}

export class MemoryFlowStore implements FlowStore, Component {
  readonly name = 'flows-memory';
  readonly capacity: number;
  /** Records looked at by queries so far (how tests check that a query did not scan the ring). */
  visited = 0;

  // Every record gets the next sequence number; it lives in slot seq % capacity.
  private readonly ring: (FlowRecord | undefined)[];
  private oldest = 0;
  private next = 0;
  // Records arrive roughly, not exactly, in startTime order (a record is written when its
  // connection ends). Two monotone views bound a time range anyway:
  // - maxStart[slot]: the largest startTime of any record up to this one, never decreasing, so
  //   every record before the first slot with maxStart >= since started before `since`;
  // - a stack of suffix minima (seq, startTime), both ascending: every record after the last
  //   entry with startTime <= until started after `until`. A record that starts more than
  //   LATE_MS before the newest start seen (a long connection) would hold that bound back for
  //   everything before it, so it stays out of the stack and goes to the `late` list instead.
  private readonly maxStart: Float64Array;
  private runningMax = -Infinity;
  private minSeqs: number[] = [];
  private minVals: number[] = [];
  private minHead = 0;

  private readonly ids = new Map<string, number>();
  private readonly byTrace = new Map<string, SeqQueue>();
  private readonly byService = new Map<string, SeqQueue>();
  private readonly byVerdict = new Map<string, SeqQueue>();
  private readonly late = new SeqQueue();
  private readonly listeners = new Set<FlowListener>();
  private readonly logger: Logger | undefined;
  /** Repeated fields of the kept records share one copy (see intern.ts). */
  private readonly interner = new Interner();

  constructor(opts: MemoryFlowStoreOptions | number = {}) {
    const o = typeof opts === 'number' ? { capacity: opts } : opts;
    const capacity = o.capacity ?? DEFAULT_FLOW_CAPACITY;
    if (!Number.isInteger(capacity) || capacity < 1) throw invalid([{ Field: 'capacity', Message: 'must be a positive integer' }]);
    this.capacity = capacity;
    this.ring = new Array(capacity);
    this.maxStart = new Float64Array(capacity);
    this.logger = o.logger;
  }

  async start(): Promise<void> {}

  async stop(): Promise<void> {
    this.listeners.clear();
  }

  size(): number {
    return this.next - this.oldest;
  }

  append(records: readonly FlowRecord[]): void {
    const stored: FlowRecord[] = [];
    for (const given of records) {
      if (this.ids.has(given.id)) continue;
      const r = this.interner.record(given);
      if (this.size() === this.capacity) this.evictOldest();
      const seq = this.next++;
      const slot = seq % this.capacity;
      this.ring[slot] = r;
      if (r.startTime < this.runningMax - LATE_MS) this.late.push(seq);
      else this.pushMin(seq, r.startTime);
      this.runningMax = Math.max(this.runningMax, r.startTime);
      this.maxStart[slot] = this.runningMax;
      this.ids.set(r.id, seq);
      add(this.byTrace, r.traceId, seq);
      for (const s of serviceKeys(r)) add(this.byService, s, seq);
      add(this.byVerdict, r.verdict, seq);
      stored.push(r);
    }
    for (const r of stored) {
      for (const listener of this.listeners) {
        try {
          listener(r);
        } catch (err) {
          this.logger?.warn('flow subscriber failed', { error: (err as Error).message });
        }
      }
    }
  }

  query(filter: FlowFilter): FlowRecord[] {
    const f = normalizeFilter(filter);
    const [lo, hi] = this.bounds(f);
    if (f.limit === 0 || lo > hi) return [];
    // With `until`, on-time records past hiMain all started too late; late ones are looked up apart.
    const hiMain = f.until === undefined ? hi : Math.min(hi, this.lastStartedBy(f.until));
    const main: Segment = [this.pickIndex(f, lo, hiMain), lo, hiMain];
    const late: Segment = [this.late, Math.max(lo, hiMain + 1), hi];
    const ascending = f.after !== undefined;
    const out: FlowRecord[] = [];
    for (const [list, from, to] of ascending ? [main, late] : [late, main]) {
      if (from > to || list === undefined) continue;
      if (!this.scan(list, from, to, ascending, f, out)) break;
    }
    return out;
  }

  /** Visits the sequences of `list` (or all) in [from, to]; false once the limit is reached. */
  private scan(list: SeqQueue | null, from: number, to: number, ascending: boolean, f: NormalFilter, out: FlowRecord[]): boolean {
    const visit = (seq: number): boolean => {
      const r = this.ring[seq % this.capacity]!;
      this.visited++;
      if (matchesNormal(r, f)) out.push(r);
      return out.length < f.limit;
    };
    if (list === null) {
      if (ascending) {
        for (let s = from; s <= to; s++) if (!visit(s)) return false;
      } else {
        for (let s = to; s >= from; s--) if (!visit(s)) return false;
      }
      return true;
    }
    const first = list.lowerBound(from);
    const last = list.lowerBound(to + 1) - 1;
    if (ascending) {
      for (let i = first; i <= last; i++) if (!visit(list.at(i))) return false;
    } else {
      for (let i = last; i >= first; i--) if (!visit(list.at(i))) return false;
    }
    return true;
  }

  subscribe(listener: FlowListener, _opts?: SubscribeOptions): () => void {
    // One object is the whole store here, so local and DC-wide are the same thing.
    const own = (r: FlowRecord) => listener(r);
    this.listeners.add(own);
    return () => {
      this.listeners.delete(own);
    };
  }

  /** The sequence range [lo, hi] that can hold a match, from `since` and the cursors. */
  private bounds(f: NormalFilter): [number, number] {
    let lo = this.oldest;
    let hi = this.next - 1;
    if (f.since !== undefined) lo = Math.max(lo, this.firstStartingBy(f.since));
    if (f.after !== undefined) {
      const seq = this.ids.get(f.after);
      if (seq !== undefined) lo = Math.max(lo, seq + 1);
    }
    if (f.before !== undefined) {
      const seq = this.ids.get(f.before);
      hi = seq === undefined ? -1 : Math.min(hi, seq - 1);
    }
    return [lo, hi];
  }

  /**
   * The smallest index list that covers every match within [lo, hi]: `null` when scanning the
   * range itself is cheaper, `undefined` when an index shows nothing can match.
   */
  private pickIndex(f: NormalFilter, lo: number, hi: number): SeqQueue | null | undefined {
    if (f.traceId !== undefined) return this.byTrace.get(f.traceId);
    const keys: [Map<string, SeqQueue>, string | undefined][] = [
      [this.byService, f.service],
      [this.byService, f.source],
      [this.byService, f.destination],
      [this.byVerdict, f.verdict],
    ];
    let best: SeqQueue | null = null;
    let bestCount = hi - lo + 1;
    for (const [map, key] of keys) {
      if (key === undefined) continue;
      const list = map.get(key);
      if (!list) return undefined;
      const n = list.countBetween(lo, hi);
      if (n < bestCount) {
        best = list;
        bestCount = n;
      }
    }
    return best;
  }

  /** The first sequence whose record, or any after it, can have started at or after `since`. */
  private firstStartingBy(since: number): number {
    let lo = this.oldest;
    let hi = this.next;
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      if (this.maxStart[mid % this.capacity] < since) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The last sequence whose record, or any before it, can have started at or before `until`. */
  private lastStartedBy(until: number): number {
    let lo = this.minHead;
    let hi = this.minVals.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.minVals[mid] <= until) lo = mid + 1;
      else hi = mid;
    }
    return lo === this.minHead ? -1 : this.minSeqs[lo - 1];
  }

  private pushMin(seq: number, startTime: number): void {
    while (this.minVals.length > this.minHead && this.minVals[this.minVals.length - 1] >= startTime) {
      this.minVals.pop();
      this.minSeqs.pop();
    }
    this.minSeqs.push(seq);
    this.minVals.push(startTime);
  }

  private evictOldest(): void {
    const seq = this.oldest++;
    const slot = seq % this.capacity;
    const r = this.ring[slot]!;
    this.ring[slot] = undefined;
    if (this.ids.get(r.id) === seq) this.ids.delete(r.id);
    shift(this.byTrace, r.traceId, seq);
    for (const s of serviceKeys(r)) shift(this.byService, s, seq);
    shift(this.byVerdict, r.verdict, seq);
    this.late.shiftIf(seq);
    while (this.minHead < this.minSeqs.length && this.minSeqs[this.minHead] < this.oldest) this.minHead++;
    if (this.minHead >= 1024 && this.minHead * 2 >= this.minSeqs.length) {
      this.minSeqs = this.minSeqs.slice(this.minHead);
      this.minVals = this.minVals.slice(this.minHead);
      this.minHead = 0;
    }
  }

  /** Index list lengths, for tests that check eviction keeps the indexes in step. */
  indexSizes(): { traces: number; services: number; verdicts: number; ids: number; entries: number; late: number; suffixMinima: number } {
    let entries = 0;
    for (const m of [this.byTrace, this.byService, this.byVerdict]) for (const q of m.values()) entries += q.size;
    return {
      traces: this.byTrace.size,
      services: this.byService.size,
      verdicts: this.byVerdict.size,
      ids: this.ids.size,
      entries,
      late: this.late.size,
      suffixMinima: this.minSeqs.length - this.minHead,
    };
  }
}

function add(m: Map<string, SeqQueue>, key: string, seq: number): void {
  if (!key) return;
  let q = m.get(key);
  if (!q) m.set(key, (q = new SeqQueue()));
  q.push(seq);
}

function shift(m: Map<string, SeqQueue>, key: string, seq: number): void {
  const q = m.get(key);
  if (!q || !q.shiftIf(seq)) return;
  if (q.size === 0) m.delete(key);
}
