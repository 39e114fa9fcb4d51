import { describe, expect, it } from 'vitest';
import { Tables } from './tables.js';

const put = (index: number, table: string, key: string, value: unknown) => ({
  index,
  table,
  key,
  op: 'put' as const,
  entry: { key, value, createIndex: index, modifyIndex: index },
});

describe('Tables', () => {
  it('answers changes after an index and a snapshot once they are trimmed', () => {
    const t = new Tables(3);
    for (let i = 1; i <= 5; i++) t.apply([put(i, 'a', `k${i}`, i)]);
    const recent = t.changesSince(3);
    expect(recent.kind).toBe('changes');
    if (recent.kind === 'changes') expect(recent.changes.map((c) => c.index)).toEqual([4, 5]);
    const old = t.changesSince(1);
    expect(old.kind).toBe('snapshot');
    if (old.kind === 'snapshot') expect(old.tables.a.map((e) => e.key)).toEqual(['k1', 'k2', 'k3', 'k4', 'k5']);
  });

  it('wakes a waiter only for the tables it watches', async () => {
    const t = new Tables();
    let woke = false;
    const p = t.waitForChange(['b'], 0, 2000).then((i) => {
      woke = true;
      return i;
    });
    t.apply([put(1, 'a', 'x', 1)]);
    await new Promise((r) => setTimeout(r, 20));
    expect(woke).toBe(false);
    t.apply([put(2, 'b', 'y', 1)]);
    expect(await p).toBe(2);
  });
});
