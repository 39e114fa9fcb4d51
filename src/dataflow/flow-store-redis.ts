// Flow records of one DC in a capped Redis Stream (`isthmus:{<dc>}:flows`), shared by every server
// of the DC. Small sorted-set indexes (per trace, per service, per verdict) hold stream IDs, so a
// query by trace or service reads only its own entries; a time range narrows by stream ID.
// Keys: <stream>, <stream>:id:<record id> (its stream ID), <stream>:trace:<id>, :svc:<name>,
// :verdict:<v>, :tmin and :late.
import { randomUUID } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import { ErrorCodes, IsthmusError, invalid } from '../core/errors.js';
import type { Component } from '../core/lifecycle.js';
import { redactUrl } from '../core/names.js';
import type { Logger } from '../telemetry/index.js';
import type { FlowRecord } from './flow-record.js';
import { IdRange, idMs, pad, unpad } from './flow-ids.js';
import {
  DEFAULT_FLOW_CAPACITY,
  LATE_MS,
  matchesNormal,
  normalizeFilter,
  type FlowFilter,
  type FlowListener,
  type FlowStore,
  type NormalFilter,
  type SubscribeOptions,
} from './flow-store.js';

export interface RedisFlowStoreOptions {
  dc: string;
  redisUrl: string;
  /** Key prefix (default "isthmus"); tests use their own. */
  keyPrefix?: string;
  /** Records kept; the oldest go first (default 100,000). */
  capacity?: number;
  logger?: Logger;
}

// Stream IDs are not arrival times here: each entry's ID is the largest startTime seen so far
// (ms, clamped), so every entry before the ID `since-0` started before `since` although records
// arrive out of order (a record is written when its connection ends). A second sorted set,
// `tmin`, keeps the suffix minima of startTime (score) by ID (member): every entry after the last
// member with score <= until started after `until`. A record starting more than LATE_MS before
// the newest start seen (a long connection) stays out of `tmin`, which it would hold back for
// everything before it, and goes to the `late` set instead. Members of all sorted sets are padded
// IDs, so that their byte order is the stream's order.
//
// The cap is kept by the script rather than by XADD MAXLEN: MAXLEN drops entries without saying
// which, and the per-trace and per-record keys of dropped entries would linger (a TTL long enough
// for a quiet DC piles up millions of them in a busy one). Here each evicted entry leaves its
// indexes as the memory ring's do, so no index key needs a TTL and none outlives its entries.
const APPEND = `
local S = ARGV[1]
local cap = tonumber(ARGV[2])
local writer = ARGV[3]
local lateMs = tonumber(ARGV[4])
local n = tonumber(ARGV[5])
local T = S .. ':tmin'
local L = S .. ':late'
local function pad(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return string.rep('0', 16 - #ms) .. ms .. '-' .. string.rep('0', 10 - #seq) .. seq
end
local function indexKeys(trace, src, dst, verdict)
  local keys = {S .. ':trace:' .. trace, S .. ':verdict:' .. verdict}
  if src ~= '' then keys[#keys + 1] = S .. ':svc:' .. src end
  if dst ~= '' and dst ~= src then keys[#keys + 1] = S .. ':svc:' .. dst end
  return keys
end
local lastMs = 0
local top = redis.call('XREVRANGE', S, '+', '-', 'COUNT', 1)
if #top > 0 then lastMs = tonumber(string.match(top[1][1], '^(%d+)-')) end
local out = {}
for i = 0, n - 1 do
  local b = 6 + i * 8
  local rid, trace, src, dst, verdict, ms, st, json = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], tonumber(ARGV[b + 5]), ARGV[b + 6], ARGV[b + 7]
  local idk = S .. ':id:' .. rid
  if redis.call('EXISTS', idk) == 1 then
    out[#out + 1] = ''
  else
    local late = lastMs > 0 and tonumber(st) < lastMs - lateMs
    if ms > lastMs then lastMs = ms end
    local sid = redis.call('XADD', S, string.format('%.0f', lastMs) .. '-*', 'r', json, 'w', writer, 'i', rid, 't', trace, 's', src, 'd', dst, 'v', verdict)
    redis.call('SET', idk, sid)
    local m = pad(sid)
    for _, k in ipairs(indexKeys(trace, src, dst, verdict)) do redis.call('ZADD', k, 0, m) end
    if late then
      redis.call('ZADD', L, 0, m)
    else
      redis.call('ZREMRANGEBYSCORE', T, st, '+inf')
      redis.call('ZADD', T, st, m)
    end
    out[#out + 1] = sid
  end
end
local over = redis.call('XLEN', S) - cap
if over > 0 then
  for _, e in ipairs(redis.call('XRANGE', S, '-', '+', 'COUNT', over)) do
    local f = {}
    for j = 1, #e[2], 2 do f[e[2][j]] = e[2][j + 1] end
    local m = pad(e[1])
    if f.i then redis.call('DEL', S .. ':id:' .. f.i) end
    if f.t then
      for _, k in ipairs(indexKeys(f.t, f.s or '', f.d or '', f.v or '')) do redis.call('ZREM', k, m) end
    end
    redis.call('ZREM', T, m)
    redis.call('ZREM', L, m)
  end
  redis.call('XTRIM', S, 'MAXLEN', cap)
end
return out
`;

interface Cmds extends Redis {
  isthmusFlowAppend(...args: (string | number)[]): Promise<string[]>;
}

type StreamEntry = [id: string, fields: string[]];

const CHUNK = 500;
// Stream IDs hold 64-bit ms; startTimes beyond this are clamped (order is kept: the clamp is monotone).
const DROP_LOG_MS = 10_000;

export class RedisFlowStore implements FlowStore, Component {
  readonly name = 'flows-redis';
  /** The stream key: `isthmus:{<dc>}:flows`. */
  readonly streamKey: string;
  /** Records looked at by queries so far (how tests check that a query did not scan the stream). */
  visited = 0;
  /** Records that could not be stored (Redis unreachable, store stopped). */
  dropped = 0;

  readonly capacity: number;
  private readonly me = randomUUID();
  private cmd: Cmds | undefined;
  private running = false;
  private readonly pending = new Set<Promise<void>>();
  private readonly listeners = new Map<FlowListener, boolean>();
  private reader: Redis | undefined;
  private readLoop: Promise<void> | undefined;
  private lastDropLog = 0;
  private droppedSinceLog = 0;

  constructor(private readonly opts: RedisFlowStoreOptions) {
    const capacity = opts.capacity ?? DEFAULT_FLOW_CAPACITY;
    if (!Number.isInteger(capacity) || capacity < 1) throw invalid([{ Field: 'capacity', Message: 'must be a positive integer' }]);
    this.capacity = capacity;
    // The hash tag keeps every key of one DC in one Redis Cluster slot, as the script needs.
    this.streamKey = `${opts.keyPrefix ?? 'isthmus'}:{${opts.dc}}:flows`;
  }

  async start(): Promise<void> {
    const cmd = new Redis(this.opts.redisUrl, { ...this.connectionOptions(), commandTimeout: 2000 }) as Cmds;
    cmd.on('error', () => {});
    cmd.defineCommand('isthmusFlowAppend', { numberOfKeys: 0, lua: APPEND });
    try {
      await cmd.connect();
    } catch (err) {
      cmd.disconnect();
      throw new IsthmusError(ErrorCodes.STORE_UNAVAILABLE, `flow store cannot reach Redis at ${redactUrl(this.opts.redisUrl)}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    this.cmd = cmd;
    this.running = true;
    this.syncReader();
  }

  async stop(): Promise<void> {
    this.running = false;
    // What the data plane already handed over still goes out.
    await Promise.allSettled([...this.pending]);
    this.listeners.clear();
    this.syncReader();
    await this.readLoop;
    this.cmd?.disconnect();
    this.cmd = undefined;
  }

  append(records: readonly FlowRecord[]): Promise<void> {
    const writes: Promise<void>[] = [];
    for (let i = 0; i < records.length; i += CHUNK) {
      const p = this.write(records.slice(i, i + CHUNK));
      this.pending.add(p);
      void p.finally(() => this.pending.delete(p));
      writes.push(p);
    }
    return Promise.all(writes).then(() => undefined);
  }

  async query(filter: FlowFilter): Promise<FlowRecord[]> {
    const f = normalizeFilter(filter);
    if (f.limit === 0) return [];
    const cmd = this.cmd;
    if (!this.running || !cmd) throw new IsthmusError(ErrorCodes.STORE_UNAVAILABLE, 'flow store is not started');
    try {
      return await this.run(cmd, f);
    } catch (err) {
      if (err instanceof IsthmusError) throw err;
      throw new IsthmusError(ErrorCodes.STORE_UNAVAILABLE, `flow query failed: Redis is unavailable: ${(err as Error).message}`, { cause: err });
    }
  }

  subscribe(listener: FlowListener, opts: SubscribeOptions = {}): () => void {
    const own: FlowListener = (r) => listener(r);
    this.listeners.set(own, opts.localOnly === true);
    this.syncReader();
    return () => {
      this.listeners.delete(own);
      this.syncReader();
    };
  }

  private async write(records: FlowRecord[]): Promise<void> {
    const cmd = this.cmd;
    if (!this.running || !cmd) return this.drop(records.length, 'flow store is not started');
    const args: (string | number)[] = [this.streamKey, this.capacity, this.me, LATE_MS, records.length];
    for (const r of records) {
      args.push(r.id, r.traceId, r.source.service, r.destination.service, r.verdict, idMs(r.startTime), String(r.startTime), JSON.stringify(r));
    }
    let ids: string[];
    try {
      ids = await cmd.isthmusFlowAppend(...args);
    } catch (err) {
      return this.drop(records.length, (err as Error).message);
    }
    for (const [i, r] of records.entries()) if (ids[i]) this.deliver(r, true);
  }

  private drop(n: number, why: string): void {
    this.dropped += n;
    this.droppedSinceLog += n;
    const now = Date.now();
    if (now - this.lastDropLog < DROP_LOG_MS) return;
    this.opts.logger?.warn('flow records dropped', { count: this.droppedSinceLog, error: why });
    this.lastDropLog = now;
    this.droppedSinceLog = 0;
  }

  private deliver(r: FlowRecord, local: boolean): void {
    for (const [listener, localOnly] of this.listeners) {
      if (localOnly && !local) continue;
      try {
        listener(r);
      } catch (err) {
        this.opts.logger?.warn('flow subscriber failed', { error: (err as Error).message });
      }
    }
  }

  private async run(cmd: Cmds, f: NormalFilter): Promise<FlowRecord[]> {
    const S = this.streamKey;
    const range = new IdRange();
    if (f.since !== undefined) range.above(pad(`${idMs(f.since)}-0`), false);

    const look = cmd.pipeline();
    if (f.after !== undefined) look.get(`${S}:id:${f.after}`);
    if (f.before !== undefined) look.get(`${S}:id:${f.before}`);
    if (f.until !== undefined) look.zrevrangebyscore(`${S}:tmin`, f.until, '-inf', 'LIMIT', 0, 1);
    const found = (await look.exec())!.map(([err, v]) => {
      if (err) throw err;
      return v;
    });
    if (f.after !== undefined) {
      const sid = found.shift() as string | null;
      if (sid) range.above(pad(sid), true);
    }
    if (f.before !== undefined) {
      const sid = found.shift() as string | null;
      if (!sid) return [];
      range.below(pad(sid), true);
    }
    if (range.empty()) return [];

    // With `until`, on-time entries past the last suffix minimum <= until all started too late;
    // late ones are looked up apart.
    const main = range.clone();
    let late: IdRange | undefined;
    if (f.until !== undefined) {
      const last = (found.shift() as string[])[0];
      late = range.clone();
      if (last === undefined) main.none();
      else {
        main.below(last, false);
        late.above(last, true);
      }
    }
    const ascending = f.after !== undefined;
    const segments: [IdRange, () => Promise<string | undefined>][] = [[main, () => this.pickIndex(cmd, f, main)]];
    if (late && !late.empty()) segments[ascending ? 'push' : 'unshift']([late, async () => `${S}:late`]);
    const out: FlowRecord[] = [];
    for (const [seg, source] of segments) {
      if (seg.empty()) continue;
      const index = await source();
      if (index === '') continue;
      if (!(await this.scan(cmd, index, seg, ascending, f, out))) break;
    }
    return out;
  }

  /** Reads the entries of `index` (or the stream) in the range; false once the limit is reached. */
  private async scan(cmd: Cmds, index: string | undefined, range: IdRange, ascending: boolean, f: NormalFilter, out: FlowRecord[]): Promise<boolean> {
    const S = this.streamKey;
    const batch = Math.min(1000, Math.max(50, f.limit));
    for (;;) {
      let entries: StreamEntry[];
      let fetched: number;
      if (index === undefined) {
        entries = ascending ? await cmd.xrange(S, range.xLo(), range.xHi(), 'COUNT', batch) : await cmd.xrevrange(S, range.xHi(), range.xLo(), 'COUNT', batch);
        fetched = entries.length;
        if (entries.length) this.advance(range, pad(entries[entries.length - 1][0]), ascending);
      } else {
        const members = (
          ascending
            ? await cmd.call('ZRANGE', index, range.zLo(), range.zHi(), 'BYLEX', 'LIMIT', 0, batch)
            : await cmd.call('ZRANGE', index, range.zHi(), range.zLo(), 'BYLEX', 'REV', 'LIMIT', 0, batch)
        ) as string[];
        fetched = members.length;
        if (!members.length) return true;
        this.advance(range, members[members.length - 1], ascending);
        const p = cmd.pipeline();
        for (const m of members) {
          const id = unpad(m);
          p.xrange(S, id, id);
        }
        // An index may still name entries the stream's cap has trimmed: those come back empty.
        entries = (await p.exec())!.flatMap(([err, v]) => (err ? [] : (v as StreamEntry[])));
      }
      for (const [, fields] of entries) {
        const r = parseEntry(fields);
        if (!r) continue;
        this.visited++;
        if (matchesNormal(r, f)) {
          out.push(r);
          if (out.length === f.limit) return false;
        }
      }
      if (fetched < batch || range.empty()) return true;
    }
  }

  /**
   * The smallest index covering every match in the range: `undefined` to read the stream itself,
   * '' when an index shows that nothing can match.
   */
  private async pickIndex(cmd: Cmds, f: NormalFilter, range: IdRange): Promise<string | undefined> {
    const S = this.streamKey;
    if (f.traceId !== undefined) return `${S}:trace:${f.traceId}`;
    const keys: string[] = [];
    for (const s of [f.service, f.source, f.destination]) if (s !== undefined) keys.push(`${S}:svc:${s}`);
    if (f.verdict !== undefined) keys.push(`${S}:verdict:${f.verdict}`);
    if (!keys.length) return undefined;
    const p = cmd.pipeline();
    for (const k of keys) p.zlexcount(k, range.zLo(), range.zHi());
    const counts = (await p.exec())!.map(([err, v]) => {
      if (err) throw err;
      return Number(v);
    });
    let best = 0;
    for (let i = 1; i < keys.length; i++) if (counts[i] < counts[best]) best = i;
    return counts[best] === 0 ? '' : keys[best];
  }

  private advance(range: IdRange, lastPadded: string, ascending: boolean): void {
    if (ascending) range.above(lastPadded, true);
    else range.below(lastPadded, true);
  }

  /** Runs the stream reader while someone wants records appended by other servers. */
  private syncReader(): void {
    const wanted = this.running && [...this.listeners.values()].some((localOnly) => !localOnly);
    if (wanted && !this.reader) {
      const reader = new Redis(this.opts.redisUrl, this.connectionOptions());
      reader.on('error', () => {});
      this.reader = reader;
      this.readLoop = this.readPeers(reader);
    } else if (!wanted && this.reader) {
      const reader = this.reader;
      this.reader = undefined;
      reader.disconnect();
    }
  }

  private async readPeers(reader: Redis): Promise<void> {
    let last: string | undefined;
    while (this.reader === reader) {
      try {
        if (reader.status === 'wait') await reader.connect();
        if (last === undefined) {
          const top = await reader.xrevrange(this.streamKey, '+', '-', 'COUNT', 1);
          last = top.length ? top[0][0] : '0-0';
        }
        const res = (await reader.xread('COUNT', CHUNK, 'BLOCK', 1000, 'STREAMS', this.streamKey, last)) as [string, StreamEntry[]][] | null;
        if (!res) continue;
        for (const [id, fields] of res[0][1]) {
          last = id;
          if (field(fields, 'w') === this.me) continue;
          const r = parseEntry(fields);
          if (r) this.deliver(r, false);
        }
      } catch {
        if (this.reader !== reader) return;
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
  }

  private connectionOptions(): RedisOptions {
    return {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 2000,
      retryStrategy: (n: number) => Math.min(100 * n, 2000),
    };
  }
}

function field(fields: string[], name: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}

function parseEntry(fields: string[]): FlowRecord | undefined {
  const json = field(fields, 'r');
  if (json === undefined) return undefined;
  try {
    return JSON.parse(json) as FlowRecord;
  } catch {
    return undefined;
  }
}
