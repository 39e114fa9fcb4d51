// The Store: the one interface every domain persists through. Two implementations
// (memory/ with an append-only log + snapshot, redis/ with ioredis + a change stream)
// pass the same suite (store.case.test.ts).
//
// Reads are synchronous from this replica's in-memory view, which always holds every
// table (control-plane data is small; authorize and catalog reads must not wait on I/O).
// Writes are atomic batches; a commit resolves only after the change is durable in the
// backend AND applied to this replica's view (read-your-writes on the writing replica).
import type { Component } from '../core/lifecycle.js';

export interface StoreEntry<T = unknown> {
  key: string;
  value: T;
  /** Index of the commit that created the key. */
  createIndex: number;
  /** Index of the commit that last wrote it. */
  modifyIndex: number;
}

/**
 * One operation of an atomic commit. `ifIndex` is a check-and-set guard:
 * 0 = the key must not exist; N > 0 = its modifyIndex must be N. A failed guard fails the
 * whole commit with ISTHMUS_ERR_CONFLICT and changes nothing.
 */
export type StoreOp =
  { op: 'put'; table: string; key: string; value: unknown; ifIndex?: number } | { op: 'delete'; table: string; key: string; ifIndex?: number };

export interface Change {
  index: number;
  table: string;
  key: string;
  op: 'put' | 'delete';
  /** The new entry for a put; absent for a delete. */
  entry?: StoreEntry;
}

export type ChangesSince =
  | { kind: 'changes'; index: number; changes: Change[] }
  /** The asked index is older than what the backend retains: the whole state, never a silent skip. */
  | { kind: 'snapshot'; index: number; tables: Record<string, StoreEntry[]> };

export interface CommitResult {
  index: number;
}

export interface Store extends Component {
  readonly backend: 'memory' | 'redis';
  readonly dc: string;

  /** Highest change index applied to this replica (0 before the first write). */
  index(): number;
  /** Highest index that changed `table` (puts and deletes); 0 if it never changed. */
  tableIndex(table: string): number;

  get<T = unknown>(table: string, key: string): StoreEntry<T> | undefined;
  /** Entries of a table, sorted by key; with a prefix only keys that start with it. */
  list<T = unknown>(table: string, prefix?: string): StoreEntry<T>[];

  /**
   * Applies all ops atomically under one new index. Throws ISTHMUS_ERR_CONFLICT on a failed
   * guard, ISTHMUS_ERR_STORE_UNAVAILABLE when the backend cannot be reached (nothing applied),
   * ISTHMUS_ERR_INVALID for an empty batch or a value that is not JSON-serialisable.
   */
  commit(ops: StoreOp[]): Promise<CommitResult>;

  /**
   * Blocks until one of `tables` changes at an index > afterIndex, the timeout passes, or the
   * signal aborts; resolves with max(tableIndex(t) for t in tables) at that moment.
   */
  waitForChange(tables: string[], afterIndex: number, timeoutMs: number, signal?: AbortSignal): Promise<number>;

  /** Changes after `index` in order, or a snapshot when the backend no longer has them all. */
  changesSince(index: number): ChangesSince;

  /** Called with every batch of changes applied to this replica (local or remote writes), in index order. */
  subscribe(listener: (changes: Change[]) => void): () => void;

  /** Leadership among replicas of one DC (memory: always this one). */
  isLeader(): boolean;
  /** The advertised address of the current leader, if known. */
  leader(): string | undefined;
  /** Called when this replica gains (true) or loses (false) the leadership; returns the unsubscribe function. */
  onLeaderChange(listener: (leader: boolean) => void): () => void;
}

export interface StoreOptions {
  dc: string;
  /** This replica's advertised address (host:port of its HTTP API), published for /v1/status/leader. */
  advertiseAddr: string;
}

export interface MemoryStoreOptions extends StoreOptions {
  /** Directory for the change log and snapshots. Without it nothing is persisted (tests, benchmarks). */
  dataDir?: string;
  /** Compact the log into a snapshot after this many appended changes. */
  compactEvery?: number;
  /** How many recent changes are kept for changesSince(); older asks get a snapshot. */
  retainChanges?: number;
}

export interface RedisStoreOptions extends StoreOptions {
  redisUrl: string;
  /** Key prefix; the DC is appended (`<prefix>:<dc>:...`). */
  keyPrefix?: string;
  /** Cap of the change stream (XADD MAXLEN ~); a replica behind it reloads a snapshot. */
  streamMaxLen?: number;
  retainChanges?: number;
  /** How long a leader's lease lasts without renewal (renewed every fifth of it); default 5 s. */
  leaseMs?: number;
}
