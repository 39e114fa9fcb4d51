// The one suite both FlowStore backends pass (run from flow-store-memory.test.ts and
// flow-store-redis.test.ts with their own factory). Query cost is checked by records visited.
import { afterEach, describe, expect, it } from 'vitest';
import type { FlowRecord } from './flow-record.js';
import type { FlowStore } from './flow-store.js';
import { flowRecord, identity, traceId } from './testing/records.js';

export interface FlowStoreFactory {
  make(opts?: { capacity?: number }): Promise<{ store: FlowStore; visited(): number; cleanup(): Promise<void> }>;
}

const BASE = 1_700_000_000_000;

export function runFlowStoreSuite(name: string, factory: FlowStoreFactory): void {
  describe(`FlowStore conformance: ${name}`, () => {
    const cleanups: (() => Promise<void>)[] = [];
    afterEach(async () => {
      while (cleanups.length) await cleanups.pop()!();
    });
    const make = async (opts?: { capacity?: number }) => {
      const s = await factory.make(opts);
      cleanups.push(s.cleanup);
      return s;
    };
    /** How many records `fn`'s queries looked at. */
    const cost = async (visited: () => number, fn: () => Promise<unknown>) => {
      const before = visited();
      await fn();
      return visited() - before;
    };
    const ids = (rs: FlowRecord[]) => rs.map((r) => r.id);

    it('filters by service on either side, source, destination, dc, verdict and hop, newest first', async () => {
      const { store } = await make();
      const rs = [
        flowRecord({ id: 'a', from: 'web', to: 'api', hop: 'client-sidecar', startTime: BASE + 1 }),
        flowRecord({ id: 'b', from: 'web', to: 'api', hop: 'server-sidecar', verdict: 'denied', startTime: BASE + 2 }),
        flowRecord({ id: 'c', from: 'api', to: 'db', startTime: BASE + 3 }),
        flowRecord({ id: 'd', from: 'web', to: 'db', dc: 'dc2', verdict: 'no_route', hop: 'gateway-ingress', startTime: BASE + 4 }),
      ];
      await store.append(rs);
      expect(ids(await store.query({}))).toEqual(['d', 'c', 'b', 'a']);
      expect(ids(await store.query({ service: 'api' }))).toEqual(['c', 'b', 'a']);
      expect(ids(await store.query({ source: 'web' }))).toEqual(['d', 'b', 'a']);
      expect(ids(await store.query({ destination: 'db' }))).toEqual(['d', 'c']);
      expect(ids(await store.query({ source: 'web', destination: 'api', verdict: 'denied' }))).toEqual(['b']);
      expect(ids(await store.query({ dc: 'dc2' }))).toEqual(['d']);
      expect(ids(await store.query({ hop: 'client-sidecar' }))).toEqual(['a']);
      expect(ids(await store.query({ verdict: 'error' }))).toEqual([]);
      expect(ids(await store.query({ service: 'nobody' }))).toEqual([]);
      // The names /v1/flows passes.
      expect(ids(await store.query({ from: 'web', to: 'db' }))).toEqual(['d']);
      expect(ids(await store.query({ trace: rs[2].traceId }))).toEqual(['c']);
      // Records come back whole.
      expect((await store.query({ traceId: rs[1].traceId }))[0]).toEqual(rs[1]);
    });

    it('joins the hops of one trace without scanning the others', async () => {
      const { store, visited } = await make();
      const trace = traceId(42);
      const hops = (['client-sidecar', 'gateway-egress', 'gateway-ingress', 'server-sidecar'] as const).map((hop, i) =>
        flowRecord({ traceId: trace, hop, dc: i < 2 ? 'dc1' : 'dc2', startTime: BASE + 1000 + i }),
      );
      const noise = Array.from({ length: 2000 }, (_, i) => flowRecord({ startTime: BASE + i }));
      await store.append(noise.slice(0, 1000));
      await store.append(hops.slice(0, 2));
      await store.append(noise.slice(1000));
      await store.append(hops.slice(2));
      let got: FlowRecord[] = [];
      const n = await cost(visited, async () => {
        got = await store.query({ traceId: trace });
      });
      expect(got.map((r) => r.hop)).toEqual(['server-sidecar', 'gateway-ingress', 'gateway-egress', 'client-sidecar']);
      expect(n).toBe(4);
    });

    it('finds a rare verdict, and a service among many, by index', async () => {
      const { store, visited } = await make();
      const rs = Array.from({ length: 3000 }, (_, i) =>
        flowRecord({ from: `svc-${i % 50}`, to: 'api', verdict: i % 1000 === 7 ? 'denied' : 'allowed', startTime: BASE + i }),
      );
      await store.append(rs);
      let denied: FlowRecord[] = [];
      expect(await cost(visited, async () => (denied = await store.query({ verdict: 'denied' })))).toBe(3);
      expect(ids(denied)).toEqual([rs[2007].id, rs[1007].id, rs[7].id]);
      // svc-3 has 60 records, "api" all 3000: the smaller index is read.
      let mine: FlowRecord[] = [];
      expect(await cost(visited, async () => (mine = await store.query({ source: 'svc-3', destination: 'api', limit: 1000 })))).toBe(60);
      expect(mine).toHaveLength(60);
      // Two indexes: the three denied ones are read, not svc-7's sixty.
      expect(await cost(visited, async () => (mine = await store.query({ source: 'svc-7', verdict: 'denied' })))).toBe(3);
      expect(ids(mine)).toEqual([rs[2007].id, rs[1007].id, rs[7].id]);
    });

    it('answers a time range exactly when records arrive out of order, reading little more than the range', async () => {
      const { store, visited } = await make();
      // Records are written when a connection ends, so startTimes arrive shuffled by up to 90 ms;
      // one long connection reports an hour late.
      const rs = Array.from({ length: 2000 }, (_, i) => flowRecord({ id: `r${i}`, startTime: BASE + 100 + i * 10 - (i % 7) * 15 }));
      const late = flowRecord({ id: 'late', startTime: BASE - 3_600_000, durationMs: 3_600_000 });
      await store.append(rs.slice(0, 1200));
      await store.append([late]);
      await store.append(rs.slice(1200));
      const all = [...rs.slice(0, 1200), late, ...rs.slice(1200)];
      const expectRange = (since?: number, until?: number) =>
        all
          .filter((r) => (since === undefined || r.startTime >= since) && (until === undefined || r.startTime <= until))
          .map((r) => r.id)
          .reverse();

      let got: FlowRecord[] = [];
      const n = await cost(visited, async () => (got = await store.query({ since: BASE + 5000, until: BASE + 5990, limit: 10_000 })));
      expect(ids(got)).toEqual(expectRange(BASE + 5000, BASE + 5990));
      expect(got.length).toBeGreaterThan(90);
      expect(n).toBeLessThan(got.length + 20);

      expect(ids(await store.query({ since: BASE + 19_900, limit: 10_000 }))).toEqual(expectRange(BASE + 19_900));
      expect(ids(await store.query({ until: BASE + 100, limit: 10_000 }))).toEqual(expectRange(undefined, BASE + 100));
      expect(ids(await store.query({ until: BASE - 1 }))).toEqual(['late']);
      expect(ids(await store.query({ since: BASE - 3_600_000, until: BASE - 3_600_000 }))).toEqual(['late']);
      expect(await store.query({ until: BASE - 3_600_001 })).toEqual([]);
      expect(await store.query({ since: BASE + 30_000 })).toEqual([]);
      // A recent window reads only the recent end.
      expect(await cost(visited, async () => (got = await store.query({ since: BASE + 19_000, limit: 10_000 })))).toBeLessThan(got.length + 20);
    });

    it('pages backwards with before, follows forwards with after, and bounds by limit', async () => {
      const { store } = await make();
      const rs = Array.from({ length: 10 }, (_, i) => flowRecord({ id: `p${i}`, from: i % 2 ? 'odd' : 'even', startTime: BASE + i }));
      await store.append(rs);
      expect(ids(await store.query({ limit: 3 }))).toEqual(['p9', 'p8', 'p7']);
      const pages: string[][] = [];
      let before: string | undefined;
      for (;;) {
        const page = await store.query({ limit: 3, ...(before ? { before } : {}) });
        if (!page.length) break;
        pages.push(ids(page));
        before = page[page.length - 1].id;
      }
      expect(pages).toEqual([['p9', 'p8', 'p7'], ['p6', 'p5', 'p4'], ['p3', 'p2', 'p1'], ['p0']]);
      expect(ids(await store.query({ after: 'p6' }))).toEqual(['p7', 'p8', 'p9']);
      expect(ids(await store.query({ after: 'p2', limit: 2 }))).toEqual(['p3', 'p4']);
      expect(ids(await store.query({ after: 'p2', source: 'odd' }))).toEqual(['p3', 'p5', 'p7', 'p9']);
      expect(ids(await store.query({ before: 'p5', source: 'odd' }))).toEqual(['p3', 'p1']);
      expect(ids(await store.query({ after: 'p2', before: 'p6' }))).toEqual(['p3', 'p4', 'p5']);
      expect(await store.query({ after: 'p9' })).toEqual([]);
      // An id the store does not hold: after it is everything held, before it nothing.
      expect(await store.query({ after: 'gone' })).toHaveLength(10);
      expect(await store.query({ before: 'gone' })).toEqual([]);
      expect(await store.query({ limit: 0 })).toEqual([]);
      await expect((async () => store.query({ since: Number.NaN }))()).rejects.toMatchObject({ code: 'ISTHMUS_ERR_INVALID', violations: [{ Field: 'since' }] });
    });

    it('keeps arrival order for records of one time and stores a repeated id once', async () => {
      const { store } = await make();
      const r1 = flowRecord({ id: 'same-1', startTime: BASE });
      const r2 = flowRecord({ id: 'same-2', startTime: BASE });
      const got: string[] = [];
      const stop = store.subscribe((r) => got.push(r.id));
      await store.append([r1, r2]);
      await store.append([r1, { ...r2, verdict: 'denied' }]);
      stop();
      expect(ids(await store.query({}))).toEqual(['same-2', 'same-1']);
      expect(await store.query({ verdict: 'denied' })).toEqual([]);
      expect(got).toEqual(['same-1', 'same-2']);
    });

    it('tells subscribers of each stored record until they unsubscribe', async () => {
      const { store } = await make();
      const all: string[] = [];
      const mine: string[] = [];
      const stopAll = store.subscribe((r) => all.push(r.id));
      const stopMine = store.subscribe((r) => mine.push(r.id), { localOnly: true });
      const stopBroken = store.subscribe(() => {
        throw new Error('a subscriber that fails');
      });
      await store.append([flowRecord({ id: 's1' }), flowRecord({ id: 's2' })]);
      stopAll();
      await store.append([flowRecord({ id: 's3' })]);
      stopMine();
      stopBroken();
      await store.append([flowRecord({ id: 's4' })]);
      expect(all).toEqual(['s1', 's2']);
      expect(mine).toEqual(['s1', 's2', 's3']);
      expect(ids(await store.query({}))).toEqual(['s4', 's3', 's2', 's1']);
    });

    it('evicts the oldest past its capacity, and its indexes and cursors with it', async () => {
      const { store, visited } = await make({ capacity: 5 });
      const rs = Array.from({ length: 8 }, (_, i) =>
        flowRecord({
          id: `e${i}`,
          traceId: traceId(i % 4),
          from: i < 3 ? 'gone' : 'web',
          to: 'api',
          verdict: i === 1 || i === 6 ? 'denied' : 'allowed',
          startTime: BASE + i * 1000,
        }),
      );
      await store.append(rs.slice(0, 4));
      await store.append(rs.slice(4));
      expect(ids(await store.query({}))).toEqual(['e7', 'e6', 'e5', 'e4', 'e3']);
      expect(ids(await store.query({ traceId: traceId(1) }))).toEqual(['e5']);
      expect(ids(await store.query({ traceId: traceId(3) }))).toEqual(['e7', 'e3']);
      expect(await store.query({ source: 'gone' })).toEqual([]);
      let denied: FlowRecord[] = [];
      expect(await cost(visited, async () => (denied = await store.query({ verdict: 'denied' })))).toBe(1);
      expect(ids(denied)).toEqual(['e6']);
      expect(ids(await store.query({ until: BASE + 3500 }))).toEqual(['e3']);
      expect(await store.query({ until: BASE + 2500 })).toEqual([]);
      expect(ids(await store.query({ since: BASE + 1500 }))).toEqual(['e7', 'e6', 'e5', 'e4', 'e3']);
      // An evicted record is no cursor any more: after it is all that is left, before it nothing.
      expect(ids(await store.query({ after: 'e1' }))).toEqual(['e3', 'e4', 'e5', 'e6', 'e7']);
      expect(await store.query({ before: 'e2' })).toEqual([]);
      // Its id may be stored again.
      await store.append([rs[0]]);
      expect(ids(await store.query({ traceId: traceId(0) }))).toEqual(['e0', 'e4']);
      expect(ids(await store.query({}))).toEqual(['e0', 'e7', 'e6', 'e5', 'e4']);
    });

    it('keeps HTTP details, identities and odd names intact', async () => {
      const { store } = await make();
      const r = flowRecord({
        id: 'h:1/é',
        from: 'web:frontend',
        to: 'api v2',
        requestIndex: 3,
        http: { method: 'POST', path: '/orders?id=1', status: 201, traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
        source: identity('web:frontend', 'dc1'),
        destination: identity('api v2', 'dc2', false),
      });
      await store.append([r]);
      expect(await store.query({ service: 'api v2' })).toEqual([r]);
      expect(await store.query({ source: 'web:frontend' })).toEqual([r]);
      expect(ids(await store.query({ after: 'h:1/é' }))).toEqual([]);
      expect(ids(await store.query({ before: 'h:1/é' }))).toEqual([]);
    });
  });
}
