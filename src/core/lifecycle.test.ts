import { describe, expect, it } from 'vitest';
import { ComponentGroup, LeaderGate, type Component, type Leadership } from './lifecycle.js';

function leadership(initial: boolean): Leadership & { set(l: boolean): void } {
  let leader = initial;
  const listeners = new Set<(l: boolean) => void>();
  return {
    isLeader: () => leader,
    onLeaderChange: (l) => (listeners.add(l), () => listeners.delete(l)),
    set(l) {
      leader = l;
      for (const x of listeners) x(l);
    },
  };
}

function recorder(name: string, log: string[]): Component {
  return { name, start: async () => void log.push(`start ${name}`), stop: async () => void log.push(`stop ${name}`) };
}

describe('LeaderGate', () => {
  it('runs its components only while leading, starts in order and stops in reverse', async () => {
    const log: string[] = [];
    const l = leadership(false);
    const gate = new LeaderGate(l, [recorder('a', log), recorder('b', log)]);
    await gate.start();
    expect(log).toEqual([]);
    expect(gate.active).toBe(false);
    l.set(true);
    l.set(true);
    await new Promise((r) => setTimeout(r, 10));
    expect(log).toEqual(['start a', 'start b']);
    expect(gate.active).toBe(true);
    l.set(false);
    await new Promise((r) => setTimeout(r, 10));
    expect(log).toEqual(['start a', 'start b', 'stop b', 'stop a']);
    l.set(true);
    await new Promise((r) => setTimeout(r, 10));
    await gate.stop();
    expect(log.slice(4)).toEqual(['start a', 'start b', 'stop b', 'stop a']);
    // Stopped: a later change starts nothing.
    l.set(true);
    await new Promise((r) => setTimeout(r, 10));
    expect(log).toHaveLength(8);
  });

  it('starts at once for a replica that already leads, and aborts the signal when leadership goes', async () => {
    const l = leadership(true);
    let signal: AbortSignal | undefined;
    const c: Component = { name: 'c', start: async (s) => void (signal = s), stop: async () => {} };
    const gate = new LeaderGate(l, [c]);
    await gate.start();
    expect(signal?.aborted).toBe(false);
    l.set(false);
    await new Promise((r) => setTimeout(r, 10));
    expect(signal?.aborted).toBe(true);
    await gate.stop();
  });

  it('ignores a change to leading that has already passed when its turn comes', async () => {
    const log: string[] = [];
    const l = leadership(false);
    const gate = new LeaderGate(l, [recorder('a', log)]);
    await gate.start();
    l.set(true);
    l.set(false);
    await new Promise((r) => setTimeout(r, 10));
    expect(log).toEqual([]);
    await gate.stop();
  });

  it('is what a ComponentGroup puts its leaderOnly components behind, once it knows the leadership', async () => {
    const log: string[] = [];
    const l = leadership(false);
    const group = new ComponentGroup();
    await group.start([recorder('before', log)]);
    group.leadBy(l);
    await group.start([recorder('store', log), { ...recorder('dialer', log), leaderOnly: true }]);
    expect(log).toEqual(['start before', 'start store']);
    l.set(true);
    await new Promise((r) => setTimeout(r, 10));
    expect(log).toEqual(['start before', 'start store', 'start dialer']);
    await group.stop();
    expect(log.slice(3)).toEqual(['stop dialer', 'stop store', 'stop before']);
  });
});
