// The HTTP/2 L7 pair beside HAProxy's h2 pair on the same certificates, in one run with alternating
// rounds. Isthmus: load generator -> h2c -> client sidecar (http2 upstream) -> mTLS, ALPN h2 -> server
// sidecar (http2 inbound) -> h2c app (support/h2-pair.ts). HAProxy: -> h2c -> `mode http` frontend ->
// mTLS, ALPN h2 -> `mode http` frontend -> h2c app (tls-proxies.ts), its two sides in one process of
// one thread (--haproxy-threads), as the Isthmus pair's two sidecars are one Node process. The same
// app (support/h2-app.ts) behind both. Two kinds of request: `get` (GET /, 64 bytes back) and `grpc`,
// gRPC-shaped (a POST of one framed message, answered with one and grpc-status 0 in the trailers).
// Load from h2load (32 connections x 10 streams, pinned to the second core), or from a Node loop when
// h2load is not installed. Reports per path requests/s, p50/p99, the proxy process's CPU per request,
// one request at a time (one connection, one stream) p50/p99, and isthmus / haproxy.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { arg, childProcesses, cpuMicros } from './support/bench-run.js';
import { freePort, listening } from './support/free-port.js';
import { checkH2Path, runH2LoadNode, type H2LoadOptions } from './support/h2-load.js';
import { hasH2load, runH2load } from './support/h2load.js';
import { median, type LoadResult } from './support/http-load.js';
import { jsonChild } from './support/json-child.js';
import { haveHaproxy, startHaproxyH2Pair } from './support/tls-proxies.js';

const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'isthmus-h2-bench-'));
const children = childProcesses();
const seconds = Number(arg('seconds', '5'));
const rounds = Number(arg('rounds', process.env.BENCH_ROUNDS ?? '3'));
const clients = Number(arg('clients', '32'));
const streams = Number(arg('streams', '10'));
const haproxyThreads = Number(arg('haproxy-threads', '1'));

const app = await jsonChild(children, process.execPath, ['--import', 'tsx', here('./support/h2-app.ts')]);
const pair = await jsonChild(children, process.execPath, ['--import', 'tsx', here('./support/h2-pair.ts'), String(app.info.port), dir]);
const paths: Record<string, { port: number; pid: number }> = { isthmus: { port: pair.info.port, pid: pair.info.pid } };
if (haveHaproxy()) {
  const port = await freePort();
  const hp = startHaproxyH2Pair({
    dir,
    port,
    inner: await freePort(),
    appPort: app.info.port,
    sni: 'api.default.dc1.internal.bench.isthmus',
    threads: haproxyThreads,
  });
  children.push(hp);
  hp.once('exit', () => process.exit(1));
  await listening(port);
  paths.haproxy = { port, pid: hp.pid! };
} else console.error('haproxy is not installed (apt-get install haproxy): the Isthmus pair is measured alone');
for (const [k, p] of Object.entries(paths)) await checkH2Path(p.port, k);

const useH2load = hasH2load() && process.env.BENCH_NODE_LOAD !== '1';
if (!useH2load)
  console.error(
    hasH2load()
      ? 'BENCH_NODE_LOAD=1: the Node HTTP/2 load loop drives both pairs'
      : 'h2load is not installed (apt-get install nghttp2-client): the Node HTTP/2 load loop drives both pairs',
  );
const load = (o: H2LoadOptions): Promise<LoadResult> => (useH2load ? Promise.resolve(runH2load(o)) : runH2LoadNode(o));

const kinds = { get: false, grpc: true };
type Acc = { rps: number[]; p50: number[]; p99: number[]; cpuUs: number[]; p50One: number[]; p99One: number[]; errors: number };
const res: Record<string, Record<string, Acc>> = {};
for (const kind of Object.keys(kinds)) {
  res[kind] = {};
  for (const k of Object.keys(paths)) res[kind][k] = { rps: [], p50: [], p99: [], cpuUs: [], p50One: [], p99One: [], errors: 0 };
}
// Warm the connections, the next hops' sessions and the JIT on both paths, both kinds.
for (const p of Object.values(paths)) for (const grpc of Object.values(kinds)) await load({ port: p.port, clients, streams, durationMs: 1000, grpc });
for (let r = 0; r < rounds; r++) {
  for (const [kind, grpc] of Object.entries(kinds)) {
    const order = Object.keys(paths);
    if (r % 2) order.reverse();
    for (const k of order) {
      const { port, pid } = paths[k];
      const acc = res[kind][k];
      const cpu0 = cpuMicros(pid);
      const l = await load({ port, clients, streams, durationMs: seconds * 1000, grpc });
      if (l.requests > 0) acc.cpuUs.push((cpuMicros(pid) - cpu0) / l.requests);
      acc.rps.push(l.rps);
      acc.p50.push(l.p50Ms);
      acc.p99.push(l.p99Ms);
      acc.errors += l.errors;
      const one = await load({ port, clients: 1, streams: 1, durationMs: (seconds * 1000) / 2, grpc });
      acc.p50One.push(one.p50Ms);
      acc.p99One.push(one.p99Ms);
      acc.errors += one.errors;
    }
  }
}

type Summary = { rps: number; p50Ms: number; p99Ms: number; cpuUsPerRequest: number; oneAtATime: { p50Ms: number; p99Ms: number }; errors: number };
const summary: Record<string, Record<string, Summary>> = {};
const ratios: Record<string, Record<string, number | number[]>> = {};
for (const [kind, byPath] of Object.entries(res)) {
  summary[kind] = {};
  for (const [k, v] of Object.entries(byPath)) {
    summary[kind][k] = {
      rps: Math.round(median(v.rps)),
      p50Ms: +median(v.p50).toFixed(3),
      p99Ms: +median(v.p99).toFixed(3),
      cpuUsPerRequest: +median(v.cpuUs).toFixed(1),
      oneAtATime: { p50Ms: +median(v.p50One).toFixed(3), p99Ms: +median(v.p99One).toFixed(3) },
      errors: v.errors,
    };
  }
  const { isthmus, haproxy } = summary[kind];
  if (haproxy)
    ratios[kind] = {
      isthmusVsHaproxyRps: +(isthmus.rps / haproxy.rps).toFixed(3),
      // Per round as well as of the medians: each round's two runs are next to each other in time.
      isthmusVsHaproxyRpsPerRound: byPath.isthmus.rps.map((x, i) => +(x / byPath.haproxy.rps[i]).toFixed(3)),
      isthmusVsHaproxyCpuPerRequest: +(isthmus.cpuUsPerRequest / haproxy.cpuUsPerRequest).toFixed(3),
      isthmusAddedP50MsOneAtATime: +(isthmus.oneAtATime.p50Ms - haproxy.oneAtATime.p50Ms).toFixed(3),
    };
}
console.log(
  JSON.stringify({
    name: 'h2',
    loadGenerator: useH2load ? 'h2load' : 'node',
    rounds,
    seconds,
    clients,
    streams,
    haproxyThreads,
    ...summary,
    ratios,
  }),
);
process.exit(0);
