import { describe, expect, it } from 'vitest';
import { runFlowStoreSuite } from './flow-store.case.test.js';
import { MemoryFlowStore } from './flow-store-memory.js';
import { flowRecord, traceId } from './testing/records.js';

runFlowStoreSuite('memory', {
  async make(opts) {
    const store = new MemoryFlowStore({ capacity: opts?.capacity ?? 10_000 });
    await store.start();
    return { store, visited: () => store.visited, cleanup: () => store.stop() };
  },
});

describe('MemoryFlowStore', () => {
  it('keeps every index exactly as large as what the ring holds through many evictions', () => {
    const s = new MemoryFlowStore({ capacity: 100 });
    const now = 1_700_000_000_000;
    for (let i = 0; i < 5_000; i++) {
      // Every 97th record is a long connection reporting late.
      const startTime = i % 97 === 0 ? now + i - 3_600_000 : now + i * 3;
      s.append([flowRecord({ traceId: traceId(i % 130), from: `s${i % 7}`, to: `t${i % 11}`, verdict: i % 5 ? 'allowed' : 'error', startTime })]);
    }
    const held = s.query({ limit: 1000 });
    expect(held).toHaveLength(100);
    const sizes = s.indexSizes();
    expect(sizes.ids).toBe(100);
    // Each record sits in one trace list, one verdict list and two service lists.
    expect(sizes.entries).toBe(400);
    expect(sizes.traces).toBe(new Set(held.map((r) => r.traceId)).size);
    expect(sizes.services).toBe(7 + 11);
    expect(sizes.late + sizes.suffixMinima).toBeLessThanOrEqual(100);
    expect(sizes.late).toBe(held.filter((r) => r.startTime < 1_700_000_000_000 - 1_000_000).length);
  });

  it('finds the records of a trace among 40,000 by visiting only those', () => {
    const s = new MemoryFlowStore();
    const batch = Array.from({ length: 40_000 }, (_, i) => flowRecord({ traceId: traceId(i % 10_000), startTime: 1_700_000_000_000 + i }));
    s.append(batch);
    expect(s.size()).toBe(40_000);
    const before = s.visited;
    expect(s.query({ traceId: traceId(2_345) })).toHaveLength(4);
    expect(s.visited - before).toBe(4);
  });

  it('answers at once, for callers that do not await', () => {
    const s = new MemoryFlowStore(10);
    s.append([flowRecord({ id: 'now' })]);
    expect(s.query({}).map((r) => r.id)).toEqual(['now']);
    expect(() => new MemoryFlowStore({ capacity: 0 })).toThrow(expect.objectContaining({ code: 'ISTHMUS_ERR_INVALID' }));
  });
});
