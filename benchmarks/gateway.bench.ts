// The mesh gateway beside HAProxy (tcp mode, req.ssl_sni) and nginx (stream, ssl_preread), all
// routing by SNI to the same TLS 1.3 P-256 nginx backend, and the backend reached directly, in one
// run with alternating rounds (the order rotates every round). Per path: keep-alive requests/s and
// p99, new TLS connections/s (Connection: close; resumed, and full handshakes against a backend port
// that issues no tickets), 1 MiB GETs in MB/s, the router's CPU per keep-alive request, and its RSS
// with BENCH_IDLE idle TLS connections through it. wrk drives the load over HTTPS. The gateway runs
// from the build (`npm run build` first), once as one process and once as a cluster of two workers
// (BENCH_GATEWAY_WORKERS=1,2).
// Targets: gateway >= 1.0x HAProxy on requests/s, bulk MB/s and new connections/s; p99 <= 1.2x
// HAProxy's; < 8 MB per 1,000 idle connections.
import type { ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, listening } from './support/free-port.js';
import { median } from './support/http-load.js';
import { haveHaproxy, haveNginx, startBackend, startHaproxy, startNginxRouter, writeBackendCerts } from './support/tls-proxies.js';
import { runWrkTls, type TlsLoadOptions } from './support/wrk-tls.js';
import { jsonChild } from './support/json-child.js';
import { rssKB } from './support/soak-sample.js';

const TD = 'bench.isthmus';
const SNI = `api.default.dc1.internal.${TD}`;
const SNI_FULL = `full.default.dc1.internal.${TD}`;
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const ms = Number(process.env.BENCH_MS ?? 3000);
const idleCount = Number(process.env.BENCH_IDLE ?? 9900);
/** Gateway configurations run side by side: worker processes each (1: a plain Gateway). */
const gatewayWorkers = (process.env.BENCH_GATEWAY_WORKERS ?? '1,2').split(',').map(Number);
const gatewayName = (w: number) => (w === 1 ? 'isthmus' : `isthmus-w${w}`);
const only = process.env.BENCH_PATHS?.split(',');
const tests = new Set(process.env.BENCH_TESTS?.split(',') ?? ['keepalive', 'resumed', 'full', 'bulk']);

const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));
/** The gateway's Node options in deploy/ (systemd/isthmus-gateway.service, kubernetes/50-gateway.yaml). */
const DEPLOYED_NODE_ARGS = /^Environment=NODE_OPTIONS=(.*)$/m.exec(readFileSync(here('../deploy/systemd/isthmus-gateway.service'), 'utf8'))?.[1] ?? '';
const dir = mkdtempSync(join(tmpdir(), 'isthmus-gateway-bench-'));
// nginx workers (user root or nobody) read the certificates and the 1 MiB file from here.
chmodSync(dir, 0o755);
const children: ChildProcess[] = [];
// SIGTERM, not SIGKILL: an nginx master killed outright leaves its workers running.
process.on('exit', () => children.forEach((c) => c.exitCode === null && c.kill('SIGTERM')));
async function stopChildren(): Promise<void> {
  await Promise.all(
    children
      .filter((c) => c.exitCode === null && c.signalCode === null)
      .map(
        (c) =>
          new Promise((r) => {
            c.once('exit', r);
            c.kill('SIGTERM');
          }),
      ),
  );
}

/** The pid and all its descendants (nginx workers, gateway workers). */
function tree(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      parent.set(Number(d), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // Gone meanwhile.
    }
  }
  const out = [pid];
  for (let i = 0; i < out.length; i++) for (const [c, p] of parent) if (p === out[i]) out.push(c);
  return out;
}

function treeRssKB(pid: number): number {
  let sum = 0;
  for (const p of tree(pid)) {
    try {
      sum += rssKB(p);
    } catch {
      // Gone meanwhile.
    }
  }
  return sum;
}

/** utime and stime of the process tree, in clock ticks (1/100 s). */
function cpuTicks(pid: number): { user: number; sys: number } {
  const sum = { user: 0, sys: 0 };
  for (const p of tree(pid)) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      sum.user += Number(f[11]);
      sum.sys += Number(f[12]);
    } catch {
      // Gone meanwhile.
    }
  }
  return sum;
}

// ---- setup ----

// The gateway runs from the build, as `isthmus gateway` does: it must be there and current.
const built = here('../dist/gateway/gateway-cluster.js');
if (!existsSync(built)) throw new Error('no build of the gateway in dist/: run `npm run build` first');
for (const f of readdirSync(here('../src/gateway')).filter((n) => n.endsWith('.ts') && !n.endsWith('.test.ts'))) {
  const out = here(`../dist/gateway/${f.replace(/\.ts$/, '.js')}`);
  if (!existsSync(out) || statSync(out).mtimeMs < statSync(here(`../src/gateway/${f}`)).mtimeMs)
    throw new Error(`dist/gateway/${basename(out)} is older than src/gateway/${f}: run \`npm run build\` first`);
}

await writeBackendCerts(dir, TD, [SNI, SNI_FULL]);
const backendPorts = { resumable: await freePort(), full: await freePort() };
children.push(startBackend(dir, backendPorts));
await listening(backendPorts.resumable, 10_000, 'the nginx backend');
const routes = [
  { sni: SNI, port: backendPorts.resumable },
  { sni: SNI_FULL, port: backendPorts.full },
];

interface Path {
  name: string;
  port: number;
  fullPort: number;
  pid?: number;
}
/** Starts one router (a fresh process each call). */
async function startRouter(name: string, tag: string): Promise<Path> {
  const port = await freePort();
  if (name.startsWith('isthmus')) {
    const workers = gatewayWorkers.find((w) => gatewayName(w) === name) ?? 1;
    const spec = { trustDomain: TD, services: { api: backendPorts.resumable, full: backendPorts.full }, workers };
    // As deploy/ runs it (the systemd unit's and the Deployment's NODE_OPTIONS), unless told otherwise.
    const nodeArgs = (process.env.BENCH_GATEWAY_NODE_ARGS ?? DEPLOYED_NODE_ARGS).split(' ').filter(Boolean);
    const gw = await jsonChild(children, process.execPath, [...nodeArgs, here('./support/gateway-process.mjs'), String(port), JSON.stringify(spec)]);
    return { name, port, fullPort: port, pid: gw.info.pid };
  }
  const proc = name === 'haproxy' ? startHaproxy(dir, port, routes, `haproxy-${tag}`) : startNginxRouter(dir, port, routes, `nginx-${tag}`);
  children.push(proc);
  await listening(port, 10_000, name);
  return { name, port, fullPort: port, pid: proc.pid };
}

const routers = ['haproxy', 'nginx', ...gatewayWorkers.map(gatewayName)].filter(
  (n) => (n !== 'haproxy' || haveHaproxy()) && (n !== 'nginx' || haveNginx()) && (!only || only.includes(n)),
);
const paths: Path[] = [{ name: 'direct', port: backendPorts.resumable, fullPort: backendPorts.full }];
for (const n of routers) paths.push(await startRouter(n, 'load'));
const active = paths.filter((p) => !only || only.includes(p.name));
const stopPid = (pid: number) =>
  new Promise<void>((resolve) => {
    const c = children.find((k) => k.pid === pid);
    if (!c || c.exitCode !== null || c.signalCode !== null) return resolve();
    c.once('exit', () => resolve());
    c.kill('SIGTERM');
  });

// ---- load, alternating ----

interface Figures {
  rps: number[];
  p50: number[];
  p99: number[];
  resumed: number[];
  full: number[];
  bulk: number[];
  cpuUs: number[];
  userUs: number[];
  errors: number;
}
const res: Record<string, Figures> = {};
for (const p of active) res[p.name] = { rps: [], p50: [], p99: [], resumed: [], full: [], bulk: [], cpuUs: [], userUs: [], errors: 0 };
const load = (p: Path, o: Partial<TlsLoadOptions>) => runWrkTls({ sni: SNI, host: '127.0.0.1', port: p.port, connections: 32, durationMs: ms, ...o });

for (const p of active) load(p, { durationMs: 1000 });
// Test by test, every path back to back (in an order that rotates each round), so a burst of noise
// on the machine falls on neighbours; ratios are also taken within each round, then their median.
type Test = 'keepalive' | 'resumed' | 'full' | 'bulk';
const order: Test[] = (['keepalive', 'resumed', 'full', 'bulk'] as const).filter((t) => tests.has(t));
const perRound: Record<string, Record<Test, number[]>> = {};
for (const p of active) perRound[p.name] = { keepalive: [], resumed: [], full: [], bulk: [] };
for (let r = 0; r < rounds; r++) {
  for (const t of order) {
    const got: Record<string, number> = {};
    for (let i = 0; i < active.length; i++) {
      const p = active[(i + r) % active.length];
      const f = res[p.name];
      if (t === 'keepalive') {
        const t0 = p.pid ? cpuTicks(p.pid) : undefined;
        const ka = load(p, {});
        if (p.pid && t0 && ka.requests) {
          const t1 = cpuTicks(p.pid);
          f.cpuUs.push(((t1.user + t1.sys - t0.user - t0.sys) * 10_000) / ka.requests);
          f.userUs.push(((t1.user - t0.user) * 10_000) / ka.requests);
        }
        f.rps.push(ka.rps);
        f.p50.push(ka.p50Ms);
        f.p99.push(ka.p99Ms);
        f.errors += ka.errors;
        got[p.name] = ka.rps;
        console.error(
          `round ${r + 1} ${p.name}: ${Math.round(ka.rps)} req/s p99 ${ka.p99Ms} ms${f.cpuUs.length ? `, ${f.cpuUs[f.cpuUs.length - 1].toFixed(1)} µs CPU/req (user ${f.userUs[f.userUs.length - 1].toFixed(1)})` : ''}`,
        );
      } else if (t === 'resumed' || t === 'full') {
        const nc =
          t === 'resumed' ? load(p, { headers: { Connection: 'close' } }) : load(p, { sni: SNI_FULL, port: p.fullPort, headers: { Connection: 'close' } });
        (t === 'resumed' ? f.resumed : f.full).push(nc.rps);
        f.errors += nc.errors;
        got[p.name] = nc.rps;
        console.error(`round ${r + 1} ${p.name}: ${Math.round(nc.rps)} new conns/s (${t})`);
      } else {
        const bulk = load(p, { path: '/1m', connections: 8 });
        f.bulk.push(bulk.mbPerSec);
        f.errors += bulk.errors;
        got[p.name] = bulk.mbPerSec;
        console.error(`round ${r + 1} ${p.name}: ${bulk.mbPerSec.toFixed(0)} MB/s`);
      }
    }
    if (got.haproxy) for (const p of active) perRound[p.name][t].push(got[p.name] / got.haproxy);
  }
}

// ---- idle connections ----

const idle: Record<string, { conns: number; mb: number; mbPer1000: number }> = {};
if (idleCount > 0) {
  // Fresh routers, so what the load left behind (and a garbage collector giving it back) is not counted.
  for (const p of active) if (p.pid) await stopPid(p.pid);
  for (const n of routers) {
    const p = await startRouter(n, 'idle');
    await new Promise((r) => setTimeout(r, 1000));
    const before = treeRssKB(p.pid!);
    const client = await jsonChild(children, process.execPath, [
      '--import',
      'tsx',
      here('./support/idle-tls.ts'),
      '127.0.0.1',
      String(p.port),
      String(idleCount),
      SNI,
    ]);
    await new Promise((r) => setTimeout(r, 3000));
    const after = treeRssKB(p.pid!);
    const mb = (after - before) / 1024;
    idle[p.name] = { conns: client.info.open, mb: +mb.toFixed(1), mbPer1000: +((mb * 1000) / Math.max(1, client.info.open)).toFixed(2) };
    console.error(
      `idle ${p.name}: ${client.info.open} open (${client.info.failed} failed), RSS ${(before / 1024).toFixed(1)} -> ${(after / 1024).toFixed(1)} MB`,
    );
    client.proc.kill('SIGTERM');
    await new Promise((r) => client.proc.once('exit', r));
    await stopPid(p.pid!);
  }
}

// ---- summary ----

const med = (xs: number[]) => (xs.length ? median(xs) : 0);
const summary: Record<string, Record<string, number>> = {};
for (const p of active) {
  const f = res[p.name];
  summary[p.name] = {
    rps: Math.round(med(f.rps)),
    p50Ms: +med(f.p50).toFixed(3),
    p99Ms: +med(f.p99).toFixed(3),
    newConnsResumed: Math.round(med(f.resumed)),
    newConnsFull: Math.round(med(f.full)),
    bulkMBps: Math.round(med(f.bulk)),
    ...(f.cpuUs.length ? { cpuUsPerReq: +median(f.cpuUs).toFixed(1), userUsPerReq: +median(f.userUs).toFixed(1) } : {}),
    ...(idle[p.name] ? { idleConns: idle[p.name].conns, idleMB: idle[p.name].mb, idleMBper1000: idle[p.name].mbPer1000 } : {}),
    errors: f.errors,
  };
}
const ratios: Record<string, Record<string, number>> = {};
const h = summary.haproxy;
if (h) {
  for (const name of [...gatewayWorkers.map(gatewayName), 'nginx', 'direct']) {
    const s = summary[name];
    if (!s) continue;
    ratios[name] = {
      rps: +(s.rps / h.rps).toFixed(3),
      p99: +(s.p99Ms / h.p99Ms).toFixed(3),
      newConnsResumed: +(s.newConnsResumed / h.newConnsResumed).toFixed(3),
      newConnsFull: +(s.newConnsFull / h.newConnsFull).toFixed(3),
      bulk: +(s.bulkMBps / h.bulkMBps).toFixed(3),
      // The same, as the median of the ratios taken within each round.
      rpsPerRound: +med(perRound[name].keepalive).toFixed(3),
      newConnsResumedPerRound: +med(perRound[name].resumed).toFixed(3),
      newConnsFullPerRound: +med(perRound[name].full).toFixed(3),
      bulkPerRound: +med(perRound[name].bulk).toFixed(3),
    };
  }
}
console.log(JSON.stringify({ name: 'gateway', loadGenerator: 'wrk', rounds, ms, gatewayWorkers, ...summary, ratiosVsHaproxy: ratios }));
await stopChildren();
process.exit(0);
