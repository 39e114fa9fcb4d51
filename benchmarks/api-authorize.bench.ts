// /v1/agent/connect/authorize over HTTP beside a bare hono handler for the same route, alternating
// runs in one session; the ratio is the API's overhead (target >= 0.8x).
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { median, runLoad, type LoadOptions, type LoadResult } from './support/http-load.js';
import { hasWrk, runWrk } from './support/wrk.js';

const useWrk = hasWrk() && process.env.BENCH_NODE_LOAD !== '1';
const load = (o: LoadOptions): Promise<LoadResult> => (useWrk ? Promise.resolve(runWrk(o)) : runLoad(o));

const target = fileURLToPath(new URL('./support/authorize-target.ts', import.meta.url));
// With taskset, the servers get core 0 and wrk core 1, so the client does not steal the server's CPU.
const pin = spawnSync('taskset', ['-c', '0', 'true']).status === 0 && process.env.BENCH_NO_PIN !== '1';
const child = pin
  ? spawn('taskset', ['-c', '0', process.execPath, '--import', 'tsx', target], { stdio: ['ignore', 'pipe', 'inherit'] })
  : spawn(process.execPath, ['--import', 'tsx', target], { stdio: ['ignore', 'pipe', 'inherit'] });
const addrs = await new Promise<{ isthmus: string; bare: string; trustDomain: string }>((resolve, reject) => {
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
    const line = out.split('\n').find((l) => l.startsWith('{'));
    if (line) resolve(JSON.parse(line));
  });
  child.once('exit', (code) => reject(new Error(`target exited ${code}`)));
});

const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const durationMs = Number(process.env.BENCH_MS ?? 3000);
const body = JSON.stringify({ Target: 'api', ClientCertURI: `spiffe://${addrs.trustDomain}/ns/default/dc/dc1/svc/web`, ClientCertSerial: '01' });
const results: Record<string, { rps: number[]; p50: number[]; p99: number[]; errors: number }> = {
  bare: { rps: [], p50: [], p99: [], errors: 0 },
  isthmus: { rps: [], p50: [], p99: [], errors: 0 },
};
// Warm both up, then alternate.
for (const name of ['bare', 'isthmus'] as const)
  await load({ url: `http://${addrs[name]}/v1/agent/connect/authorize`, method: 'POST', body, durationMs: 1000 });
for (let r = 0; r < rounds; r++) {
  for (const name of ['bare', 'isthmus'] as const) {
    const res = await load({ url: `http://${addrs[name]}/v1/agent/connect/authorize`, method: 'POST', body, durationMs, connections: 32 });
    results[name].rps.push(res.rps);
    results[name].p50.push(res.p50Ms);
    results[name].p99.push(res.p99Ms);
    results[name].errors += res.errors;
  }
}
child.kill('SIGTERM');
const summary = Object.fromEntries(
  Object.entries(results).map(([k, v]) => [
    k,
    { rps: Math.round(median(v.rps)), p50Ms: +median(v.p50).toFixed(3), p99Ms: +median(v.p99).toFixed(3), errors: v.errors },
  ]),
);
console.log(
  JSON.stringify({
    name: 'api-authorize',
    loadGenerator: useWrk ? 'wrk' : 'node',
    pinned: pin,
    rounds,
    durationMs,
    ...summary,
    ratio: +(summary.isthmus.rps / summary.bare.rps).toFixed(3),
  }),
);
