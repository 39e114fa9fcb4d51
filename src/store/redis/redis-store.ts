// The Redis backend: several control-plane replicas of one DC share one Redis. A commit is one Lua
// script (guards, index, tables, change stream); every replica follows the stream into its own
// in-memory view, and reloads a full snapshot when the stream no longer holds what it needs.
import { randomUUID } from 'node:crypto';
import { Redis, ReplyError } from 'ioredis';
import { conflict, ErrorCodes, IsthmusError } from '../../core/errors.js';
import { redactUrl } from '../../core/names.js';
import type { Change, CommitResult, RedisStoreOptions, Store, StoreEntry, StoreOp } from '../store.js';
import { Tables, TablesView, checkOps } from '../memory/index.js';

// Entries are stored as "<createIndex>|<modifyIndex>|<json>" so Lua never decodes (and so never
// reshapes) a value: cjson would turn [] into {}.
const COMMIT = `
local P = ARGV[1]
local maxlen = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
for i = 0, n - 1 do
  local b = 4 + i * 5
  local tbl, key, guard = ARGV[b], ARGV[b + 1], ARGV[b + 3]
  if guard ~= '' then
    local cur = redis.call('HGET', P .. ':t:' .. tbl, key)
    if guard == '0' then
      if cur then return {'conflict', tbl .. '/' .. key .. ': exists already'} end
    else
      if not cur then return {'conflict', tbl .. '/' .. key .. ': expected index ' .. guard .. ', found none'} end
      local mi = string.match(cur, '^%d+|(%d+)|')
      if mi ~= guard then return {'conflict', tbl .. '/' .. key .. ': expected index ' .. guard .. ', found ' .. mi} end
    end
  end
end
local index = redis.call('INCR', P .. ':index')
local parts = {}
for i = 0, n - 1 do
  local b = 4 + i * 5
  local tbl, key, op, value = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 4]
  local h = P .. ':t:' .. tbl
  if op == 'put' then
    local cur = redis.call('HGET', h, key)
    local ci = index
    if cur then ci = tonumber(string.match(cur, '^(%d+)|')) end
    redis.call('HSET', h, key, ci .. '|' .. index .. '|' .. value)
    table.insert(parts, '{"o":"put","t":' .. cjson.encode(tbl) .. ',"k":' .. cjson.encode(key) .. ',"ci":' .. ci .. ',"v":' .. value .. '}')
  else
    redis.call('HDEL', h, key)
    table.insert(parts, '{"o":"delete","t":' .. cjson.encode(tbl) .. ',"k":' .. cjson.encode(key) .. '}')
  end
  redis.call('SADD', P .. ':tables', tbl)
  redis.call('HSET', P .. ':tidx', tbl, index)
end
redis.call('XADD', P .. ':changes', 'MAXLEN', '~', maxlen, index .. '-0', 'c', '[' .. table.concat(parts, ',') .. ']')
return {'ok', index}
`;

// Everything in one atomic read: index, table indexes, then each table's name and entries.
const SNAPSHOT = `
local P = ARGV[1]
local out = {redis.call('GET', P .. ':index') or '0', redis.call('HGETALL', P .. ':tidx')}
for _, t in ipairs(redis.call('SMEMBERS', P .. ':tables')) do
  table.insert(out, t)
  table.insert(out, redis.call('HGETALL', P .. ':t:' .. t))
end
return out
`;

const RENEW = `
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return cur end
if not cur then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return ARGV[1] end
return cur
`;

const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

type WireChange = { o: 'put' | 'delete'; t: string; k: string; ci?: number; v?: unknown };

interface Cmds extends Redis {
  isthmusCommit(...args: (string | number)[]): Promise<[string, string | number]>;
  isthmusSnapshot(prefix: string): Promise<unknown[]>;
  isthmusRenew(key: string, me: string, ttl: number): Promise<string>;
  isthmusRelease(key: string, me: string): Promise<number>;
}

function parseEntry(key: string, raw: string): StoreEntry {
  const a = raw.indexOf('|');
  const b = raw.indexOf('|', a + 1);
  return { key, createIndex: Number(raw.slice(0, a)), modifyIndex: Number(raw.slice(a + 1, b)), value: JSON.parse(raw.slice(b + 1)) };
}

// A leader killed without releasing its lease is replaced within LEASE_MS plus one renewal; a
// replica that cannot renew steps down on its own before its lease could have passed to another.
const LEASE_MS = 5_000;

export class RedisStore extends TablesView implements Store {
  readonly name = 'store-redis';
  readonly backend = 'redis' as const;
  readonly dc: string;
  private readonly prefix: string;
  protected readonly tables: Tables;
  private cmd!: Cmds;
  private reader!: Redis;
  private running = false;
  private readLoop: Promise<void> | undefined;
  private readonly waiters = new Map<number, (() => void)[]>();
  private readonly me: string;
  private leaderValue: string | undefined;
  /** Until when this replica's own lease is known to hold (the send time of the last renewal plus the lease). */
  private leaseUntil = 0;
  private wasLeader = false;
  private readonly leaderListeners = new Set<(leader: boolean) => void>();
  private leaseTimer: NodeJS.Timeout | undefined;
  private paused = false;
  /** Snapshot reloads (a replica that fell behind the stream cap, or a Redis that lost its data). */
  reloads = 0;

  constructor(private readonly opts: RedisStoreOptions) {
    super();
    this.dc = opts.dc;
    // The hash tag keeps every key of one DC in one Redis Cluster slot, as the Lua scripts need.
    this.prefix = `${opts.keyPrefix ?? 'isthmus'}:{${opts.dc}}`;
    this.tables = new Tables(opts.retainChanges ?? 10_000);
    this.me = `${opts.advertiseAddr}|${randomUUID()}`;
  }

  async start(): Promise<void> {
    const common = {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 2000,
      retryStrategy: (n: number) => Math.min(100 * n, 2000),
    };
    // A commit is not idempotent (it takes a new index): one that went unanswered is never sent again
    // behind the caller's back after a reconnect; the caller hears that its outcome is unknown.
    this.cmd = new Redis(this.opts.redisUrl, { ...common, commandTimeout: 2000, autoResendUnfulfilledCommands: false }) as Cmds;
    this.reader = new Redis(this.opts.redisUrl, { ...common });
    for (const c of [this.cmd, this.reader]) c.on('error', () => {});
    this.cmd.defineCommand('isthmusCommit', { numberOfKeys: 0, lua: COMMIT });
    this.cmd.defineCommand('isthmusSnapshot', { numberOfKeys: 0, lua: SNAPSHOT });
    this.cmd.defineCommand('isthmusRenew', { numberOfKeys: 1, lua: RENEW });
    this.cmd.defineCommand('isthmusRelease', { numberOfKeys: 1, lua: RELEASE });
    try {
      await this.cmd.connect();
      await this.reader.connect();
      await this.reload();
    } catch (err) {
      this.cmd.disconnect();
      this.reader.disconnect();
      throw new IsthmusError(ErrorCodes.STORE_UNAVAILABLE, `cannot reach Redis at ${redactUrl(this.opts.redisUrl)}: ${(err as Error).message}`, { cause: err });
    }
    this.running = true;
    this.readLoop = this.follow();
    // Back from a Redis outage: take the lease again now rather than at the next renewal tick.
    this.cmd.on('ready', () => {
      if (this.running) void this.renewLease();
    });
    await this.renewLease();
    this.leaseTimer = setInterval(() => {
      // A renewal still unanswered must not stretch the lease: its end alone makes this replica step down.
      this.noticeLeadership();
      void this.renewLease();
    }, this.leaseMs / 5);
    this.leaseTimer.unref();
  }

  async stop(): Promise<void> {
    this.running = false;
    clearInterval(this.leaseTimer);
    try {
      await this.cmd.isthmusRelease(`${this.prefix}:leader`, this.me);
    } catch {
      // The lease expires by itself.
    }
    this.leaderValue = undefined;
    this.leaseUntil = 0;
    this.leaderListeners.clear();
    this.reader.disconnect();
    await this.readLoop?.catch(() => {});
    this.tables.wakeAll();
    for (const [, list] of this.waiters) list.forEach((w) => w());
    this.waiters.clear();
    this.cmd.disconnect();
  }

  isLeader(): boolean {
    return this.leaderValue === this.me && Date.now() < this.leaseUntil;
  }

  onLeaderChange(listener: (leader: boolean) => void): () => void {
    this.leaderListeners.add(listener);
    return () => this.leaderListeners.delete(listener);
  }

  private get leaseMs(): number {
    return this.opts.leaseMs ?? LEASE_MS;
  }
  leader(): string | undefined {
    return this.leaderValue?.split('|')[0];
  }

  async commit(ops: StoreOp[]): Promise<CommitResult> {
    if (!this.running) throw new IsthmusError(ErrorCodes.STORE_UNAVAILABLE, 'store is not started');
    checkOps(ops);
    const args: (string | number)[] = [this.prefix, this.opts.streamMaxLen ?? 100_000, ops.length];
    for (const op of ops)
      args.push(op.table, op.key, op.op, op.ifIndex === undefined ? '' : String(op.ifIndex), op.op === 'put' ? JSON.stringify(op.value) : '');
    // Not connected: the commit is refused before anything is sent.
    if (this.cmd.status !== 'ready') {
      throw new IsthmusError(
        ErrorCodes.STORE_UNAVAILABLE,
        `Redis at ${redactUrl(this.opts.redisUrl)} is unreachable (connection ${this.cmd.status}); nothing was written`,
      );
    }
    let res: [string, string | number];
    try {
      res = await this.cmd.isthmusCommit(...args);
    } catch (err) {
      // Refusals Redis answers before running any script (out of memory, a replica, still loading...).
      if (
        err instanceof ReplyError &&
        /^(OOM|READONLY|LOADING|MASTERDOWN|BUSY|NOAUTH|NOPERM|WRONGPASS|MISCONF|CLUSTERDOWN|TRYAGAIN|MOVED|ASK)\b/.test((err as Error).message)
      ) {
        throw new IsthmusError(ErrorCodes.STORE_UNAVAILABLE, `Redis refused the write; nothing was written: ${(err as Error).message}`, { cause: err });
      }
      // Otherwise it was sent and no clear answer came back (Redis died or hung mid-command): the
      // outcome is unknown, and only a read can tell.
      throw new IsthmusError(
        ErrorCodes.STORE_UNAVAILABLE,
        `Redis did not answer the write (${(err as Error).message}); it was applied whole or not at all: read it back before retrying`,
        { cause: err },
      );
    }
    if (res[0] === 'conflict') throw conflict(String(res[1]));
    const index = Number(res[1]);
    await this.applied(index);
    return { index };
  }

  /** Resolves once this replica's view has applied `index` (read-your-writes). */
  private applied(index: number): Promise<void> {
    if (this.tables.index >= index) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new IsthmusError(ErrorCodes.STORE_UNAVAILABLE, `write ${index} was stored but this server has not seen it back from Redis yet`)),
        10_000,
      );
      const list = this.waiters.get(index) ?? [];
      list.push(() => {
        clearTimeout(timer);
        resolve();
      });
      this.waiters.set(index, list);
    });
  }

  private release(): void {
    for (const [idx, list] of this.waiters) {
      if (idx <= this.tables.index) {
        this.waiters.delete(idx);
        list.forEach((w) => w());
      }
    }
  }

  private async reload(): Promise<void> {
    const raw = (await this.cmd.isthmusSnapshot(this.prefix)) as [string, string[], ...unknown[]];
    const index = Number(raw[0]);
    const tidx: Record<string, number> = {};
    for (let i = 0; i < raw[1].length; i += 2) tidx[raw[1][i]] = Number(raw[1][i + 1]);
    const tables: Record<string, StoreEntry[]> = {};
    for (let i = 2; i < raw.length; i += 2) {
      const name = raw[i] as string;
      const flat = raw[i + 1] as string[];
      const entries: StoreEntry[] = [];
      for (let j = 0; j < flat.length; j += 2) entries.push(parseEntry(flat[j], flat[j + 1]));
      tables[name] = entries;
    }
    const before = this.tables.index;
    this.tables.load(index, tables, tidx);
    this.reloads++;
    // Everyone watching learns that state may have moved (a snapshot is never a silent skip).
    if (this.running || before > 0) this.tables.wakeAll();
    this.release();
  }

  /** Holds the follower back (fault tests: a replica that falls behind the stream cap). */
  pauseFollowing(paused: boolean): void {
    this.paused = paused;
  }

  private async follow(): Promise<void> {
    while (this.running) {
      if (this.paused) {
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      try {
        const res = (await this.reader.xread('BLOCK', 5000, 'STREAMS', `${this.prefix}:changes`, `${this.tables.index}-0`)) as
          [string, [string, string[]][]][] | null;
        if (!res) {
          // Nothing new; but if Redis lost its data (restart without persistence), our index is ahead of it.
          const remote = Number((await this.cmd.get(`${this.prefix}:index`)) ?? '0');
          if (remote < this.tables.index) await this.reload();
          continue;
        }
        for (const [id, fields] of res[0][1]) {
          const index = Number(id.split('-')[0]);
          if (index !== this.tables.index + 1) {
            await this.reload();
            break;
          }
          const wire = JSON.parse(fields[1]) as WireChange[];
          const changes: Change[] = wire.map((w) =>
            w.o === 'put'
              ? { index, table: w.t, key: w.k, op: 'put', entry: { key: w.k, value: w.v, createIndex: w.ci ?? index, modifyIndex: index } }
              : { index, table: w.t, key: w.k, op: 'delete' },
          );
          this.tables.apply(changes);
        }
        this.release();
      } catch {
        if (!this.running) return;
        await new Promise((r) => setTimeout(r, 500));
        // After a connection loss we cannot know what we missed: resync.
        try {
          await this.reload();
        } catch {
          // Still down; try again.
        }
      }
    }
  }

  private async renewLease(): Promise<void> {
    const sentAt = Date.now();
    try {
      this.leaderValue = await this.cmd.isthmusRenew(`${this.prefix}:leader`, this.me, this.leaseMs);
      if (this.leaderValue === this.me) this.leaseUntil = sentAt + this.leaseMs;
    } catch {
      // Without Redis no one can be sure of leadership: step down.
      if (this.leaderValue === this.me) this.leaderValue = undefined;
    }
    this.noticeLeadership();
  }

  private noticeLeadership(): void {
    if (!this.running) return;
    const leader = this.isLeader();
    if (leader === this.wasLeader) return;
    this.wasLeader = leader;
    for (const l of [...this.leaderListeners]) l(leader);
  }
}
