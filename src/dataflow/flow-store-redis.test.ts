import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import type { FlowRecord } from './flow-record.js';
import { runFlowStoreSuite } from './flow-store.case.test.js';
import { RedisFlowStore } from './flow-store-redis.js';
import { flowRecord, traceId } from './testing/records.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const admin = new Redis(REDIS_URL);
const prefixes: string[] = [];

afterAll(async () => {
  for (const p of prefixes) {
    const keys = await admin.keys(`${p}:*`);
    if (keys.length) await admin.del(...keys);
  }
  admin.disconnect();
});

/** Stores of one DC on one Redis under a fresh key prefix: what several servers of a DC share. */
async function stores(n: number, opts: { capacity?: number } = {}) {
  const keyPrefix = `test-flows-${randomUUID().slice(0, 8)}`;
  prefixes.push(keyPrefix);
  const list = Array.from({ length: n }, () => new RedisFlowStore({ dc: 'dc1', redisUrl: REDIS_URL, keyPrefix, ...opts }));
  for (const s of list) await s.start();
  return {
    list,
    keyPrefix,
    cleanup: async () => {
      for (const s of list) await s.stop();
    },
  };
}

runFlowStoreSuite('redis', {
  async make(opts) {
    const { list, cleanup } = await stores(1, { capacity: opts?.capacity ?? 10_000 });
    return { store: list[0], visited: () => list[0].visited, cleanup };
  },
});

const until = async (cond: () => boolean, what: string) => {
  const end = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('RedisFlowStore', () => {
  it('keeps one stream per DC under a hash tag, and leaves no key behind an evicted record', async () => {
    const { list, keyPrefix, cleanup } = await stores(1, { capacity: 10 });
    try {
      const s = list[0];
      expect(s.streamKey).toBe(`${keyPrefix}:{dc1}:flows`);
      for (let i = 0; i < 60; i++) {
        await s.append([
          flowRecord({
            traceId: traceId(i),
            from: `s${i % 3}`,
            to: 'api',
            verdict: i % 2 ? 'allowed' : 'denied',
            startTime: 1_700_000_000_000 + (i % 4 === 0 ? -3_600_000 : i),
          }),
        ]);
      }
      expect(await admin.xlen(s.streamKey)).toBe(10);
      const keys = (await admin.keys(`${keyPrefix}:*`)).map((k) => k.slice(s.streamKey.length)).sort();
      const traces = keys.filter((k) => k.startsWith(':trace:'));
      const idKeys = keys.filter((k) => k.startsWith(':id:'));
      expect(traces).toHaveLength(10);
      expect(idKeys).toHaveLength(10);
      expect(keys.filter((k) => !k.startsWith(':trace:') && !k.startsWith(':id:'))).toEqual([
        '',
        ':late',
        ':svc:api',
        ':svc:s0',
        ':svc:s1',
        ':svc:s2',
        ':tmin',
        ':verdict:allowed',
        ':verdict:denied',
      ]);
      let indexed = 0;
      for (const k of [':svc:api', ':verdict:allowed', ':verdict:denied']) indexed += await admin.zcard(s.streamKey + k);
      expect(indexed).toBe(20);
      expect((await admin.zcard(`${s.streamKey}:late`)) + (await admin.zcard(`${s.streamKey}:tmin`))).toBeLessThanOrEqual(10);
    } finally {
      await cleanup();
    }
  });

  it('tells subscribers what other servers of the DC stored, and metrics-style subscribers only their own', async () => {
    const { list, cleanup } = await stores(2);
    try {
      const [a, b] = list;
      const all: string[] = [];
      const own: string[] = [];
      const stopAll = b.subscribe((r) => all.push(r.id));
      b.subscribe((r) => own.push(r.id), { localOnly: true });
      // Give b's reader its starting point before anything is written.
      await new Promise((r) => setTimeout(r, 100));
      await a.append([flowRecord({ id: 'from-a' })]);
      await b.append([flowRecord({ id: 'from-b' })]);
      await until(() => all.length === 2, 'both records');
      expect(all.sort()).toEqual(['from-a', 'from-b']);
      expect(own).toEqual(['from-b']);
      // Both servers answer for the whole DC.
      expect((await a.query({})).map((r) => r.id)).toEqual(['from-b', 'from-a']);
      stopAll();
      await a.append([flowRecord({ id: 'later' })]);
      await new Promise((r) => setTimeout(r, 100));
      expect(all).toHaveLength(2);
    } finally {
      await cleanup();
    }
  });

  it('drops and counts what it cannot store instead of failing the caller, and says why a query fails', async () => {
    const s = new RedisFlowStore({ dc: 'dc1', redisUrl: REDIS_URL, keyPrefix: 'test-flows-unused' });
    await expect(s.append([flowRecord()])).resolves.toBeUndefined();
    expect(s.dropped).toBe(1);
    await expect(s.query({})).rejects.toMatchObject({ code: 'ISTHMUS_ERR_STORE_UNAVAILABLE' });
    const dead = new RedisFlowStore({ dc: 'dc1', redisUrl: 'redis://127.0.0.1:1' });
    await expect(dead.start()).rejects.toMatchObject({ code: 'ISTHMUS_ERR_STORE_UNAVAILABLE' });
    expect(() => new RedisFlowStore({ dc: 'dc1', redisUrl: REDIS_URL, capacity: 0 })).toThrow(expect.objectContaining({ code: 'ISTHMUS_ERR_INVALID' }));
  });

  it('writes what was handed over before it stops', async () => {
    const { list, cleanup } = await stores(2);
    const [a, b] = list;
    try {
      const rs: FlowRecord[] = Array.from({ length: 1200 }, () => flowRecord());
      void a.append(rs);
      await a.stop();
      expect(a.dropped).toBe(0);
      expect(await b.query({ limit: 2000 })).toHaveLength(1200);
    } finally {
      await cleanup();
    }
  });
});
