// The in-memory tables both backends keep as their local view, with per-table indexes,
// a bounded list of recent changes and the waiters of blocking reads.
import type { Change, ChangesSince, StoreEntry } from '../store.js';

interface Waiter {
  tables: string[];
  afterIndex: number;
  resolve: () => void;
}

export class Tables {
  private readonly tables = new Map<string, Map<string, StoreEntry>>();
  private readonly tableIndexes = new Map<string, number>();
  private readonly recent: Change[] = [];
  private waiters = new Set<Waiter>();
  private readonly listeners = new Set<(changes: Change[]) => void>();
  /** Oldest index changesSince() can answer from `recent` (exclusive). */
  private horizon = 0;
  index = 0;

  constructor(private readonly retainChanges = 10_000) {}

  get(table: string, key: string): StoreEntry | undefined {
    return this.tables.get(table)?.get(key);
  }

  list(table: string, prefix?: string): StoreEntry[] {
    const t = this.tables.get(table);
    if (!t) return [];
    const out: StoreEntry[] = [];
    for (const [k, e] of t) if (prefix === undefined || k.startsWith(prefix)) out.push(e);
    out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return out;
  }

  tableIndex(table: string): number {
    return this.tableIndexes.get(table) ?? 0;
  }

  tableNames(): string[] {
    return [...this.tables.keys()];
  }

  /** Applies changes that share one index (one commit) and notifies listeners and waiters. */
  apply(changes: Change[], notify = true): void {
    if (changes.length === 0) return;
    for (const ch of changes) {
      let t = this.tables.get(ch.table);
      if (!t) {
        t = new Map();
        this.tables.set(ch.table, t);
      }
      if (ch.op === 'put' && ch.entry) t.set(ch.key, ch.entry);
      else t.delete(ch.key);
      this.tableIndexes.set(ch.table, Math.max(this.tableIndex(ch.table), ch.index));
      if (ch.index > this.index) this.index = ch.index;
      this.recent.push(ch);
    }
    this.trim();
    if (!notify) return;
    for (const l of this.listeners) {
      try {
        l(changes);
      } catch {
        // A listener's failure is its own; the store keeps going.
      }
    }
    this.wake(changes);
  }

  /** Replaces all content with a snapshot (start-up, or a replica that fell behind). */
  load(index: number, tables: Record<string, StoreEntry[]>, tableIndexes?: Record<string, number>): void {
    this.tables.clear();
    this.tableIndexes.clear();
    this.recent.length = 0;
    for (const [name, entries] of Object.entries(tables)) {
      const t = new Map<string, StoreEntry>();
      let max = 0;
      for (const e of entries) {
        t.set(e.key, e);
        if (e.modifyIndex > max) max = e.modifyIndex;
      }
      this.tables.set(name, t);
      this.tableIndexes.set(name, max);
    }
    for (const [name, i] of Object.entries(tableIndexes ?? {})) {
      this.tableIndexes.set(name, Math.max(i, this.tableIndexes.get(name) ?? 0));
    }
    this.index = index;
    this.horizon = index;
  }

  snapshot(): Record<string, StoreEntry[]> {
    const out: Record<string, StoreEntry[]> = {};
    for (const name of this.tables.keys()) out[name] = this.list(name);
    return out;
  }

  tableIndexSnapshot(): Record<string, number> {
    return Object.fromEntries(this.tableIndexes);
  }

  changesSince(index: number): ChangesSince {
    if (index >= this.index) return { kind: 'changes', index: this.index, changes: [] };
    if (index < this.horizon) return { kind: 'snapshot', index: this.index, tables: this.snapshot() };
    // recent is in index order; find the first change after `index`.
    let lo = 0;
    let hi = this.recent.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.recent[mid].index <= index) lo = mid + 1;
      else hi = mid;
    }
    return { kind: 'changes', index: this.index, changes: this.recent.slice(lo) };
  }

  subscribe(listener: (changes: Change[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  waitForChange(tables: string[], afterIndex: number, timeoutMs: number, signal?: AbortSignal): Promise<number> {
    const current = () => Math.max(0, ...tables.map((t) => this.tableIndex(t)));
    if (current() > afterIndex || signal?.aborted || timeoutMs <= 0) return Promise.resolve(current());
    return new Promise((resolve) => {
      const waiter: Waiter = { tables, afterIndex, resolve: () => finish() };
      const timer = setTimeout(() => finish(), timeoutMs);
      const onAbort = () => finish();
      signal?.addEventListener('abort', onAbort, { once: true });
      const finish = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.waiters.delete(waiter);
        resolve(current());
      };
      this.waiters.add(waiter);
    });
  }

  /** Wakes every waiter (used at stop so blocking reads end). */
  wakeAll(): void {
    for (const w of [...this.waiters]) w.resolve();
  }

  private wake(changes: Change[]): void {
    if (this.waiters.size === 0) return;
    for (const w of [...this.waiters]) {
      if (changes.some((ch) => ch.index > w.afterIndex && w.tables.includes(ch.table))) w.resolve();
    }
  }

  private trim(): void {
    const excess = this.recent.length - this.retainChanges;
    if (excess > 0) {
      // Drop whole commits only, so changesSince never answers half a commit.
      let cut = excess;
      while (cut < this.recent.length && this.recent[cut].index === this.recent[cut - 1].index) cut++;
      this.horizon = this.recent[cut - 1].index;
      this.recent.splice(0, cut);
    }
  }
}
