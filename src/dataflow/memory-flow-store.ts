// Flow records of one DC in a bounded ring, with indexes by trace and by service so queries do not
// scan the whole ring; followers get each appended record as it comes.
import type { FlowRecord, FlowVerdict } from './flow-record.js';

export interface FlowQuery {
  trace?: string;
  /** Matches source or destination service. */
  service?: string;
  from?: string;
  to?: string;
  verdict?: FlowVerdict;
  hop?: string;
  /** Epoch ms, inclusive. */
  since?: number;
  until?: number;
  /** Newest first, at most this many (default 500). */
  limit?: number;
}

export interface FlowStore {
  append(records: FlowRecord[]): void;
  query(q: FlowQuery): FlowRecord[];
  follow(q: FlowQuery, listener: (r: FlowRecord) => void): () => void;
  size(): number;
}

export function matches(r: FlowRecord, q: FlowQuery): boolean {
  if (q.trace && r.traceId !== q.trace) return false;
  if (q.service && r.source.service !== q.service && r.destination.service !== q.service) return false;
  if (q.from && r.source.service !== q.from) return false;
  if (q.to && r.destination.service !== q.to) return false;
  if (q.verdict && r.verdict !== q.verdict) return false;
  if (q.hop && r.hop !== q.hop) return false;
  if (q.since !== undefined && r.startTime < q.since) return false;
  if (q.until !== undefined && r.startTime > q.until) return false;
  return true;
}

export class MemoryFlowStore implements FlowStore {
  private readonly ring: (FlowRecord | undefined)[];
  private next = 0;
  private count = 0;
  private readonly byTrace = new Map<string, Set<FlowRecord>>();
  private readonly byService = new Map<string, Set<FlowRecord>>();
  private readonly followers = new Set<{ q: FlowQuery; listener: (r: FlowRecord) => void }>();

  constructor(private readonly capacity = 100_000) {
    this.ring = new Array(capacity);
  }

  size(): number {
    return this.count;
  }

  append(records: FlowRecord[]): void {
    for (const r of records) {
      const evicted = this.ring[this.next];
      if (evicted) this.unindex(evicted);
      this.ring[this.next] = r;
      this.next = (this.next + 1) % this.capacity;
      if (this.count < this.capacity) this.count++;
      this.index(r);
      for (const f of this.followers) if (matches(r, f.q)) f.listener(r);
    }
  }

  query(q: FlowQuery): FlowRecord[] {
    const limit = q.limit ?? 500;
    let candidates: Iterable<FlowRecord>;
    if (q.trace) candidates = this.byTrace.get(q.trace) ?? [];
    else {
      const key = q.from ?? q.to ?? q.service;
      candidates = key ? (this.byService.get(key) ?? []) : this.newestFirst();
    }
    const out: FlowRecord[] = [];
    for (const r of candidates) if (matches(r, q)) out.push(r);
    out.sort((a, b) => b.startTime - a.startTime || b.requestIndex - a.requestIndex);
    return out.slice(0, limit);
  }

  follow(q: FlowQuery, listener: (r: FlowRecord) => void): () => void {
    const f = { q, listener };
    this.followers.add(f);
    return () => this.followers.delete(f);
  }

  private *newestFirst(): Iterable<FlowRecord> {
    for (let i = 1; i <= this.count; i++) {
      const r = this.ring[(this.next - i + this.capacity) % this.capacity];
      if (r) yield r;
    }
  }

  private index(r: FlowRecord): void {
    add(this.byTrace, r.traceId, r);
    add(this.byService, r.source.service, r);
    if (r.destination.service !== r.source.service) add(this.byService, r.destination.service, r);
  }

  private unindex(r: FlowRecord): void {
    remove(this.byTrace, r.traceId, r);
    remove(this.byService, r.source.service, r);
    remove(this.byService, r.destination.service, r);
  }
}

function add(m: Map<string, Set<FlowRecord>>, k: string, r: FlowRecord) {
  if (!k) return;
  let s = m.get(k);
  if (!s) m.set(k, (s = new Set()));
  s.add(r);
}

function remove(m: Map<string, Set<FlowRecord>>, k: string, r: FlowRecord) {
  const s = m.get(k);
  if (!s) return;
  s.delete(r);
  if (s.size === 0) m.delete(k);
}
