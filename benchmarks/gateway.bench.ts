// The mesh gateway beside HAProxy (tcp mode, req.ssl_sni) and nginx (stream, ssl_preread), all
// routing by SNI to the same TLS 1.3 P-256 nginx backend, and the backend reached directly, in one
// run with alternating rounds (the order rotates every round). Per path: keep-alive requests/s and
// p99, new TLS connections/s (Connection: close; resumed, and full handshakes against a backend port
// that issues no tickets), 1 MiB GETs in MB/s, one connection streaming a 1 GiB body (MB/s and MB
// per router CPU second), the router's CPU per keep-alive request, per new connection and per 1 MiB
// GET, the machine's idle CPU during each test, and the router's RSS with BENCH_IDLE idle TLS
// connections through it. For a gateway of several workers, the split of the keep-alive test's
// connections between them, counted from /proc (and as the workers report it, where they do). wrk drives the load over HTTPS. The gateway runs
// from the build (`npm run build` and `npm run build:pump` first).
// Gateway configurations side by side, by name (BENCH_GATEWAYS, comma-separated; default
// isthmus,isthmus-ts,isthmus-w2): `isthmus`, then `-w<N>` for a cluster of N workers, `-ts` for the
// TypeScript data path instead of the native pump (pump 'off'; else 'on'), `-plain` for the netio
// fast path off (e.g. isthmus-w2-ts, isthmus-plain). BENCH_GATEWAY_WORKERS=1,2 is short for
// BENCH_GATEWAYS=isthmus,isthmus-w2. BENCH_GATEWAY_NODE runs the gateway on another node binary
// (e.g. Node 24); BENCH_GATEWAY_NODE_ARGS replaces deploy/'s Node options.
// Targets: gateway >= 1.1x HAProxy on keep-alive requests/s, p99 <= 1.0x; 1 MiB GETs >= 1.3x; the
// 1 GiB stream's MB per router CPU second >= 2x; new connections/s (resumed and full) >= 1.0x;
// router CPU per keep-alive request <= 1.0x; < 4 MB per 1,000 idle connections. A table of them,
// PASS or MISS per gateway path, ends the run on stderr.
import { spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, listening } from './support/free-port.js';
import { median } from './support/http-load.js';
import { haveHaproxy, haveNginx, startBackend, startHaproxy, startNginxRouter, writeBackendCerts } from './support/tls-proxies.js';
import { runWrkTls, runWrkTlsAsync, type TlsLoadOptions, type TlsLoadResult } from './support/wrk-tls.js';
import { jsonChild } from './support/json-child.js';
import { rssKB } from './support/soak-sample.js';

const TD = 'bench.isthmus';
const SNI = `api.default.dc1.internal.${TD}`;
const SNI_FULL = `full.default.dc1.internal.${TD}`;
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const ms = Number(process.env.BENCH_MS ?? 3000);
const idleCount = Number(process.env.BENCH_IDLE ?? 9900);

/** One gateway configuration run as a path of its own. */
interface GatewayConfig {
  name: string;
  workers: number;
  pump: 'on' | 'off';
  fastPath: boolean;
}
const GATEWAY_NAME = /^isthmus(?:-w(\d+))?(-ts)?(-plain)?$/;
function gatewayConfig(name: string): GatewayConfig {
  const m = GATEWAY_NAME.exec(name);
  if (!m || (m[1] !== undefined && !(Number(m[1]) >= 1)))
    throw new Error(`BENCH_GATEWAYS: ${JSON.stringify(name)} is not a gateway configuration (isthmus[-w<workers>][-ts][-plain], e.g. isthmus-w2-ts)`);
  return { name, workers: Number(m[1] ?? 1), pump: m[2] ? 'off' : 'on', fastPath: !m[3] };
}
const gatewayNames = process.env.BENCH_GATEWAYS?.split(',').filter(Boolean) ??
  process.env.BENCH_GATEWAY_WORKERS?.split(',').map((w) => (w === '1' ? 'isthmus' : `isthmus-w${w}`)) ?? ['isthmus', 'isthmus-ts', 'isthmus-w2'];
const gateways = gatewayNames.map(gatewayConfig);
const gatewayNode = process.env.BENCH_GATEWAY_NODE ?? process.execPath;
const gatewayNodeVersion = spawnSync(gatewayNode, ['--version'], { encoding: 'utf8' }).stdout?.trim();
if (!gatewayNodeVersion) throw new Error(`BENCH_GATEWAY_NODE: ${gatewayNode} does not run (no answer to --version)`);
const only = process.env.BENCH_PATHS?.split(',');
const TESTS = ['keepalive', 'resumed', 'full', 'bulk', 'stream'] as const;
type Test = (typeof TESTS)[number];
const tests = new Set(process.env.BENCH_TESTS?.split(',') ?? TESTS);
for (const t of tests) if (!(TESTS as readonly string[]).includes(t)) throw new Error(`BENCH_TESTS: no test ${JSON.stringify(t)} (${TESTS.join(', ')})`);

const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));
/** The gateway's Node options in deploy/ (systemd/isthmus-gateway.service, kubernetes/50-gateway.yaml). */
const DEPLOYED_NODE_ARGS = /^Environment=NODE_OPTIONS=(.*)$/m.exec(readFileSync(here('../deploy/systemd/isthmus-gateway.service'), 'utf8'))?.[1] ?? '';
const dir = mkdtempSync(join(tmpdir(), 'isthmus-gateway-bench-'));
// nginx workers (user root or nobody) read the certificates and the bodies from here.
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

/** The whole machine's CPU time from /proc/stat's first line: idle (with iowait) and all, in ticks. */
function machineTicks(): { idle: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number);
  return { idle: f[3] + f[4], total: f.reduce((a, b) => a + b, 0) };
}

/**
 * Established TCP connections on `port` (the router's listening port: the client side) held by each
 * process of the tree, from the socket inodes of /proc/<pid>/net/tcp and the descriptors in
 * /proc/<pid>/fd. A connection passed from one worker to another counts where it is at the moment.
 */
function establishedByPid(root: number, port: number): Map<number, number> {
  const want = new Set<string>();
  for (const table of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = readFileSync(`/proc/${root}/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '01') continue;
      if (parseInt(f[1].slice(f[1].lastIndexOf(':') + 1), 16) === port) want.add(`socket:[${f[9]}]`);
    }
  }
  const out = new Map<number, number>();
  for (const p of tree(root)) {
    let n = 0;
    try {
      for (const fd of readdirSync(`/proc/${p}/fd`)) {
        try {
          if (want.has(readlinkSync(`/proc/${p}/fd/${fd}`))) n++;
        } catch {
          // Closed meanwhile.
        }
      }
    } catch {
      continue; // Gone meanwhile.
    }
    out.set(p, n);
  }
  return out;
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
  /** A gateway's workers (1: a plain Gateway). */
  workers?: number;
  /** A plain Gateway's word on whether the native pump moves its bytes (1) or not (0). */
  nativePump?: number;
  /** A cluster that answers SIGUSR2 with its workers' own counts: the last answer. */
  reports?: { latest?: { pid: number; connections: number }[] };
}
/** Starts one router (a fresh process each call). */
async function startRouter(name: string, tag: string): Promise<Path> {
  const port = await freePort();
  const g = gateways.find((c) => c.name === name);
  if (g) {
    const spec = {
      trustDomain: TD,
      services: { api: backendPorts.resumable, full: backendPorts.full },
      workers: g.workers,
      pump: g.pump,
      fastPath: g.fastPath,
    };
    // As deploy/ runs it (the systemd unit's and the Deployment's NODE_OPTIONS), unless told otherwise.
    const nodeArgs = (process.env.BENCH_GATEWAY_NODE_ARGS ?? DEPLOYED_NODE_ARGS).split(' ').filter(Boolean);
    // ISTHMUS_PUMP too: a cluster's workers take their pump from it.
    const gw = await jsonChild(children, gatewayNode, [...nodeArgs, here('./support/gateway-process.mjs'), String(port), JSON.stringify(spec)], {
      ISTHMUS_PUMP: g.pump,
    });
    const path: Path = { name, port, fullPort: port, pid: gw.info.pid, workers: g.workers, nativePump: gw.info.nativePump };
    if (gw.info.workerReports) {
      const reports: NonNullable<Path['reports']> = (path.reports = {});
      let buf = '';
      gw.proc.stdout!.on('data', (d: Buffer) => {
        buf += d;
        const lines = buf.split('\n');
        buf = lines.pop()!;
        for (const l of lines)
          if (l.includes('workerConnections')) reports.latest = (JSON.parse(l) as { workerConnections: typeof reports.latest }).workerConnections;
      });
    }
    return path;
  }
  const proc = name === 'haproxy' ? startHaproxy(dir, port, routes, `haproxy-${tag}`) : startNginxRouter(dir, port, routes, `nginx-${tag}`);
  children.push(proc);
  await listening(port, 10_000, name);
  return { name, port, fullPort: port, pid: proc.pid };
}

const routers = ['haproxy', 'nginx', ...gateways.map((g) => g.name)].filter(
  (n) => (n !== 'haproxy' || haveHaproxy()) && (n !== 'nginx' || haveNginx()) && (!only || only.includes(n)),
);
const paths: Path[] = [{ name: 'direct', port: backendPorts.resumable, fullPort: backendPorts.full }];
for (const n of routers) paths.push(await startRouter(n, 'load'));
const active = paths.filter((p) => !only || only.includes(p.name));
for (const p of active)
  if (p.workers === 1 && p.nativePump !== (gateways.find((g) => g.name === p.name)!.pump === 'on' ? 1 : 0))
    throw new Error(`${p.name}: the gateway's bytes ${p.nativePump ? 'go' : 'do not go'} through the native pump, against its configuration`);
const stopPid = (pid: number) =>
  new Promise<void>((resolve) => {
    const c = children.find((k) => k.pid === pid);
    if (!c || c.exitCode !== null || c.signalCode !== null) return resolve();
    c.once('exit', () => resolve());
    c.kill('SIGTERM');
  });

// ---- load, alternating ----

/** Each figure of a path, one value per round. */
const figs: Record<string, Record<string, number[]>> = {};
/** The same divided by HAProxy's of the same round. */
const perRound: Record<string, Record<string, number[]>> = {};
/** Per round, the share of the keep-alive test's connections each process of a multi-worker gateway held. */
const splits: Record<string, Record<string, number>[]> = {};
/** The same from what the cluster's workers reported of themselves. */
const reportedSplits: Record<string, Record<string, number>[]> = {};
const errors: Record<string, number> = {};
for (const p of active) {
  figs[p.name] = {};
  perRound[p.name] = {};
  errors[p.name] = 0;
}
const load = (p: Path, o: Partial<TlsLoadOptions>) => runWrkTls({ sni: SNI, host: '127.0.0.1', port: p.port, connections: 32, durationMs: ms, ...o });
const STREAM_BYTES = 1024 ** 3;

/** Shares of a total by process: `primary` (the root), then the workers in the order they were forked (their pids rising). */
function shares(root: number, sums: Map<number, number>): Record<string, number> {
  const total = [...sums.values()].reduce((a, b) => a + b, 0);
  const share = (pid: number) => +((sums.get(pid) ?? 0) / Math.max(1, total)).toFixed(3);
  const out: Record<string, number> = sums.has(root) ? { primary: share(root) } : {};
  [...sums.keys()]
    .filter((pid) => pid !== root)
    .sort((a, b) => a - b)
    .forEach((pid, i) => (out[`w${i + 1}`] = share(pid)));
  return out;
}

/**
 * Samples, every 250 ms until `done` settles, the connections on the path's port per process (from
 * /proc) and, when the cluster answers SIGUSR2, what its workers last reported of themselves.
 */
async function sampleSplit(p: Path, done: Promise<unknown>): Promise<{ outside: Record<string, number>; reported?: Record<string, number> }> {
  const sums = new Map<number, number>();
  const reported = new Map<number, number>();
  let finished = false;
  void done.finally(() => (finished = true));
  while (!finished) {
    if (p.reports) process.kill(p.pid!, 'SIGUSR2');
    await new Promise((r) => setTimeout(r, 250));
    for (const [pid, n] of establishedByPid(p.pid!, p.port)) sums.set(pid, (sums.get(pid) ?? 0) + n);
    for (const w of p.reports?.latest ?? []) reported.set(w.pid, (reported.get(w.pid) ?? 0) + w.connections);
  }
  return { outside: shares(p.pid!, sums), ...(p.reports ? { reported: shares(p.pid!, reported) } : {}) };
}

/** One test on one path: its figures by name. */
async function measure(p: Path, t: Test): Promise<Record<string, number>> {
  const cpu0 = p.pid ? cpuTicks(p.pid) : undefined;
  const m0 = machineTicks();
  let out: Record<string, number>;
  let r: TlsLoadResult;
  const cpu = () => {
    if (!cpu0) return undefined;
    const c = cpuTicks(p.pid!);
    return { us: (c.user + c.sys - cpu0.user - cpu0.sys) * 10_000, userUs: (c.user - cpu0.user) * 10_000 };
  };
  if (t === 'keepalive') {
    const run = runWrkTlsAsync({ sni: SNI, host: '127.0.0.1', port: p.port, connections: 32, durationMs: ms });
    const split = (p.workers ?? 1) > 1 ? sampleSplit(p, run) : undefined;
    r = await run;
    if (split) {
      const got = await split;
      (splits[p.name] ??= []).push(got.outside);
      if (got.reported) (reportedSplits[p.name] ??= []).push(got.reported);
    }
    const c = cpu();
    out = { rps: r.rps, p50Ms: r.p50Ms, p99Ms: r.p99Ms, ...(c && r.requests ? { cpuUsPerReq: c.us / r.requests, userUsPerReq: c.userUs / r.requests } : {}) };
  } else if (t === 'resumed' || t === 'full') {
    r = t === 'resumed' ? load(p, { headers: { Connection: 'close' } }) : load(p, { sni: SNI_FULL, port: p.fullPort, headers: { Connection: 'close' } });
    const c = cpu();
    const key = t === 'resumed' ? 'Resumed' : 'Full';
    out = { [`newConns${key}`]: r.rps, ...(c && r.requests ? { [`cpuUsPerConn${key}`]: c.us / r.requests } : {}) };
  } else if (t === 'bulk') {
    r = load(p, { path: '/1m', connections: 8 });
    const c = cpu();
    out = { bulkMBps: r.mbPerSec, ...(c && r.requests ? { bulkCpuUsPerReq: c.us / r.requests } : {}) };
  } else {
    // One connection, one thread: a single 1 GiB body (a next one on the same connection when it ends
    // early); wrk reads every byte through TLS and counts what each read returns.
    r = load(p, { path: '/1g', connections: 1, threads: 1, timeoutMs: ms + 60_000 });
    const c = cpu();
    const mb = r.bytesRead / 1e6;
    out = {
      streamMBps: r.mbPerSec,
      streamMB: mb,
      ...(c && c.us > 0 ? { streamMBperCpuS: mb / (c.us / 1e6), streamCpuPct: (100 * c.us) / 1000 / ms } : {}),
    };
    // A stream that never answered is an error even when wrk counts none (it only counts whole responses).
    if (r.bytesRead < Math.min(STREAM_BYTES, 1e6)) r = { ...r, errors: r.errors + 1 };
  }
  const m1 = machineTicks();
  out[`machineIdlePct${t[0].toUpperCase()}${t.slice(1)}`] = (100 * (m1.idle - m0.idle)) / Math.max(1, m1.total - m0.total);
  errors[p.name] += r.errors;
  return out;
}

const say = (v: number) => (Math.abs(v) >= 100 ? String(Math.round(v)) : v.toFixed(2));
for (const p of active) load(p, { durationMs: 1000 });
// Test by test, every path back to back (in an order that rotates each round), so a burst of noise
// on the machine falls on neighbours; ratios are also taken within each round, then their median.
const order = TESTS.filter((t) => tests.has(t));
for (let r = 0; r < rounds; r++) {
  for (const t of order) {
    const got: Record<string, Record<string, number>> = {};
    for (let i = 0; i < active.length; i++) {
      const p = active[(i + r) % active.length];
      const f = (got[p.name] = await measure(p, t));
      for (const [k, v] of Object.entries(f)) (figs[p.name][k] ??= []).push(v);
      const split =
        t === 'keepalive' && splits[p.name]
          ? ` split ${JSON.stringify(splits[p.name].at(-1))}${reportedSplits[p.name] ? ` (reported ${JSON.stringify(reportedSplits[p.name].at(-1))})` : ''}`
          : '';
      console.error(
        `round ${r + 1} ${t} ${p.name}: ${Object.entries(f)
          .map(([k, v]) => `${k} ${say(v)}`)
          .join(', ')}${split}`,
      );
    }
    const h = got.haproxy;
    if (h)
      for (const p of active)
        for (const [k, v] of Object.entries(got[p.name])) if (!k.startsWith('machineIdle') && h[k]) (perRound[p.name][k] ??= []).push(v / h[k]);
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
const fig = (v: number) => (Math.abs(v) >= 100 ? Math.round(v) : +v.toFixed(3));
const summary: Record<string, Record<string, unknown>> = {};
for (const p of active) {
  const s: Record<string, unknown> = {};
  for (const [k, xs] of Object.entries(figs[p.name])) s[k] = fig(med(xs));
  if (idle[p.name]) Object.assign(s, { idleConns: idle[p.name].conns, idleMB: idle[p.name].mb, idleMBper1000: idle[p.name].mbPer1000 });
  const g = gateways.find((c) => c.name === p.name);
  if (g) Object.assign(s, { workers: g.workers, pump: g.pump, fastPath: g.fastPath }, p.nativePump !== undefined ? { nativePump: p.nativePump } : {});
  const medians = (xs: Record<string, number>[]) =>
    Object.fromEntries([...new Set(xs.flatMap((x) => Object.keys(x)))].map((k) => [k, +med(xs.map((x) => x[k] ?? 0)).toFixed(3)]));
  if (splits[p.name]) Object.assign(s, { connSplit: medians(splits[p.name]), connSplitPerRound: splits[p.name] });
  if (reportedSplits[p.name]) Object.assign(s, { connSplitReported: medians(reportedSplits[p.name]), connSplitReportedPerRound: reportedSplits[p.name] });
  s.errors = errors[p.name];
  summary[p.name] = s;
}
/** Figures that are not a router's to compare. */
const NOT_RATIOS = /^(machineIdle|streamMB$|idleConns|idleMB$|workers|pump|fastPath|nativePump|connSplit|errors)/;
const ratios: Record<string, Record<string, number>> = {};
const h = summary.haproxy;
if (h) {
  for (const name of [...gateways.map((g) => g.name), 'nginx', 'direct']) {
    const s = summary[name];
    if (!s) continue;
    const r: Record<string, number> = {};
    for (const [k, v] of Object.entries(s)) {
      if (NOT_RATIOS.test(k) || typeof v !== 'number' || typeof h[k] !== 'number' || !h[k]) continue;
      r[k] = +(v / (h[k] as number)).toFixed(3);
      // The same, as the median of the ratios taken within each round.
      if (perRound[name][k]?.length) r[`${k}PerRound`] = +med(perRound[name][k]).toFixed(3);
    }
    ratios[name] = r;
  }
}

// The issue's targets, per gateway path: against HAProxy the median of the per-round ratios.
const TARGETS: { what: string; key: string; vs: 'haproxy' | 'absolute'; pass: (x: number) => boolean; rule: string }[] = [
  { what: 'keep-alive requests/s', key: 'rps', vs: 'haproxy', pass: (x) => x >= 1.1, rule: '>= 1.1x' },
  { what: 'keep-alive p99', key: 'p99Ms', vs: 'haproxy', pass: (x) => x <= 1.0, rule: '<= 1.0x' },
  { what: '1 MiB GETs MB/s', key: 'bulkMBps', vs: 'haproxy', pass: (x) => x >= 1.3, rule: '>= 1.3x' },
  { what: '1 GiB stream MB per CPU s', key: 'streamMBperCpuS', vs: 'haproxy', pass: (x) => x >= 2, rule: '>= 2x' },
  { what: 'new conns/s, resumed', key: 'newConnsResumed', vs: 'haproxy', pass: (x) => x >= 1.0, rule: '>= 1.0x' },
  { what: 'new conns/s, full', key: 'newConnsFull', vs: 'haproxy', pass: (x) => x >= 1.0, rule: '>= 1.0x' },
  { what: 'CPU per keep-alive request', key: 'cpuUsPerReq', vs: 'haproxy', pass: (x) => x <= 1.0, rule: '<= 1.0x' },
  { what: 'MB per 1,000 idle connections', key: 'idleMBper1000', vs: 'absolute', pass: (x) => x < 4, rule: '< 4 MB' },
];
const targets: Record<string, Record<string, { value: number; pass: boolean }>> = {};
const rows: string[][] = [];
for (const g of gateways) {
  const s = summary[g.name];
  if (!s) continue;
  targets[g.name] = {};
  for (const t of TARGETS) {
    const value = t.vs === 'absolute' ? (s[t.key] as number | undefined) : (ratios[g.name]?.[`${t.key}PerRound`] ?? ratios[g.name]?.[t.key]);
    if (value === undefined) continue;
    targets[g.name][t.key] = { value, pass: t.pass(value) };
    rows.push([g.name, t.what, t.rule, t.vs === 'absolute' ? `${value}` : `${value.toFixed(3)}x`, t.pass(value) ? 'PASS' : 'MISS']);
  }
  const split = (x: unknown) =>
    Object.entries(x as Record<string, number>)
      .map(([k, v]) => `${k} ${v}`)
      .join(' ');
  if (s.connSplit) rows.push([g.name, 'keep-alive connection split (/proc)', '', split(s.connSplit), '']);
  if (s.connSplitReported) rows.push([g.name, 'keep-alive connection split (reported)', '', split(s.connSplitReported), '']);
}
console.log(
  JSON.stringify({
    name: 'gateway',
    loadGenerator: 'wrk',
    rounds,
    ms,
    gatewayNode: { bin: gatewayNode, version: gatewayNodeVersion },
    gateways,
    ...summary,
    ratiosVsHaproxy: ratios,
    targets,
  }),
);
if (rows.length) {
  const head = ['path', 'target', 'rule', 'measured', ''];
  const width = head.map((_, i) => Math.max(...[head, ...rows].map((r) => r[i].length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => c.padEnd(width[i]))
      .join('  ')
      .trimEnd();
  console.error(`\ntargets (gateway on Node ${gatewayNodeVersion}; ratios vs HAProxy, median of the per-round ratios)`);
  console.error([line(head), ...rows.map(line)].join('\n'));
}
await stopChildren();
process.exit(0);
