// The sidecar pair (client sidecar -> mTLS -> server sidecar -> app) beside app-direct and the same
// path through HAProxy (Debian's haproxy: mTLS origination and termination with the same
// certificates, tcp mode, one thread), in one run with alternating rounds. Reports keep-alive
// requests/s with p50/p99 (32 connections: the proxies saturated, so latency there is mostly queueing),
// latency of one connection's requests one after another (what a hop adds to a call when it is not
// queued), new mTLS connections/s, and RSS per 1,000 idle connections.
// Targets: pair >= 1.0x HAProxy's requests/s; added p50 < 0.3 ms per hop; < 8 MB per 1,000 idle.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { childProcesses, cpuMicros } from './support/bench-run.js';
import { freePort } from './support/free-port.js';
import { median, runLoad, type LoadOptions, type LoadResult } from './support/http-load.js';
import { jsonChild } from './support/json-child.js';
import { rssKB } from './support/soak-sample.js';
import { hasWrk, runWrk } from './support/wrk.js';

const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'isthmus-sidecar-bench-'));
const children = childProcesses();

const app = await jsonChild(children, process.execPath, ['--import', 'tsx', here('./support/http-app.ts')]);
const pair = await jsonChild(children, process.execPath, ['--import', 'tsx', here('./support/sidecar-pair.ts'), String(app.info.port), dir]);

const haveHaproxy = spawnSync('haproxy', ['-v']).status === 0;
let haproxyPort = 0;
let haproxyPid = 0;
if (haveHaproxy) {
  haproxyPort = await freePort();
  const inner = await freePort();
  const cfg = `global
  maxconn 8000
  nbthread 1
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend client_side
  bind 127.0.0.1:${haproxyPort}
  default_backend to_server_side
backend to_server_side
  server s1 127.0.0.1:${inner} ssl crt ${dir}/web.pem ca-file ${dir}/root.pem verify required ssl-min-ver TLSv1.3 sni str(api.default.dc1.internal.bench.isthmus)
frontend server_side
  bind 127.0.0.1:${inner} ssl crt ${dir}/api.pem ca-file ${dir}/root.pem verify required ssl-min-ver TLSv1.3
  default_backend app
backend app
  server app 127.0.0.1:${app.info.port}
`;
  writeFileSync(join(dir, 'haproxy.cfg'), cfg);
  const hp = spawn('haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: 'inherit' });
  children.push(hp);
  haproxyPid = hp.pid!;
  hp.once('exit', (code) => {
    console.error(`haproxy exited (${code}); see its messages above`);
    process.exit(1);
  });
  await new Promise((r) => setTimeout(r, 500));
}

const useWrk = hasWrk();
const load = (o: LoadOptions): Promise<LoadResult> => (useWrk ? Promise.resolve(runWrk(o)) : runLoad(o));
const paths: Record<string, number> = { direct: app.info.port, isthmus: pair.info.port, ...(haveHaproxy ? { haproxy: haproxyPort } : {}) };
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const ms = Number(process.env.BENCH_MS ?? 3000);
// The proxy's own CPU per keep-alive request: independent of what else shares the cores.
const pids: Record<string, number> = { isthmus: pair.info.pid, ...(haveHaproxy ? { haproxy: haproxyPid } : {}) };
const res: Record<
  string,
  { rps: number[]; p50: number[]; p99: number[]; p50One: number[]; p99One: number[]; conns: number[]; cpuUs: number[]; errors: number }
> = {};
for (const k of Object.keys(paths)) res[k] = { rps: [], p50: [], p99: [], p50One: [], p99One: [], conns: [], cpuUs: [], errors: 0 };
for (const [, port] of Object.entries(paths)) await load({ url: `http://127.0.0.1:${port}/`, durationMs: 1000 });
for (let r = 0; r < rounds; r++) {
  for (const [name, port] of Object.entries(paths)) {
    const cpuBefore = pids[name] ? cpuMicros(pids[name]) : 0;
    const ka = await load({ url: `http://127.0.0.1:${port}/`, durationMs: ms, connections: 32 });
    if (pids[name] && ka.requests > 0) res[name].cpuUs.push((cpuMicros(pids[name]) - cpuBefore) / ka.requests);
    res[name].rps.push(ka.rps);
    res[name].p50.push(ka.p50Ms);
    res[name].p99.push(ka.p99Ms);
    res[name].errors += ka.errors;
    const one = await load({ url: `http://127.0.0.1:${port}/`, durationMs: ms, connections: 1 });
    res[name].p50One.push(one.p50Ms);
    res[name].p99One.push(one.p99Ms);
    res[name].errors += one.errors;
    const nc = await load({ url: `http://127.0.0.1:${port}/`, durationMs: ms, connections: 16, headers: { Connection: 'close' } });
    res[name].conns.push(nc.rps);
  }
}

async function idleCost(port: number, pid: number): Promise<number> {
  const before = rssKB(pid);
  const socks: net.Socket[] = [];
  for (let i = 0; i < 1000; i++) {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    socks.push(s);
    if (i % 100 === 99) await new Promise((r) => setTimeout(r, 50));
  }
  await new Promise((r) => setTimeout(r, 2000));
  const after = rssKB(pid);
  socks.forEach((s) => s.destroy());
  await new Promise((r) => setTimeout(r, 1000));
  return (after - before) / 1024;
}
const idle: Record<string, number> = { isthmus: +(await idleCost(pair.info.port, pair.info.pid)).toFixed(1) };
if (haveHaproxy) idle.haproxy = +(await idleCost(haproxyPort, haproxyPid)).toFixed(1);

const summary: Record<string, unknown> = {};
for (const [k, v] of Object.entries(res)) {
  summary[k] = {
    rps: Math.round(median(v.rps)),
    p50Ms: +median(v.p50).toFixed(3),
    p99Ms: +median(v.p99).toFixed(3),
    oneConnection: { p50Ms: +median(v.p50One).toFixed(3), p99Ms: +median(v.p99One).toFixed(3) },
    newConnsPerSec: Math.round(median(v.conns)),
    ...(v.cpuUs.length ? { cpuUsPerRequest: +median(v.cpuUs).toFixed(1) } : {}),
    errors: v.errors,
    ...(idle[k] !== undefined ? { idleMBper1000: idle[k] } : {}),
  };
}
const s = summary as Record<string, { rps: number; p50Ms: number; oneConnection: { p50Ms: number }; newConnsPerSec: number; cpuUsPerRequest: number }>;
const addedOne = (k: string) => +((s[k].oneConnection.p50Ms - s.direct.oneConnection.p50Ms) / 2).toFixed(3);
console.log(
  JSON.stringify({
    name: 'sidecar',
    loadGenerator: useWrk ? 'wrk' : 'node',
    rounds,
    ...summary,
    ratios: haveHaproxy
      ? {
          rpsVsHaproxy: +(s.isthmus.rps / s.haproxy.rps).toFixed(3),
          newConnsVsHaproxy: +(s.isthmus.newConnsPerSec / s.haproxy.newConnsPerSec).toFixed(3),
          cpuPerRequestVsHaproxy: +(s.isthmus.cpuUsPerRequest / s.haproxy.cpuUsPerRequest).toFixed(3),
          addedP50PerHopMs: +((s.isthmus.p50Ms - s.direct.p50Ms) / 2).toFixed(3),
          addedP50PerHopMsOneConnection: addedOne('isthmus'),
          haproxyAddedP50PerHopMsOneConnection: addedOne('haproxy'),
        }
      : { addedP50PerHopMs: +((s.isthmus.p50Ms - s.direct.p50Ms) / 2).toFixed(3), addedP50PerHopMsOneConnection: addedOne('isthmus') },
  }),
);
process.exit(0);
