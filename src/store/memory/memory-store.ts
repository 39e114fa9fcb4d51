// The embedded store: tables in memory, every commit appended to a log in the data dir
// (written before the commit is acknowledged, so it survives kill -9), compacted into a snapshot.
import { closeSync, existsSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { conflict, ErrorCodes, IsthmusError } from '../../core/errors.js';
import type { Change, CommitResult, MemoryStoreOptions, Store, StoreEntry, StoreOp } from '../store.js';
import { Tables } from './tables.js';
import { TablesView } from './tables-view.js';
import { checkOps, freezeValue } from './validate-ops.js';

const LOG_FILE = 'changes.log';
const SNAPSHOT_FILE = 'snapshot.json';

interface LogLine {
  i: number;
  c: { t: string; k: string; o: 'put' | 'delete'; v?: unknown; ci?: number }[];
}

export class MemoryStore extends TablesView implements Store {
  readonly name = 'store-memory';
  readonly backend = 'memory' as const;
  readonly dc: string;
  protected readonly tables: Tables;
  private logFd: number | undefined;
  private appended = 0;
  private started = false;

  constructor(private readonly opts: MemoryStoreOptions) {
    super();
    this.dc = opts.dc;
    this.tables = new Tables(opts.retainChanges ?? 10_000);
  }

  async start(): Promise<void> {
    if (this.started) return;
    if (this.opts.dataDir) {
      mkdirSync(this.opts.dataDir, { recursive: true });
      this.recover(this.opts.dataDir);
      this.logFd = openSync(join(this.opts.dataDir, LOG_FILE), 'a');
    }
    this.started = true;
  }

  async stop(): Promise<void> {
    this.tables.wakeAll();
    if (this.logFd !== undefined) {
      closeSync(this.logFd);
      this.logFd = undefined;
    }
    this.started = false;
  }

  async commit(ops: StoreOp[]): Promise<CommitResult> {
    if (!this.started) throw new IsthmusError(ErrorCodes.STORE_UNAVAILABLE, 'store is not started');
    checkOps(ops);
    // Guards are checked against the state as it will be op by op, so a batch is all-or-nothing.
    const pending = new Map<string, StoreEntry | null>();
    const current = (table: string, key: string) => {
      const k = `${table}\u0000${key}`;
      return pending.has(k) ? (pending.get(k) ?? undefined) : this.tables.get(table, key);
    };
    const index = this.tables.index + 1;
    const changes: Change[] = [];
    for (const op of ops) {
      const existing = current(op.table, op.key);
      if (op.ifIndex !== undefined) {
        const ok = op.ifIndex === 0 ? existing === undefined : existing?.modifyIndex === op.ifIndex;
        if (!ok) throw conflict(`${op.table}/${op.key}: expected index ${op.ifIndex}, found ${existing?.modifyIndex ?? 'none'}`);
      }
      if (op.op === 'put') {
        const entry: StoreEntry = { key: op.key, value: freezeValue(op.value), createIndex: existing?.createIndex ?? index, modifyIndex: index };
        pending.set(`${op.table}\u0000${op.key}`, entry);
        changes.push({ index, table: op.table, key: op.key, op: 'put', entry });
      } else {
        pending.set(`${op.table}\u0000${op.key}`, null);
        changes.push({ index, table: op.table, key: op.key, op: 'delete' });
      }
    }
    this.append(index, changes);
    this.tables.apply(changes);
    return { index };
  }

  isLeader(): boolean {
    return true;
  }

  leader(): string | undefined {
    return this.opts.advertiseAddr;
  }

  /** One process owns a memory store: it leads from start to stop, so nothing ever changes. */
  onLeaderChange(): () => void {
    return () => {};
  }

  private append(index: number, changes: Change[]): void {
    if (this.logFd === undefined) return;
    const line: LogLine = {
      i: index,
      c: changes.map((ch) => ({ t: ch.table, k: ch.key, o: ch.op, v: ch.entry?.value, ci: ch.entry?.createIndex })),
    };
    try {
      // One write() per commit: once it returns the bytes are in the kernel, so kill -9 cannot lose them.
      writeSync(this.logFd, JSON.stringify(line) + '\n');
    } catch (err) {
      throw new IsthmusError(ErrorCodes.STORE_UNAVAILABLE, `cannot append to the change log: ${(err as Error).message}`, { cause: err });
    }
    this.appended++;
    if (this.appended >= (this.opts.compactEvery ?? 10_000)) {
      // The commit being written is applied after this; compact on the next tick so the snapshot includes it.
      this.appended = 0;
      queueMicrotask(() => this.compact());
    }
  }

  /** Writes the whole state as a snapshot (atomically, via rename) and starts an empty log. */
  compact(): void {
    const dir = this.opts.dataDir;
    if (!dir || this.logFd === undefined) return;
    const snap = { index: this.tables.index, tableIndexes: this.tables.tableIndexSnapshot(), tables: this.tables.snapshot() };
    const tmp = join(dir, `${SNAPSHOT_FILE}.tmp`);
    writeFileSync(tmp, JSON.stringify(snap));
    const fd = openSync(tmp, 'r+');
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, join(dir, SNAPSHOT_FILE));
    closeSync(this.logFd);
    // Lines at or below the snapshot's index are skipped on replay, so a crash between the
    // rename and this truncation loses nothing.
    writeFileSync(join(dir, LOG_FILE), '');
    this.logFd = openSync(join(dir, LOG_FILE), 'a');
  }

  private recover(dir: string): void {
    const snapPath = join(dir, SNAPSHOT_FILE);
    if (existsSync(snapPath)) {
      let snap: { index: number; tableIndexes: Record<string, number>; tables: Record<string, StoreEntry[]> };
      try {
        snap = JSON.parse(readFileSync(snapPath, 'utf8'));
      } catch (err) {
        throw new IsthmusError(ErrorCodes.STORE_CORRUPT, `snapshot ${snapPath} is unreadable: ${(err as Error).message}`, { cause: err });
      }
      this.tables.load(snap.index, snap.tables, snap.tableIndexes);
    }
    const logPath = join(dir, LOG_FILE);
    if (!existsSync(logPath)) return;
    const lines = readFileSync(logPath, 'utf8').split('\n');
    let validBytes = 0;
    for (let n = 0; n < lines.length; n++) {
      const text = lines[n];
      const isLast = n === lines.length - 1;
      if (text === '') {
        if (!isLast) validBytes += 1;
        continue;
      }
      let line: LogLine;
      try {
        line = JSON.parse(text);
      } catch (err) {
        // Only the very last line may be torn (a crash mid-write, never acknowledged).
        if (isLast || lines.slice(n + 1).every((l) => l === '')) break;
        throw new IsthmusError(ErrorCodes.STORE_CORRUPT, `change log ${logPath} line ${n + 1} is unreadable`, { cause: err });
      }
      validBytes += Buffer.byteLength(text) + 1;
      if (line.i <= this.tables.index) continue;
      const changes: Change[] = line.c.map((c) =>
        c.o === 'put'
          ? { index: line.i, table: c.t, key: c.k, op: 'put', entry: { key: c.k, value: c.v, createIndex: c.ci ?? line.i, modifyIndex: line.i } }
          : { index: line.i, table: c.t, key: c.k, op: 'delete' },
      );
      this.tables.apply(changes, false);
    }
    // Cut a torn tail so new lines start clean.
    const size = readFileSync(logPath).length;
    if (validBytes < size) {
      const fd = openSync(logPath, 'r+');
      try {
        ftruncateSync(fd, validBytes);
      } finally {
        closeSync(fd);
      }
    }
  }
}
