// The one suite both Store backends pass (run from memory/ and redis/ with their own factory).
import { describe, expect, it, afterEach } from 'vitest';
import type { Store } from './store.js';

export interface StoreFactory {
  /** Two replicas of one DC (the memory backend gives the same store twice). */
  make(opts?: { retainChanges?: number }): Promise<{ a: Store; b: Store; cleanup(): Promise<void> }>;
}

export function runStoreSuite(name: string, factory: StoreFactory): void {
  describe(`Store conformance: ${name}`, () => {
    const cleanups: (() => Promise<void>)[] = [];
    afterEach(async () => {
      while (cleanups.length) await cleanups.pop()!();
    });
    const make = async (opts?: { retainChanges?: number }) => {
      const s = await factory.make(opts);
      cleanups.push(s.cleanup);
      return s;
    };

    it('puts, gets, lists sorted with a prefix, and keeps create/modify indexes', async () => {
      const { a } = await make();
      const r1 = await a.commit([
        { op: 'put', table: 't', key: 'b/2', value: { n: 2, tags: [] } },
        { op: 'put', table: 't', key: 'a/1', value: { n: 1 } },
      ]);
      const r2 = await a.commit([{ op: 'put', table: 't', key: 'b/2', value: { n: 3, tags: [] } }]);
      expect(r2.index).toBe(r1.index + 1);
      expect(a.list('t').map((e) => e.key)).toEqual(['a/1', 'b/2']);
      expect(a.list('t', 'b/').map((e) => e.value)).toEqual([{ n: 3, tags: [] }]);
      expect(a.get('t', 'b/2')).toMatchObject({ createIndex: r1.index, modifyIndex: r2.index });
      expect(a.tableIndex('t')).toBe(r2.index);
      expect(a.index()).toBe(r2.index);
    });

    it('applies a batch all or nothing: a failed guard changes nothing', async () => {
      const { a } = await make();
      await a.commit([{ op: 'put', table: 't', key: 'x', value: 1 }]);
      const before = a.index();
      await expect(
        a.commit([
          { op: 'put', table: 't', key: 'y', value: 2 },
          { op: 'put', table: 't', key: 'x', value: 3, ifIndex: 0 },
        ]),
      ).rejects.toMatchObject({ code: 'ISTHMUS_ERR_CONFLICT' });
      expect(a.get('t', 'y')).toBeUndefined();
      expect(a.get('t', 'x')!.value).toBe(1);
      expect(a.index()).toBe(before);
      const cur = a.get('t', 'x')!.modifyIndex;
      await expect(a.commit([{ op: 'delete', table: 't', key: 'x', ifIndex: cur + 5 }])).rejects.toMatchObject({ code: 'ISTHMUS_ERR_CONFLICT' });
      await a.commit([{ op: 'delete', table: 't', key: 'x', ifIndex: cur }]);
      expect(a.get('t', 'x')).toBeUndefined();
      expect(a.tableIndex('t')).toBe(a.index());
    });

    it('lets exactly one of racing creates win', async () => {
      const { a, b } = await make();
      const results = await Promise.allSettled([a, b, a, b].map((s, i) => s.commit([{ op: 'put', table: 'meta', key: 'once', value: i, ifIndex: 0 }])));
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    });

    it('refuses invalid batches', async () => {
      const { a } = await make();
      await expect(a.commit([])).rejects.toMatchObject({ code: 'ISTHMUS_ERR_INVALID' });
      await expect(a.commit([{ op: 'put', table: '', key: 'k', value: 1 }])).rejects.toMatchObject({ code: 'ISTHMUS_ERR_INVALID' });
    });

    it('wakes a blocked reader on a write to its table only, on either replica', async () => {
      const { a, b } = await make();
      await a.commit([{ op: 'put', table: 'w', key: 'k', value: 0 }]);
      const idx = b.tableIndex('w');
      let woke = false;
      const waiting = b.waitForChange(['w'], idx, 5000).then((i) => {
        woke = true;
        return i;
      });
      await a.commit([{ op: 'put', table: 'other', key: 'k', value: 1 }]);
      await new Promise((r) => setTimeout(r, 100));
      expect(woke).toBe(false);
      const r = await a.commit([{ op: 'put', table: 'w', key: 'k', value: 2 }]);
      expect(await waiting).toBe(r.index);
      expect(b.get('w', 'k')!.value).toBe(2);
      const t0 = Date.now();
      expect(await b.waitForChange(['w'], r.index, 150)).toBe(r.index);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(100);
      const ac = new AbortController();
      const aborted = b.waitForChange(['w'], r.index, 5000, ac.signal);
      ac.abort();
      expect(await aborted).toBe(r.index);
    });

    it('answers changes since an index in order, and a snapshot when they are no longer kept', async () => {
      const { a } = await make({ retainChanges: 5 });
      const start = a.index();
      for (let i = 0; i < 10; i++) await a.commit([{ op: 'put', table: 'c', key: `k${i}`, value: i }]);
      const recent = a.changesSince(a.index() - 3);
      expect(recent.kind).toBe('changes');
      if (recent.kind === 'changes') expect(recent.changes.map((c) => c.key)).toEqual(['k7', 'k8', 'k9']);
      const old = a.changesSince(start);
      expect(old.kind).toBe('snapshot');
      if (old.kind === 'snapshot') expect(old.tables.c).toHaveLength(10);
    });

    it('delivers every batch to subscribers in index order', async () => {
      const { a, b } = await make();
      const seen: number[] = [];
      const off = b.subscribe((changes) => seen.push(changes[0].index));
      const idx: number[] = [];
      for (let i = 0; i < 5; i++) idx.push((await a.commit([{ op: 'put', table: 's', key: 'k', value: i }])).index);
      const until = Date.now() + 3000;
      while (seen.length < 5 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      off();
      expect(seen).toEqual(idx);
    });
  });
}
