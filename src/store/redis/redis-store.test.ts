import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { runStoreSuite } from '../store.case.test.js';
import { RedisStore } from './redis-store.js';

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

async function pair(opts: { retainChanges?: number; streamMaxLen?: number } = {}) {
  const keyPrefix = `test-${randomUUID().slice(0, 8)}`;
  prefixes.push(keyPrefix);
  const make = (addr: string) => new RedisStore({ dc: 'dc1', advertiseAddr: addr, redisUrl: REDIS_URL, keyPrefix, ...opts });
  const a = make('a:1');
  const b = make('b:1');
  await a.start();
  await b.start();
  return {
    a,
    b,
    keyPrefix,
    cleanup: async () => {
      await a.stop();
      await b.stop();
    },
  };
}

runStoreSuite('redis', { make: (opts) => pair(opts) });

describe('RedisStore', () => {
  it('reloads a snapshot when it fell behind the capped stream, and never skips silently', async () => {
    const { a, b, cleanup } = await pair({ streamMaxLen: 10 });
    try {
      // Hold b's follower back while a writes far past the cap, then let it resync.
      await a.commit([{ op: 'put', table: 't', key: 'first', value: 0 }]);
      while (b.index() < a.index()) await new Promise((r) => setTimeout(r, 10));
      b.pauseFollowing(true);
      await new Promise((r) => setTimeout(r, 5100));
      const reloads = b.reloads;
      for (let i = 0; i < 300; i++) await a.commit([{ op: 'put', table: 't', key: `k${i}`, value: i }]);
      b.pauseFollowing(false);
      const until = Date.now() + 5000;
      while (b.index() < a.index() && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      expect(b.list('t')).toHaveLength(301);
      expect(b.reloads).toBe(reloads + 1);
    } finally {
      await cleanup();
    }
  });

  it('moves leadership when the leader stops', async () => {
    const { a, b, cleanup } = await pair();
    try {
      const leader = a.isLeader() ? a : b;
      const other = leader === a ? b : a;
      expect(leader.isLeader()).toBe(true);
      expect(other.isLeader()).toBe(false);
      expect(other.leader()).toBe(leader.leader());
      const told: boolean[] = [];
      other.onLeaderChange((l) => told.push(l));
      const stoppedAt = Date.now();
      await leader.stop();
      const until = Date.now() + 8000;
      while (!other.isLeader() && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
      expect(other.isLeader()).toBe(true);
      // A released lease passes at the other's next renewal (a fifth of the 5 s lease).
      expect(Date.now() - stoppedAt).toBeLessThan(2500);
      expect(told).toEqual([true]);
    } finally {
      await cleanup().catch(() => {});
    }
  });

  it('fails to start, and names Redis, when it cannot be reached', async () => {
    const s = new RedisStore({ dc: 'dc1', advertiseAddr: 'x', redisUrl: 'redis://127.0.0.1:1' });
    await expect(s.start()).rejects.toMatchObject({ code: 'ISTHMUS_ERR_STORE_UNAVAILABLE' });
  });
});
