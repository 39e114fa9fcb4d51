// The FlowStore contract shared by the memory ring and the Redis Stream backends: append, query with
// filters and paging, subscribe for live follow. Both pass flow-store.case.test.ts.
import { invalid } from '../core/errors.js';
import type { FlowHop, FlowRecord, FlowVerdict } from './flow-record.js';

export type MaybePromise<T> = T | Promise<T>;

export interface FlowFilter {
  traceId?: string;
  /** Matches the source or the destination service. */
  service?: string;
  /** Source service name. */
  source?: string;
  /** Destination service name. */
  destination?: string;
  /** DC of the hop that wrote the record. */
  dc?: string;
  verdict?: FlowVerdict;
  hop?: FlowHop;
  /** Epoch ms, inclusive, on the record's startTime. */
  since?: number;
  until?: number;
  /** At most this many records (default 500, at most 10,000). */
  limit?: number;
  /**
   * Only records stored after the record with this id, oldest first: follow on from the last one
   * seen. An id the store no longer knows (evicted, or never stored) means "from the oldest".
   */
  after?: string;
  /**
   * Only records stored before the record with this id, newest first: the next page after the last
   * record of a page. An id the store no longer knows gives nothing (everything before it is gone).
   */
  before?: string;
  /** The names /v1/flows and the CLI use for traceId, source and destination. */
  trace?: string;
  from?: string;
  to?: string;
}

/** Kept for the callers that still name it so. */
export type FlowQuery = FlowFilter;

export type FlowListener = (record: FlowRecord) => void;

export interface SubscribeOptions {
  /**
   * Only records appended through this store object (what this server received). By default a
   * subscriber also gets what other servers sharing the same backend appended (the Redis store).
   */
  localOnly?: boolean;
}

/**
 * One DC's flow records. Results are in store (arrival) order: newest first, or oldest first with
 * `after`. Records whose id is already stored are ignored.
 *
 * `append` and `query` may answer at once (the memory ring) or later (Redis): await them.
 * `append` never rejects: flow records are telemetry, and a backend that cannot store them drops
 * them, counts them and logs it rather than stall or crash the data plane that reports them.
 */
export interface FlowStore {
  append(records: readonly FlowRecord[]): MaybePromise<void>;
  query(filter: FlowFilter): MaybePromise<FlowRecord[]>;
  /** Calls `listener` with each record stored from now on; returns the unsubscribe function. */
  subscribe(listener: FlowListener, opts?: SubscribeOptions): () => void;
}

export const DEFAULT_QUERY_LIMIT = 500;
export const MAX_QUERY_LIMIT = 10_000;
export const DEFAULT_FLOW_CAPACITY = 100_000;
/**
 * A record starting this long before the newest start already stored is late: a long connection,
 * reported when it ends. Both stores keep late records apart for time-range queries.
 */
export const LATE_MS = 60_000;

/** A filter with the alias names folded in and the limit settled. */
export type NormalFilter = Omit<FlowFilter, 'limit' | 'trace' | 'from' | 'to'> & { limit: number };

export function normalizeFilter(f: FlowFilter): NormalFilter {
  const bad = (['since', 'until'] as const).filter((k) => f[k] !== undefined && (typeof f[k] !== 'number' || Number.isNaN(f[k])));
  if (bad.length) throw invalid(bad.map((k) => ({ Field: k, Message: 'must be a time in epoch ms' })));
  const limit = f.limit === undefined || !Number.isFinite(f.limit) ? DEFAULT_QUERY_LIMIT : Math.max(0, Math.min(MAX_QUERY_LIMIT, Math.floor(f.limit)));
  return {
    traceId: f.traceId || f.trace || undefined,
    service: f.service || undefined,
    source: f.source || f.from || undefined,
    destination: f.destination || f.to || undefined,
    dc: f.dc || undefined,
    verdict: f.verdict,
    hop: f.hop,
    since: f.since,
    until: f.until,
    limit,
    after: f.after || undefined,
    before: f.before || undefined,
  };
}

/** Whether a record passes a filter's field tests (the paging cursors and the limit aside). */
export function flowMatches(r: FlowRecord, filter: FlowFilter): boolean {
  return matchesNormal(r, normalizeFilter(filter));
}

export function matchesNormal(r: FlowRecord, f: NormalFilter): boolean {
  if (f.traceId !== undefined && r.traceId !== f.traceId) return false;
  if (f.service !== undefined && r.source.service !== f.service && r.destination.service !== f.service) return false;
  if (f.source !== undefined && r.source.service !== f.source) return false;
  if (f.destination !== undefined && r.destination.service !== f.destination) return false;
  if (f.dc !== undefined && r.dc !== f.dc) return false;
  if (f.verdict !== undefined && r.verdict !== f.verdict) return false;
  if (f.hop !== undefined && r.hop !== f.hop) return false;
  if (f.since !== undefined && r.startTime < f.since) return false;
  if (f.until !== undefined && r.startTime > f.until) return false;
  return true;
}

/** The service names a record is indexed under (either side, each once, never empty). */
export function serviceKeys(r: FlowRecord): string[] {
  const a = r.source.service;
  const b = r.destination.service;
  if (!a) return b ? [b] : [];
  return b && b !== a ? [a, b] : [a];
}
