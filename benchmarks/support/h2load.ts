// Runs h2load (Debian's nghttp2-client) when it is installed: a load generator in C, pinned to the
// second core as wrk.ts pins wrk. h2load prints min/mean/max but no percentiles, so p50 and p99 come
// from its per-request log (`--log-file`: start, status, microseconds to the end of the answer).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GRPC_HEADERS, GRPC_PATH, GRPC_REQUEST, type H2LoadOptions } from './h2-load.js';
import type { LoadResult } from './http-load.js';

export function hasH2load(): boolean {
  return spawnSync('h2load', ['--version']).error === undefined;
}

export function runH2load(o: H2LoadOptions): LoadResult {
  const dir = mkdtempSync(join(tmpdir(), 'isthmus-h2load-'));
  try {
    const log = join(dir, 'requests.log');
    const args = ['-t1', '-c', String(o.clients), '-m', String(o.streams), '-D', String(Math.max(1, Math.round(o.durationMs / 1000))), '--log-file', log];
    let url = `http://127.0.0.1:${o.port}/`;
    if (o.grpc) {
      writeFileSync(join(dir, 'body'), GRPC_REQUEST);
      args.push('-d', join(dir, 'body'), ...Object.entries(GRPC_HEADERS).flatMap(([k, v]) => ['-H', `${k}: ${v}`]));
      url = `http://127.0.0.1:${o.port}${GRPC_PATH}`;
    }
    args.push(url);
    const pinned = spawnSync('taskset', ['-c', '1', 'true']).status === 0 && process.env.BENCH_NO_PIN !== '1';
    const r = pinned ? spawnSync('taskset', ['-c', '1', 'h2load', ...args], { encoding: 'utf8' }) : spawnSync('h2load', args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`h2load ${args.join(' ')} exited ${r.status}: ${r.stderr || r.stdout}`);
    return parseH2load(r.stdout, readFileSync(log, 'utf8'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What h2load's summary and per-request log say: requests done, errors (not 2xx, errored, timed out), req/s, p50/p99. */
export function parseH2load(out: string, log: string): LoadResult {
  const finished = /finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out);
  const counts = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out);
  if (!finished || !counts) throw new Error(`h2load printed no summary: ${out}`);
  const durations: number[] = [];
  let not2xx = 0;
  for (const line of log.split('\n')) {
    const [, status, us] = line.split('\t');
    if (us === undefined) continue;
    if (!status.startsWith('2')) not2xx++;
    durations.push(Number(us) / 1000);
  }
  durations.sort((a, b) => a - b);
  const pct = (p: number) => durations[Math.min(durations.length - 1, Math.floor(durations.length * p))] ?? 0;
  return {
    requests: Number(counts[3]),
    errors: not2xx + Number(counts[6]) + Number(counts[7]),
    rps: Number(finished[1]),
    p50Ms: pct(0.5),
    p99Ms: pct(0.99),
  };
}
