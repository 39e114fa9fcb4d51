import { describe, expect, it } from 'vitest';
import { OUTLIER_DEFAULTS, OutlierDetector } from './outlier.js';

/** A clock the test moves by hand. */
function clock() {
  let t = 1_000_000;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

const hosts = (n: number) => Array.from({ length: n }, (_, i) => `h${i}`);

describe('OutlierDetector', () => {
  it("takes Envoy's defaults when Consul gives no PassiveHealthCheck (and 0 MaxFailures means the default)", () => {
    for (const cfg of [undefined, {}, { MaxFailures: 0 }]) {
      const d = new OutlierDetector(cfg);
      expect([d.maxFailures, d.intervalMs, d.baseEjectionMs, d.maxEjectionPercent, d.enforcingPercent]).toEqual([5, 10_000, 30_000, 10, 100]);
    }
    const d = new OutlierDetector({ Interval: '2s', MaxFailures: 3, BaseEjectionTime: '1m', MaxEjectionPercent: 50, EnforcingConsecutive5xx: 0 });
    expect([d.maxFailures, d.intervalMs, d.baseEjectionMs, d.maxEjectionPercent, d.enforcingPercent]).toEqual([3, 2_000, 60_000, 50, 0]);
  });

  it('ejects after MaxFailures consecutive failures; a success in between resets the run', () => {
    const c = clock();
    const d = new OutlierDetector({ MaxFailures: 3 }, { now: c.now });
    const all = hosts(2);
    expect(d.failure('h0', all)).toBe(false);
    expect(d.failure('h0', all)).toBe(false);
    d.success('h0');
    expect(d.failure('h0', all)).toBe(false);
    expect(d.failure('h0', all)).toBe(false);
    expect(d.isEjected('h0')).toBe(false);
    expect(d.failure('h0', all)).toBe(true);
    expect(d.isEjected('h0')).toBe(true);
    expect(d.isEjected('h1')).toBe(false);
  });

  it('ejects for BaseEjectionTime times the number of ejections, capped at 300 s; quiet intervals take the multiplier down', () => {
    const c = clock();
    const d = new OutlierDetector({ MaxFailures: 1, BaseEjectionTime: '30s', Interval: '10s' }, { now: c.now });
    const all = hosts(1);
    const ejectFor = () => {
      expect(d.failure('h0', all)).toBe(true);
      const from = c.now();
      let t = 0;
      while (d.isEjected('h0')) {
        c.advance(1000);
        t += 1000;
      }
      expect(c.now() - from).toBe(t);
      return t;
    };
    expect(ejectFor()).toBe(30_000);
    expect(ejectFor()).toBe(60_000);
    expect(ejectFor()).toBe(90_000);
    // Three intervals back in take three off the multiplier of 3: the next ejection is the first again.
    c.advance(30_000);
    expect(ejectFor()).toBe(30_000);
    for (let i = 0; i < 12; i++) ejectFor();
    expect(ejectFor()).toBe(OUTLIER_DEFAULTS.maxEjectionMs);
  });

  it('keeps the ejected share at or under MaxEjectionPercent, but always lets one endpoint go', () => {
    const c = clock();
    const d = new OutlierDetector({ MaxFailures: 1 }, { now: c.now });
    const three = hosts(3);
    // 10 % of 3 is under one endpoint: the first is ejected anyway, the second is not.
    expect(d.failure('h0', three)).toBe(true);
    expect(d.failure('h1', three)).toBe(false);
    expect(d.ejectedAmong(three)).toBe(1);
    const half = new OutlierDetector({ MaxFailures: 1, MaxEjectionPercent: 50 }, { now: c.now });
    const four = hosts(4);
    expect(four.map((h) => half.failure(h, four))).toEqual([true, true, false, false]);
    const zero = new OutlierDetector({ MaxFailures: 1, MaxEjectionPercent: 0 }, { now: c.now });
    expect([zero.failure('h0', four), zero.failure('h1', four)]).toEqual([true, false]);
  });

  it('ejects with the EnforcingConsecutive5xx chance only', () => {
    let r = 0.5;
    const d = new OutlierDetector({ MaxFailures: 1, EnforcingConsecutive5xx: 40 }, { random: () => r });
    expect(d.failure('h0', hosts(1))).toBe(false);
    r = 0.39;
    expect(d.failure('h0', hosts(1))).toBe(true);
    const never = new OutlierDetector({ MaxFailures: 1, EnforcingConsecutive5xx: 0 }, { random: () => 0 });
    expect(never.failure('h0', hosts(1))).toBe(false);
  });

  it('forgets endpoints no longer listed', () => {
    const d = new OutlierDetector({ MaxFailures: 1 });
    d.failure('h0', hosts(1));
    expect(d.isEjected('h0')).toBe(true);
    d.retain(new Set(['h1']));
    expect(d.isEjected('h0')).toBe(false);
  });
});

describe('OutlierDetector input', () => {
  it('takes an unreadable duration as the default rather than fail calls', () => {
    const d = new OutlierDetector({ Interval: 'soon', BaseEjectionTime: '' });
    expect([d.intervalMs, d.baseEjectionMs]).toEqual([10_000, 30_000]);
  });
});
