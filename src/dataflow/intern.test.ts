import { describe, expect, it } from 'vitest';
import { MemoryFlowStore } from './flow-store-memory.js';
import { Interner } from './intern.js';
import { flowRecord, traceId } from './testing/records.js';

/** A record as it comes off the wire: every string and object a fresh one. */
const fromWire = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

describe('Interner', () => {
  it('keeps records equal while their repeated fields share one copy', () => {
    const store = new MemoryFlowStore({ capacity: 100 });
    const given = Array.from({ length: 10 }, (_, i) => flowRecord({ traceId: traceId(i), from: 'web', to: 'api', startTime: 1_700_000_000_000 + i }));
    for (const r of given) store.append([fromWire(r)]);
    const kept = store.query({ limit: 100 }).sort((a, b) => a.startTime - b.startTime);
    expect(kept).toEqual(given);
    expect(new Set(kept.map((r) => r.source)).size).toBe(1);
    expect(new Set(kept.map((r) => r.destination)).size).toBe(1);
    expect(Object.isFrozen(kept[0].source)).toBe(true);
    // Different identities stay different.
    store.append([fromWire(flowRecord({ traceId: traceId(99), from: 'batch', to: 'api' }))]);
    const batch = store.query({ service: 'batch', limit: 10 });
    expect(batch[0].source.service).toBe('batch');
    expect(batch[0].source).not.toBe(kept[0].source);
    expect(batch[0].destination).toBe(kept[0].destination);
  });

  it('starts its tables over instead of growing past its bound with one-off values', () => {
    const interner = new Interner();
    const first = interner.str(`reason ${0}`);
    for (let i = 1; i < 50_000; i++) expect(interner.str(`reason ${i}`)).toBe(`reason ${i}`);
    // The early value was let go when the table started over: a new copy is kept, equal to it.
    expect(interner.str('reason 0')).toBe(first);
    expect(interner.size).toBeLessThanOrEqual(20_000);
  });
});
