// TableWatch: index, waits and change callbacks cover its tables and no others.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryStore } from './memory/index.js';
import { TableWatch } from '../core/table-watch.js';

let store: MemoryStore;
beforeEach(async () => {
  store = new MemoryStore({ dc: 'dc1', advertiseAddr: 'test' });
  await store.start();
});
afterEach(() => store.stop());

const put = (table: string, key: string) => store.commit([{ op: 'put', table, key, value: { key } }]);

describe('TableWatch', () => {
  it('has the highest index of its tables, and ignores the others', async () => {
    const w = new TableWatch(store, ['a', 'b']);
    expect(w.index()).toBe(0);
    const a = (await put('a', 'x')).index;
    await put('c', 'x');
    expect(w.index()).toBe(a);
    const b = (await put('b', 'x')).index;
    expect(w.index()).toBe(b);
  });

  it('waits for a change of its own tables only', async () => {
    const w = new TableWatch(store, ['a']);
    const after = w.index();
    let woke = false;
    const waiting = w.waitForChange(after, 5000).then((i) => ((woke = true), i));
    await put('other', 'x');
    await new Promise((r) => setTimeout(r, 20));
    expect(woke).toBe(false);
    const { index } = await put('a', 'y');
    expect(await waiting).toBe(index);
  });

  it('calls onChange once per batch that touches its tables, until unsubscribed', async () => {
    const w = new TableWatch(store, ['a', 'b']);
    let calls = 0;
    const off = w.onChange(() => void calls++);
    await store.commit([
      { op: 'put', table: 'a', key: '1', value: 1 },
      { op: 'put', table: 'b', key: '1', value: 1 },
    ]);
    await put('c', 'x');
    expect(calls).toBe(1);
    off();
    await put('a', '2');
    expect(calls).toBe(1);
  });
});
