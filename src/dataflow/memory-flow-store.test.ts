import { describe, expect, it } from 'vitest';
import type { FlowRecord } from './flow-record.js';
import { MemoryFlowStore } from './memory-flow-store.js';

let n = 0;
function rec(p: Partial<FlowRecord> & { from: string; to: string }): FlowRecord {
  n++;
  return {
    id: `r${n}`, traceId: p.traceId ?? `t${n}`, requestIndex: 0, hop: p.hop ?? 'server-sidecar', dc: 'dc1', reporter: 'x',
    source: { spiffeId: '', service: p.from, namespace: 'default', dc: 'dc1' },
    destination: { spiffeId: '', service: p.to, namespace: 'default', dc: 'dc1' },
    sni: '', verdict: p.verdict ?? 'allowed', reason: '', intentionId: '', intentionDc: '', intentionIndex: 0,
    startTime: p.startTime ?? n, durationMs: 1, bytesIn: 0, bytesOut: 0,
  };
}

describe('MemoryFlowStore', () => {
  it('evicts the oldest past capacity and keeps its indexes in step', () => {
    const s = new MemoryFlowStore(3);
    s.append([rec({ from: 'a', to: 'b', traceId: 'x' }), rec({ from: 'a', to: 'c' }), rec({ from: 'd', to: 'b' }), rec({ from: 'e', to: 'f' })]);
    expect(s.size()).toBe(3);
    expect(s.query({ trace: 'x' })).toHaveLength(0);
    expect(s.query({ service: 'a' }).map((r) => r.destination.service)).toEqual(['c']);
    expect(s.query({}).map((r) => r.source.service)).toEqual(['e', 'd', 'a']);
  });

  it('filters by direction, verdict and time, newest first, bounded by limit', () => {
    const s = new MemoryFlowStore(100);
    s.append([
      rec({ from: 'web', to: 'db', verdict: 'denied', startTime: 10 }),
      rec({ from: 'web', to: 'api', startTime: 20 }),
      rec({ from: 'api', to: 'web', startTime: 30 }),
      rec({ from: 'web', to: 'db', verdict: 'denied', startTime: 40 }),
    ]);
    expect(s.query({ from: 'web', verdict: 'denied' }).map((r) => r.startTime)).toEqual([40, 10]);
    expect(s.query({ to: 'web' }).map((r) => r.startTime)).toEqual([30]);
    expect(s.query({ service: 'web', since: 15, until: 35 }).map((r) => r.startTime)).toEqual([30, 20]);
    expect(s.query({ limit: 1 }).map((r) => r.startTime)).toEqual([40]);
  });

  it('delivers matching appends to followers until they stop', () => {
    const s = new MemoryFlowStore(10);
    const got: string[] = [];
    const stop = s.follow({ verdict: 'denied' }, (r) => got.push(r.source.service));
    s.append([rec({ from: 'a', to: 'b', verdict: 'denied' }), rec({ from: 'c', to: 'd' })]);
    stop();
    s.append([rec({ from: 'e', to: 'f', verdict: 'denied' })]);
    expect(got).toEqual(['a']);
  });
});
