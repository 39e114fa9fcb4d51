// Go/Consul-style durations ("10s", "1m30s", "72h", "150ms") to milliseconds and back.
import { invalid } from './errors.js';

const UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const PART = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/y;

/** Parses "10s", "1m30s", "72h"; a bare number is taken as seconds (as Consul's query `wait` does). */
export function parseDuration(text: string, field = 'duration'): number {
  const s = String(text).trim();
  if (s === '') throw invalid([{ Field: field, Message: 'must not be empty' }]);
  if (/^\d+(\.\d+)?$/.test(s)) return Math.round(Number(s) * 1000);
  if (s === '0') return 0;
  let total = 0;
  PART.lastIndex = 0;
  let pos = 0;
  while (pos < s.length) {
    PART.lastIndex = pos;
    const m = PART.exec(s);
    if (!m) throw invalid([{ Field: field, Message: `"${s}" is not a duration (use e.g. 10s, 1m30s, 72h)` }]);
    total += Number(m[1]) * UNITS[m[2]];
    pos = PART.lastIndex;
  }
  return Math.round(total);
}

export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  const parts: string[] = [];
  let rest = ms;
  const h = Math.floor(rest / 3_600_000);
  if (h) {
    parts.push(`${h}h`);
    rest -= h * 3_600_000;
  }
  const m = Math.floor(rest / 60_000);
  if (m) {
    parts.push(`${m}m`);
    rest -= m * 60_000;
  }
  const sec = Math.floor(rest / 1000);
  if (sec) {
    parts.push(`${sec}s`);
    rest -= sec * 1000;
  }
  if (rest) parts.push(`${rest}ms`);
  return parts.join('');
}
