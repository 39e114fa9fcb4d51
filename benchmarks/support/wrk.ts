// Runs wrk (Debian's package) when it is installed: a load generator in C leaves the CPU to the
// server under test, which a Node generator on the same two cores does not.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LoadOptions, LoadResult } from './http-load.js';

export function hasWrk(): boolean {
  return spawnSync('wrk', ['--version']).error === undefined;
}

export function runWrk(opts: LoadOptions): LoadResult {
  const dir = mkdtempSync(join(tmpdir(), 'isthmus-wrk-'));
  const script = join(dir, 'req.lua');
  const headers = { 'Content-Type': 'application/json', ...(opts.headers ?? {}) };
  writeFileSync(
    script,
    [
      `wrk.method = ${JSON.stringify(opts.method ?? 'GET')}`,
      opts.body ? `wrk.body = ${JSON.stringify(opts.body)}` : '',
      ...Object.entries(headers).map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`),
    ].join('\n'),
  );
  const pinned = spawnSync('taskset', ['-c', '1', 'true']).status === 0 && process.env.BENCH_NO_PIN !== '1';
  const args = ['-t1', `-c${opts.connections ?? 32}`, `-d${Math.round((opts.durationMs ?? 3000) / 1000)}s`, '--latency', '-s', script, opts.url];
  const r = pinned ? spawnSync('taskset', ['-c', '1', 'wrk', ...args], { encoding: 'utf8' }) : spawnSync('wrk', args, { encoding: 'utf8' });
  return parseWrk(r.stdout);
}

/**
 * What wrk's `--latency` output says: requests, errors (non-2xx and socket errors), req/s, p50/p99,
 * throughput, and the response bytes read in all (a body still arriving at the end counts too: wrk
 * adds up what each read returns).
 */
export function parseWrk(out: string): LoadResult & { mbPerSec: number; bytesRead: number } {
  const ms = (re: RegExp) => {
    const m = re.exec(out);
    if (!m) return 0;
    const v = Number(m[1]);
    return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
  };
  const units = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };
  const read = /requests in [\d.]+\w+, ([\d.]+)(B|KB|MB|GB|TB) read/.exec(out);
  const transfer = /Transfer\/sec:\s+([\d.]+)(B|KB|MB|GB)/.exec(out);
  const unit = transfer ? { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3 }[transfer[2] as 'B' | 'KB' | 'MB' | 'GB'] : 0;
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const errs = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    requests: Number(/(\d+) requests in/.exec(out)?.[1] ?? 0),
    errors: non2xx + (errs ? errs.slice(1).reduce((a, b) => a + Number(b), 0) : 0),
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0),
    p50Ms: ms(/50%\s+([\d.]+)(us|ms|s)/),
    p99Ms: ms(/99%\s+([\d.]+)(us|ms|s)/),
    mbPerSec: transfer ? (Number(transfer[1]) * unit) / 1e6 : 0,
    bytesRead: read ? Math.round(Number(read[1]) * units[read[2] as keyof typeof units]) : 0,
  };
}
