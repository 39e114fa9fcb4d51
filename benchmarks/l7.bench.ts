// The L7 client sidecar with a discovery chain to walk per request, beside the plain L7 pair, in one
// run with alternating rounds. Both go client sidecar (http upstream) -> mTLS -> server sidecar (http
// inbound) -> app; `plain` has the chain of an http service with no routing entries (the default
// resolver, one target), `routed` a service-router of 10 routes (PathPrefix, PathExact, PathRegex,
// Header and Methods matches) whose last takes every request, so all ten are evaluated, then a 50/50
// service-splitter over two subsets of a service-resolver (support/l7-pair.ts). Reports keep-alive
// requests/s with p50/p99 (32 connections), the pair process's CPU per request, the latency of one
// connection's requests one after another, and routed / plain. Target: routed >= 0.9x plain's requests/s.
import { fileURLToPath } from 'node:url';
import { arg, childProcesses, cpuMicros } from './support/bench-run.js';
import { median, runLoad, type LoadOptions, type LoadResult } from './support/http-load.js';
import { jsonChild } from './support/json-child.js';
import { L7_REQUEST } from './support/l7-request.js';
import { hasWrk, runWrk } from './support/wrk.js';

const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));
const children = childProcesses();
const seconds = Number(arg('seconds', '5'));
const rounds = Number(arg('rounds', '3'));

const app = await jsonChild(children, process.execPath, ['--import', 'tsx', here('./support/http-app.ts')]);
const pair = await jsonChild(children, process.execPath, ['--import', 'tsx', here('./support/l7-pair.ts'), String(app.info.port)]);
const paths: Record<string, number> = { plain: pair.info.plain, routed: pair.info.routed };

const useWrk = hasWrk();
const load = (o: LoadOptions): Promise<LoadResult> => (useWrk ? Promise.resolve(runWrk(o)) : runLoad(o));
const url = (port: number) => `http://127.0.0.1:${port}${L7_REQUEST.path}`;
const headers = L7_REQUEST.headers;

type Acc = { rps: number[]; p50: number[]; p99: number[]; cpuUs: number[]; p50One: number[]; p99One: number[]; errors: number };
const res: Record<string, Acc> = {};
for (const k of Object.keys(paths)) res[k] = { rps: [], p50: [], p99: [], cpuUs: [], p50One: [], p99One: [], errors: 0 };
// Warm the connections, the chain walkers' compiled patterns and the JIT on both paths.
for (const port of Object.values(paths)) await load({ url: url(port), headers, durationMs: 1000, connections: 32 });
for (let r = 0; r < rounds; r++) {
  const order = Object.keys(paths);
  if (r % 2) order.reverse();
  for (const k of order) {
    const cpu0 = cpuMicros(pair.info.pid);
    const ka = await load({ url: url(paths[k]), headers, durationMs: seconds * 1000, connections: 32 });
    if (ka.requests > 0) res[k].cpuUs.push((cpuMicros(pair.info.pid) - cpu0) / ka.requests);
    res[k].rps.push(ka.rps);
    res[k].p50.push(ka.p50Ms);
    res[k].p99.push(ka.p99Ms);
    res[k].errors += ka.errors;
    const one = await load({ url: url(paths[k]), headers, durationMs: (seconds * 1000) / 2, connections: 1 });
    res[k].p50One.push(one.p50Ms);
    res[k].p99One.push(one.p99Ms);
    res[k].errors += one.errors;
  }
}

const summary: Record<
  string,
  { rps: number; p50Ms: number; p99Ms: number; cpuUsPerRequest: number; oneConnection: { p50Ms: number; p99Ms: number }; errors: number }
> = {};
for (const [k, v] of Object.entries(res)) {
  summary[k] = {
    rps: Math.round(median(v.rps)),
    p50Ms: +median(v.p50).toFixed(3),
    p99Ms: +median(v.p99).toFixed(3),
    cpuUsPerRequest: +median(v.cpuUs).toFixed(1),
    oneConnection: { p50Ms: +median(v.p50One).toFixed(3), p99Ms: +median(v.p99One).toFixed(3) },
    errors: v.errors,
  };
}
const { plain, routed } = summary;
// Per round as well as of the medians: each round's two runs are next to each other in time.
const perRound = res.routed.rps.map((x, i) => +(x / res.plain.rps[i]).toFixed(3));
console.log(
  JSON.stringify({
    name: 'l7',
    loadGenerator: useWrk ? 'wrk' : 'node',
    rounds,
    seconds,
    routes: pair.info.routerRoutes - 1,
    plain,
    routed,
    ratios: {
      routedVsPlainRps: +(routed.rps / plain.rps).toFixed(3),
      routedVsPlainRpsPerRound: perRound,
      routedAddedCpuUsPerRequest: +(routed.cpuUsPerRequest - plain.cpuUsPerRequest).toFixed(1),
      routedAddedP50MsOneConnection: +(routed.oneConnection.p50Ms - plain.oneConnection.p50Ms).toFixed(3),
    },
    target: { routedVsPlainRps: 0.9 },
  }),
);
process.exit(0);
