// What a domain offers others instead of its table names: the index of some of its state, a wait
// for that state to change (blocking queries), and a callback on each change (pushes). It sits in
// core/ and needs of the Store only the three calls below, so that a process that uses a domain's
// pure parts (a sidecar compiling intentions) does not load the store with it.

/** The part of the Store (store/store.ts) a TableWatch reads. */
export interface WatchedStore {
  tableIndex(table: string): number;
  waitForChange(tables: string[], afterIndex: number, timeoutMs: number, signal?: AbortSignal): Promise<number>;
  subscribe(listener: (changes: { table: string }[]) => void): () => void;
}

/** The index of some state and a wait for it to move: what a blocking read needs. */
export interface Watchable {
  /** Highest index that changed this state (0 if it never changed). */
  index(): number;
  /**
   * Blocks until this state changes at an index > afterIndex, the timeout passes or the signal
   * aborts; resolves with index() at that moment.
   */
  waitForChange(afterIndex: number, timeoutMs: number, signal?: AbortSignal): Promise<number>;
}

/** A Watchable over a fixed set of one owner's tables, with a listener on their changes. */
export class TableWatch implements Watchable {
  private readonly tables: string[];
  private readonly set: ReadonlySet<string>;

  constructor(
    private readonly store: WatchedStore,
    tables: readonly string[],
  ) {
    this.tables = [...tables];
    this.set = new Set(tables);
  }

  index(): number {
    let max = 0;
    for (const t of this.tables) max = Math.max(max, this.store.tableIndex(t));
    return max;
  }

  waitForChange(afterIndex: number, timeoutMs: number, signal?: AbortSignal): Promise<number> {
    return this.store.waitForChange(this.tables, afterIndex, timeoutMs, signal);
  }

  /** Calls `listener` after every batch of changes that touches these tables; returns the unsubscribe. */
  onChange(listener: () => void): () => void {
    return this.store.subscribe((changes) => {
      if (changes.some((c) => this.set.has(c.table))) listener();
    });
  }
}

/**
 * What a domain that owns tables offers the others, written once: each such domain extends it with
 * its tables by part (`{ services: 'services', ... }`), and answers index(), waitForChange() and
 * onChange() over all of them and watch(...parts) over some.
 */
export class OwnedTables<P extends string> implements Watchable {
  readonly #store: WatchedStore;
  readonly #parts: Readonly<Record<P, string>>;
  readonly #whole: TableWatch;

  constructor(store: WatchedStore, parts: Readonly<Record<P, string>>) {
    this.#store = store;
    this.#parts = parts;
    this.#whole = new TableWatch(store, Object.values(parts));
  }

  /** Index of all of this domain's state: X-Consul-Index of a read of all of it. */
  index(): number {
    return this.#whole.index();
  }

  /** Blocks until any of it changes past `afterIndex` (or the timeout, or the signal); resolves with index(). */
  waitForChange(afterIndex: number, timeoutMs: number, signal?: AbortSignal): Promise<number> {
    return this.#whole.waitForChange(afterIndex, timeoutMs, signal);
  }

  /** Called after every batch of changes to any of it; returns the unsubscribe. */
  onChange(listener: () => void): () => void {
    return this.#whole.onChange(listener);
  }

  /** Some parts only: a blocking read of one part does not wake on another's change (as in Consul). */
  watch(...parts: P[]): TableWatch {
    return new TableWatch(
      this.#store,
      parts.map((p) => this.#parts[p]),
    );
  }
}
