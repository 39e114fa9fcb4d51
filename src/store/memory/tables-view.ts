// The read side both backends share: every read, wait and subscription is served by the local Tables.
import type { Change, ChangesSince, StoreEntry } from '../store.js';
import type { Tables } from './tables.js';

export abstract class TablesView {
  protected abstract readonly tables: Tables;

  index(): number {
    return this.tables.index;
  }

  tableIndex(table: string): number {
    return this.tables.tableIndex(table);
  }

  get<T = unknown>(table: string, key: string): StoreEntry<T> | undefined {
    return this.tables.get(table, key) as StoreEntry<T> | undefined;
  }

  list<T = unknown>(table: string, prefix?: string): StoreEntry<T>[] {
    return this.tables.list(table, prefix) as StoreEntry<T>[];
  }

  waitForChange(tables: string[], afterIndex: number, timeoutMs: number, signal?: AbortSignal): Promise<number> {
    return this.tables.waitForChange(tables, afterIndex, timeoutMs, signal);
  }

  changesSince(index: number): ChangesSince {
    return this.tables.changesSince(index);
  }

  subscribe(listener: (changes: Change[]) => void): () => void {
    return this.tables.subscribe(listener);
  }
}
