// Passive outlier detection per target, as Envoy's consecutive-5xx detector with Consul's
// PassiveHealthCheck fields: an endpoint whose calls fail MaxFailures times in a row (a 5xx answer,
// or a connect/TLS failure, which Envoy counts the same while local-origin errors are not split)
// is ejected for BaseEjectionTime times the number of its ejections (capped at Envoy's 300 s
// max_ejection_time), one fewer for every Interval it then stays in. Time is read, never waited on:
// no timer runs, an ejection simply ends.
import { parseDuration } from '../core/duration.js';
import type { PassiveHealthCheck } from './sidecar-config.js';

/** Envoy's defaults, which Consul leaves in force for fields it is not given. */
export const OUTLIER_DEFAULTS = {
  intervalMs: 10_000,
  maxFailures: 5,
  enforcingPercent: 100,
  maxEjectionPercent: 10,
  baseEjectionMs: 30_000,
  maxEjectionMs: 300_000,
};

interface HostState {
  failures: number;
  ejections: number;
  ejectedUntil: number;
}

export class OutlierDetector {
  readonly intervalMs: number;
  readonly maxFailures: number;
  readonly enforcingPercent: number;
  readonly maxEjectionPercent: number;
  readonly baseEjectionMs: number;
  readonly #hosts = new Map<string, HostState>();
  readonly #now: () => number;
  readonly #random: () => number;

  constructor(cfg: PassiveHealthCheck | undefined, opts: { now?: () => number; random?: () => number } = {}) {
    const d = OUTLIER_DEFAULTS;
    this.intervalMs = durationOr(cfg?.Interval, d.intervalMs);
    this.maxFailures = cfg?.MaxFailures || d.maxFailures;
    this.enforcingPercent = Math.min(100, cfg?.EnforcingConsecutive5xx ?? d.enforcingPercent);
    this.maxEjectionPercent = Math.min(100, cfg?.MaxEjectionPercent ?? d.maxEjectionPercent);
    this.baseEjectionMs = durationOr(cfg?.BaseEjectionTime, d.baseEjectionMs);
    this.#now = opts.now ?? Date.now;
    this.#random = opts.random ?? Math.random;
  }

  isEjected(key: string): boolean {
    const h = this.#hosts.get(key);
    return h !== undefined && this.#now() < h.ejectedUntil;
  }

  /** When the endpoint's ejection ends (epoch ms; in the past when it is not ejected). */
  ejectionEnds(key: string): number {
    return this.#hosts.get(key)?.ejectedUntil ?? 0;
  }

  /** How many of `keys` are ejected now. */
  ejectedAmong(keys: string[]): number {
    return keys.filter((k) => this.isEjected(k)).length;
  }

  success(key: string): void {
    const h = this.#hosts.get(key);
    if (h) h.failures = 0;
  }

  /**
   * One failed call to `key`, one of the target's endpoints `all`. True when it ejects the endpoint.
   * Envoy's bound: ejecting must keep the ejected share at or under MaxEjectionPercent, unless none is ejected.
   */
  failure(key: string, all: string[]): boolean {
    const now = this.#now();
    let h = this.#hosts.get(key);
    if (!h) this.#hosts.set(key, (h = { failures: 0, ejections: 0, ejectedUntil: 0 }));
    if (now < h.ejectedUntil) return false;
    h.failures++;
    if (h.failures < this.maxFailures) return false;
    h.failures = 0;
    if (this.#random() * 100 >= this.enforcingPercent) return false;
    const ejected = this.ejectedAmong(all.filter((k) => k !== key));
    const share = (100 * (ejected + 1)) / Math.max(all.length, 1);
    if (share > this.maxEjectionPercent && ejected > 0) return false;
    // Each Interval spent back in since the last ejection ended takes one off the multiplier.
    if (h.ejections > 0 && h.ejectedUntil > 0) h.ejections = Math.max(0, h.ejections - Math.floor((now - h.ejectedUntil) / this.intervalMs));
    h.ejections++;
    h.ejectedUntil = now + Math.min(this.baseEjectionMs * h.ejections, Math.max(OUTLIER_DEFAULTS.maxEjectionMs, this.baseEjectionMs));
    return true;
  }

  /** Forget endpoints no longer listed. */
  retain(keys: Set<string>): void {
    for (const k of this.#hosts.keys()) if (!keys.has(k)) this.#hosts.delete(k);
  }
}

/**
 * A duration as pushed; an unset, zero or unreadable one is the default (the server validated the
 * entry when it was written, and a sidecar keeps ejecting by the defaults rather than fail a call).
 */
function durationOr(v: string | undefined, fallback: number): number {
  if (!v) return fallback;
  try {
    return parseDuration(v) || fallback;
  } catch {
    return fallback;
  }
}
