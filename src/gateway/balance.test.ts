import { describe, expect, it } from 'vitest';
import { AcceptBalance } from './balance.js';

/** Accepts `n` connections in a row at a worker holding `open`: how many it keeps, and where the rest go. */
function burst(b: AcceptBalance, open: number, n: number, closed = 0, now = 0): { kept: number; passed: Map<number, number> } {
  const passed = new Map<number, number>();
  let kept = 0;
  for (let i = 0; i < n; i++) {
    const to = b.passTo(open + kept, closed, now);
    if (to === undefined) kept++;
    else passed.set(to, (passed.get(to) ?? 0) + 1);
  }
  return { kept, passed };
}

describe('AcceptBalance', () => {
  it('keeps every connection while it knows of no other worker', () => {
    const b = new AcceptBalance(1);
    expect(burst(b, 0, 50).kept).toBe(50);
    b.reported([[1, 50]]);
    expect(burst(b, 50, 10).kept).toBe(10);
  });

  it('shares a burst that lands on one worker with the other, before any new report', () => {
    const b = new AcceptBalance(1);
    b.reported([
      [1, 0],
      [2, 3],
    ]);
    // The kernel gave all 28 of a burst to worker 1; worker 2 had 3.
    const { kept, passed } = burst(b, 0, 28);
    expect(kept + (passed.get(2) ?? 0)).toBe(28);
    expect(Math.abs(kept - (3 + (passed.get(2) ?? 0)))).toBeLessThanOrEqual(2);
  });

  it('leaves an even split alone and passes to the least loaded of several', () => {
    const b = new AcceptBalance(1);
    b.reported([
      [1, 16],
      [2, 16],
      [3, 15],
    ]);
    expect(burst(b, 16, 1).kept).toBe(1);
    // One more than that and the least loaded gets it.
    expect(burst(b, 17, 1).passed.get(3)).toBe(1);
    b.reported([
      [1, 400],
      [2, 390],
      [3, 250],
    ]);
    const { passed } = burst(b, 400, 100);
    expect(passed.get(2)).toBeUndefined();
    expect(passed.get(3)).toBeGreaterThan(50);
  });

  it('keeps what it accepts while its connections come and go, and balances again once they stay', () => {
    const b = new AcceptBalance(1);
    b.reported([
      [1, 0],
      [2, 0],
    ]);
    // 1,000 connections a second closed here, 16 open at a time.
    let closed = 0;
    let now = 0;
    for (let i = 0; i < 200; i++, now++, closed++) b.passTo(16, closed, now);
    b.reported([
      [1, 16],
      [2, 0],
    ]);
    for (let i = 0; i < 200; i++, now++, closed++) expect(b.passTo(16, closed, now)).toBeUndefined();
    // Half a second without a close: a burst of long-lived connections is shared again.
    now += 500;
    const { kept, passed } = burst(b, 0, 32, closed, now);
    expect(passed.get(2)).toBeGreaterThanOrEqual(10);
    expect(kept).toBeLessThanOrEqual(22);
  });

  it("takes a passing worker's count as news, so it does not pass back", () => {
    const b = new AcceptBalance(2);
    b.reported([
      [1, 0],
      [2, 0],
    ]);
    b.heard(1, 20);
    expect(burst(b, 12, 5).kept).toBe(5);
  });

  it('counts what it passed until the next report, then trusts the report', () => {
    const b = new AcceptBalance(1);
    b.reported([
      [1, 10],
      [2, 0],
    ]);
    let passes = 0;
    while (b.passTo(10, 0, 0) === 2) passes++;
    // 10 held here against 0 + 9 passed there: within the slack of 2, so kept.
    expect(passes).toBe(9);
    b.reported([
      [1, 10],
      [2, 0],
    ]);
    expect(b.passTo(10, 0, 0)).toBe(2);
  });
});
