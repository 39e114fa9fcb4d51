// Soak: three federated DCs on 127.0.21.1 / 127.0.22.1 / 127.0.23.1, every part its own process
// from the built CLI (`npm run build` first): per DC a server and one or two mesh gateways (2, 2, 1
// by default), sidecars for web (dc1), api (dc2) and db (dc3), and the api and db apps. For the whole
// run (10 minutes by default; `--duration 60s` or SOAK_DURATION=60s):
// - steady cross-DC HTTP: web's sidecar -> dc1 gateway -> remote gateway -> callee's sidecar -> app,
//   open loop, SOAK_RPS requests/s on keep-alive connections and SOAK_NEW_RPS on a new connection each;
// - intention churn at the primary (create, update or delete on unrelated pairs every SOAK_CHURN_MS),
//   toggles that must not change the measured path (every SOAK_TOGGLE_MS, written at each DC in
//   turn), and a convergence probe every 30 s;
// - one root rotation (`isthmus ca rotate`) halfway;
// - RSS (/proc/<pid>/status VmRSS) and open descriptors (/proc/<pid>/fd) of every process every
//   SOAK_SAMPLE_MS (5 s).
// At the end: requests, errors (each kept), p50/p99, per process RSS and descriptors start/max/end,
// whether every acknowledged intention write is in every DC, the rotation's outcome. Prints a table
// and one JSON line, saves everything (samples and errors too) in benchmarks/results/soak-*.json,
// and exits 1 if a request failed, a write was lost or failed, or a process died.
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { cpus, loadavg } from 'node:os';
import { join, relative } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { runCli } from '../test/harness/server-process.js';
import { IntentionChurn, type Probe } from './support/soak-churn.js';
import { killEverythingNow, startSoakMesh, stopEverything, type SoakMesh } from './support/soak-federation.js';
import { percentile, SoakLoad } from './support/soak-load.js';
import { fdKinds, sampleProc, slope, type ProcSample } from './support/soak-sample.js';

// ---- options ----

function option(name: string): string | undefined {
  const args = process.argv.slice(2);
  for (let i = 0; i < args.length; i++) {
    if (args[i] === `--${name}`) return args[i + 1];
    if (args[i].startsWith(`--${name}=`)) return args[i].slice(name.length + 3);
  }
  return undefined;
}

function parseDuration(v: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(v.trim());
  if (!m) throw new Error(`--duration / SOAK_DURATION must be a duration such as 90s, 10m or 1h, got "${v}"`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
}

const durationMs = parseDuration(option('duration') ?? process.env.SOAK_DURATION ?? '10m');
const keepAliveRps = Number(option('rps') ?? process.env.SOAK_RPS ?? 200);
const newConnRps = Number(option('new-rps') ?? process.env.SOAK_NEW_RPS ?? 40);
const churnMs = Number(process.env.SOAK_CHURN_MS ?? 3000);
const toggleMs = Number(process.env.SOAK_TOGGLE_MS ?? 20_000);
const probeEveryMs = 30_000;
const sampleMs = Number(process.env.SOAK_SAMPLE_MS ?? 5000);
const gateways = (process.env.SOAK_GATEWAYS ?? '2,2,1').split(',').map(Number);
const HOSTS = ['127.0.21.1', '127.0.22.1', '127.0.23.1'];
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const say = (line: string) => process.stderr.write(line + '\n');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// The processes run the build, as an operator's would: it must be there, and it should be current.
if (!existsSync(join(ROOT, 'dist/cli/main.js'))) throw new Error('no build in dist/: run `npm run build` first');
{
  const stale: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (p.endsWith('.ts') && !p.endsWith('.test.ts') && !p.includes('/testing/')) {
        const out = join(ROOT, 'dist', relative(join(ROOT, 'src'), p).replace(/\.ts$/, '.js'));
        if (!existsSync(out) || statSync(out).mtimeMs < statSync(p).mtimeMs) stale.push(relative(ROOT, p));
      }
    }
  };
  walk(join(ROOT, 'src'));
  if (stale.length)
    say(
      `note: dist/ is older than ${stale.length} source file(s) (${stale.slice(0, 5).join(', ')}${stale.length > 5 ? ', ...' : ''}); the soak runs the build as it is`,
    );
}

// ---- cleanup on every way out ----

process.on('exit', killEverythingNow);
let phase: 'setup' | 'run' | 'end' = 'setup';
const interrupt = new AbortController();
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    if (interrupt.signal.aborted) return;
    say(`${sig}: stopping every process the soak started`);
    interrupt.abort();
    // While running, the main flow stops the load and saves what it has; otherwise stop here.
    if (phase !== 'run') void stopEverything().finally(() => process.exit(130));
  });
}

// ---- checks done through the mesh ----

function get(host: string, port: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port, path: '/', agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/**
 * The serial number and issuer of the leaf each callee's sidecar serves: one HTTP call straight to its
 * inbound listener with web's leaf (allowed, as web's calls are), reading the certificate it presented.
 */
async function servedLeaves(mesh: SoakMesh): Promise<Record<string, { serial: string; issuer: string } | { error: string }>> {
  const out: Record<string, { serial: string; issuer: string } | { error: string }> = {};
  const leaf = (await (await fetch(`${mesh.dcs[0].url}/v1/agent/connect/ca/leaf/web`)).json()) as { CertPEM: string; PrivateKeyPEM: string; Chain?: string[] };
  const cert = [leaf.CertPEM, ...(leaf.Chain ?? [])].map((c) => c.trim()).join('\n') + '\n';
  for (const p of mesh.paths) {
    out[p.expect.service] = await new Promise((resolve) => {
      let served: { serial: string; issuer: string } | undefined;
      let answer = '';
      const s = tls.connect(
        { host: p.inbound.host, port: p.inbound.port, key: leaf.PrivateKeyPEM, cert, rejectUnauthorized: false, minVersion: 'TLSv1.3' },
        () => {
          const c = s.getPeerCertificate();
          served = { serial: c.serialNumber, issuer: String(c.issuer?.CN ?? JSON.stringify(c.issuer)) };
          s.write(`GET / HTTP/1.1\r\nHost: ${p.expect.service}\r\nConnection: close\r\n\r\n`);
        },
      );
      s.on('data', (d) => (answer += d));
      s.on('end', () =>
        resolve(served && answer.startsWith('HTTP/1.1 200') ? served : { error: `no 200 from ${p.expect.service}'s sidecar: ${answer.slice(0, 100)}` }),
      );
      s.setTimeout(5000, () => s.destroy(new Error('timeout')));
      s.on('error', (e) => resolve({ error: e.message }));
    });
  }
  return out;
}

async function json(url: string): Promise<any> {
  const r = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}

/** Flow records each DC's server received, by verdict (from its isthmus_flows_total). */
async function flowsByVerdict(url: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^isthmus_flows_total\{([^}]*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const verdict = /verdict="([^"]*)"/.exec(m[1])?.[1] ?? '?';
    out[verdict] = (out[verdict] ?? 0) + Number(m[2]);
  }
  return out;
}

/** Flow records of every DC whose verdict was not `allowed` (the evidence for any failed call). */
async function notAllowedFlows(url: string): Promise<unknown[]> {
  const out: unknown[] = [];
  for (const verdict of ['error', 'denied', 'no_route']) {
    const r = (await json(`${url}/v1/flows?dc=all&verdict=${verdict}&limit=500`)) as { Records: Record<string, unknown>[] };
    for (const f of r.Records)
      out.push({
        verdict,
        dc: f.dc,
        hop: f.hop,
        reason: f.reason,
        traceId: f.traceId,
        start: new Date(f.startTime as number).toISOString(),
        durationMs: f.durationMs,
        source: (f.source as { service?: string })?.service,
        destination: (f.destination as { service?: string })?.service,
        sni: f.sni,
        http: f.http,
      });
  }
  return out;
}

// ---- setup ----

const startedAt = new Date();
const machine = { cores: cpus().length, cpu: cpus()[0]?.model, node: process.version, loadavgAtStart: loadavg().map((x) => +x.toFixed(2)) };
say(
  `soak: ${durationMs / 1000} s, ${keepAliveRps} req/s keep-alive + ${newConnRps} req/s on new connections, churn every ${churnMs} ms, toggles every ${toggleMs} ms, samples every ${sampleMs} ms`,
);
say('starting three DCs:');
const mesh = await startSoakMesh({ hosts: HOSTS, gateways, say });
for (const p of mesh.paths) {
  const end = Date.now() + 30_000;
  for (;;) {
    const r = await get(p.host, p.port).catch((e: Error) => ({ status: 0, body: e.message }));
    if (r.status === 200 && r.body.includes(`"${p.expect.service}"`)) break;
    if (Date.now() > end) throw new Error(`${p.name} never answered: ${r.status} ${r.body}`);
    await sleep(200);
  }
}
say(`mesh up: ${mesh.procs.length} processes; paths ${mesh.paths.map((p) => p.name).join(', ')}`);

// ---- run ----

phase = 'run';
const windowMs = Math.max(10_000, Math.min(60_000, Math.round(durationMs / 10)));
const load = new SoakLoad(mesh.paths, {
  keepAliveRps,
  newConnRps,
  keepAliveConns: Number(process.env.SOAK_KEEPALIVE_CONNS ?? 32),
  timeoutMs: 10_000,
  maxInFlight: 2000,
  windowMs,
});
const churn = new IntentionChurn(mesh.dcs, 10, () => load.elapsedS, 20261123);
const watched = [
  ...mesh.procs.map((p) => ({ name: `${p.name} (${p.dc})`, pid: p.child.pid!, kind: p.kind as string })),
  { name: 'load generator (this process)', pid: process.pid, kind: 'bench' },
];
const samples: Record<string, ProcSample[]> = Object.fromEntries(watched.map((w) => [w.name, []]));
const fdKindsAtStart = Object.fromEntries(watched.map((w) => [w.name, fdKinds(w.pid)]));
const sample = () => {
  const t = load.elapsedS;
  for (const w of watched) {
    const s = sampleProc(w.pid, t);
    if (s) samples[w.name].push(s);
  }
};

load.start();
sample();
const sampler = setInterval(sample, sampleMs);
const leavesBefore = await servedLeaves(mesh);
const rootsBefore = (await json(`${mesh.dcs[0].url}/v1/connect/ca/roots`)) as { ActiveRootID: string };

const probes: Probe[] = [];
let running = true;
const churnLoop = (async () => {
  let nextChurn = 0;
  let nextToggle = toggleMs / 2;
  let nextProbe = probeEveryMs;
  while (running) {
    const ms = load.elapsedS * 1000;
    if (ms >= nextChurn) {
      await churn.step();
      nextChurn += churnMs;
    }
    if (running && ms >= nextToggle) {
      await churn.toggle();
      nextToggle += toggleMs;
    }
    if (running && ms >= nextProbe) {
      probes.push(await churn.probe(10_000));
      nextProbe += probeEveryMs;
    }
    await sleep(50);
  }
})();

interface Rotation {
  t: number;
  ms: number;
  code: number | null;
  output: string;
  newRootId?: string;
}
let rotation: Rotation | undefined;
const rotationDone = (async () => {
  await Promise.race([sleep(durationMs / 2), new Promise((r) => interrupt.signal.addEventListener('abort', r))]);
  if (interrupt.signal.aborted) return;
  const t = load.elapsedS;
  const t0 = performance.now();
  say(`t=${t.toFixed(0)} s: isthmus ca rotate`);
  const r = await runCli(['ca', 'rotate', '--http-addr', mesh.dcs[0].http]);
  rotation = {
    t: +t.toFixed(1),
    ms: Math.round(performance.now() - t0),
    code: r.code,
    output: (r.stdout + r.stderr).trim(),
    newRootId: /\(([^)]+)\)\s*$/.exec(r.stdout.trim())?.[1],
  };
  say(`  ${rotation.output}`);
})();

const progress = setInterval(() => {
  const c = load.count;
  say(
    `t=${load.elapsedS.toFixed(0)} s: ${c.keepalive.ok + c.new.ok} ok, ${c.keepalive.errors + c.new.errors} errors, ${churn.writes} intention writes (${churn.writeErrors.length} failed)`,
  );
}, 60_000);

await Promise.race([sleep(durationMs), new Promise((r) => interrupt.signal.addEventListener('abort', r))]);
phase = 'end';
const elapsedS = load.elapsedS;
sample(); // the end of the load
clearInterval(sampler);
clearInterval(progress);
running = false;
await load.stop();
await churnLoop;
await rotationDone;

// ---- after the load: convergence, rotation, federation ----

let finalProbe: Probe | undefined;
let identical: Awaited<ReturnType<IntentionChurn['identical']>> | undefined;
const roots: Record<string, unknown> = {};
const federation: Record<string, unknown> = {};
const flows: Record<string, unknown> = {};
let flowsNotAllowed: unknown[] = [];
let leavesAfter: Awaited<ReturnType<typeof servedLeaves>> | undefined;
if (!interrupt.signal.aborted) {
  say('load stopped; checking that every DC holds every acknowledged write');
  finalProbe = await churn.probe(30_000);
  identical = await churn.identical();
  for (const d of mesh.dcs) {
    const r = (await json(`${d.url}/v1/connect/ca/roots`).catch((e: Error) => ({ error: e.message }))) as {
      ActiveRootID?: string;
      Roots?: { ID: string; Active: boolean }[];
      error?: string;
    };
    roots[d.dc] = r.error
      ? r
      : { ActiveRootID: r.ActiveRootID, roots: r.Roots?.length, activeIsNew: !!rotation?.newRootId && r.ActiveRootID === rotation.newRootId };
    const s = (await json(`${d.url}/v1/federation/status`).catch((e: Error) => ({ error: e.message }))) as {
      Peers?: { Datacenter: string; State: string; ReplicationLagMs: number }[];
      error?: string;
    };
    federation[d.dc] = s.error ? s : s.Peers?.map((p) => ({ dc: p.Datacenter, state: p.State, lagMs: p.ReplicationLagMs }));
    flows[d.dc] = await flowsByVerdict(d.url).catch((e: Error) => ({ error: e.message }));
  }
  leavesAfter = await servedLeaves(mesh).catch((e: Error) => ({ error: { error: e.message } }));
  flowsNotAllowed = await notAllowedFlows(mesh.dcs[0].url).catch((e: Error) => [{ error: e.message }]);
}

// Logged warnings and errors of every process, and the processes that died during the run.
const logs = Object.fromEntries(
  mesh.procs.map((p) => {
    const lines = p
      .output()
      .split('\n')
      .filter((l) => /"level":"(warn|error)"/.test(l));
    return [`${p.name} (${p.dc})`, { warnOrError: lines.length, last: lines.slice(-5) }];
  }),
);
const died = mesh.procs.filter((p) => p.exited).map((p) => ({ name: `${p.name} (${p.dc})`, ...p.exited, output: p.output().slice(-2000) }));
const loadavgAtEnd = loadavg().map((x) => +x.toFixed(2));
say('stopping every process');
await stopEverything();

// ---- figures ----

const mb = (kb: number) => +(kb / 1024).toFixed(1);
const warmAt = Math.min(elapsedS, Math.max(60, elapsedS * 0.2));
const processes = watched.map((w) => {
  const s = samples[w.name];
  if (s.length === 0) return { name: w.name, pid: w.pid, samples: 0 };
  const first = s[0];
  const last = s[s.length - 1];
  const warm = s.find((x) => x.t >= warmAt) ?? last;
  const half = s.filter((x) => x.t >= elapsedS / 2);
  return {
    name: w.name,
    pid: w.pid,
    samples: s.length,
    rssMB: {
      start: mb(first.rssKB),
      max: mb(Math.max(...s.map((x) => x.rssKB))),
      end: mb(last.rssKB),
      growth: mb(last.rssKB - first.rssKB),
      growthAfterWarmup: mb(last.rssKB - warm.rssKB),
      slopeLastHalfMBperHour: +((slope(half.map((x) => ({ t: x.t, y: x.rssKB }))) * 3600) / 1024).toFixed(1),
    },
    fds: { start: first.fds, max: Math.max(...s.map((x) => x.fds)), end: last.fds },
    cpuSeconds: +((last.cpuTicks - first.cpuTicks) / 100).toFixed(1),
    cpuPercentOfOneCore: +(((last.cpuTicks - first.cpuTicks) / 100 / Math.max(1, last.t - first.t)) * 100).toFixed(1),
    fdKindsStart: fdKindsAtStart[w.name],
  };
});
const all = [...load.lat.keepalive, ...load.lat.new].sort((a, b) => a - b);
const ka = [...load.lat.keepalive].sort((a, b) => a - b);
const nc = [...load.lat.new].sort((a, b) => a - b);
const lat = (xs: number[]) => ({
  p50: +percentile(xs, 50).toFixed(2),
  p99: +percentile(xs, 99).toFixed(2),
  p999: +percentile(xs, 99.9).toFixed(2),
  max: +(xs[xs.length - 1] ?? 0).toFixed(1),
});
// The same after the warm-up (the first minute; the first window in a run of under two minutes).
const steadyFromS = elapsedS >= 120 ? 60 : windowMs / 1000;
const steady = load.windows
  .filter((_, i) => (i * windowMs) / 1000 >= steadyFromS)
  .flatMap((w) => w.lat)
  .sort((a, b) => a - b);
const c = load.count;
const requests = c.keepalive.sent + c.new.sent;
const errors = c.keepalive.errors + c.new.errors;
const errorKinds: Record<string, number> = {};
for (const e of load.errors) {
  const k = `${e.path} ${e.mode}: ${e.error.replace(/\d+/g, 'N')}`;
  errorKinds[k] = (errorKinds[k] ?? 0) + 1;
}
const writeMs = [...churn.writeMs].sort((a, b) => a - b);
const lost = finalProbe?.differences ?? [];
const leafRotated = leavesAfter
  ? Object.fromEntries(
      Object.entries(leavesBefore).map(([k, v]) => [
        k,
        'serial' in v && 'serial' in (leavesAfter![k] ?? {}) ? (leavesAfter![k] as { serial: string }).serial !== v.serial : false,
      ]),
    )
  : {};
const rotationOk =
  !!rotation &&
  rotation.code === 0 &&
  Object.values(roots).every((r) => (r as { activeIsNew?: boolean }).activeIsNew) &&
  Object.values(leafRotated).every(Boolean);
const ok =
  !interrupt.signal.aborted &&
  errors === 0 &&
  load.notSent === 0 &&
  churn.writeErrors.length === 0 &&
  lost.length === 0 &&
  !!identical?.same &&
  died.length === 0 &&
  rotationOk;

const summary = {
  name: 'soak',
  ok,
  ...(interrupt.signal.aborted ? { interrupted: true } : {}),
  durationS: +elapsedS.toFixed(1),
  machine: { ...machine, loadavgAtEnd },
  load: { keepAliveRps, newConnRps, paths: mesh.paths.map((p) => p.name) },
  requests,
  ok200: c.keepalive.ok + c.new.ok,
  errors,
  notSent: load.notSent,
  byMode: { keepalive: c.keepalive, newConnection: c.new },
  latencyMs: { all: lat(all), keepalive: lat(ka), newConnection: lat(nc), [`from${steadyFromS}s`]: lat(steady) },
  errorKinds,
  firstErrors: load.errors.slice(0, 20),
  intentions: {
    writes: churn.writes,
    ops: churn.ops,
    writeErrors: churn.writeErrors.length,
    firstWriteErrors: churn.writeErrors.slice(0, 20),
    writeMs: { p50: +percentile(writeMs, 50).toFixed(1), p99: +percentile(writeMs, 99).toFixed(1), max: +(writeMs[writeMs.length - 1] ?? 0).toFixed(1) },
    probes: probes.length,
    probesConverged: probes.filter((p) => p.convergedMs !== null).length,
    probeConvergedMsMax: Math.max(0, ...probes.map((p) => p.convergedMs ?? 0)),
    finalConvergedMs: finalProbe?.convergedMs ?? null,
    lostAcknowledgedWrites: lost,
    uncertainPairs: [...churn.uncertain],
    dcsIdentical: identical?.same ?? null,
    intentionsPerDc: identical?.counts ?? null,
  },
  rotation: {
    ...rotation,
    rootBefore: rootsBefore.ActiveRootID,
    roots,
    servedLeafBefore: leavesBefore,
    servedLeafAfter: leavesAfter,
    servedLeafChanged: leafRotated,
    ok: rotationOk,
  },
  federation,
  flowsByVerdict: flows,
  flowsNotAllowed: flowsNotAllowed.slice(0, 50),
  processes,
  died,
  logs,
};

const rows = processes.map((p) =>
  'rssMB' in p && p.rssMB
    ? `${p.name.padEnd(34)} ${String(p.rssMB.start).padStart(7)} ${String(p.rssMB.max).padStart(7)} ${String(p.rssMB.end).padStart(7)} ${String(p.rssMB.growth).padStart(7)} ${String(p.rssMB.slopeLastHalfMBperHour).padStart(8)}   ${String(p.fds.start).padStart(4)} ${String(p.fds.max).padStart(4)} ${String(p.fds.end).padStart(4)}  ${String(p.cpuPercentOfOneCore).padStart(5)}`
    : `${p.name.padEnd(34)} (no samples)`,
);
say('');
say(
  `soak ${ok ? 'passed' : interrupt.signal.aborted ? 'INTERRUPTED' : 'FAILED'}: ${elapsedS.toFixed(0)} s, ${requests} requests, ${errors} errors, ${load.notSent} not sent; p50 ${lat(all).p50} ms, p99 ${lat(all).p99} ms (from ${steadyFromS} s on: ${lat(steady).p50} / ${lat(steady).p99} ms)`,
);
say(
  `intention writes ${churn.writes} (${churn.writeErrors.length} failed), lost ${lost.length}, DCs identical ${identical?.same}; rotation ${rotationOk ? 'ok' : 'NOT ok'}; processes died ${died.length}`,
);
say(`${'process'.padEnd(34)} ${'RSS MB: start'.padStart(7)}   max     end  growth  MB/h(2nd half)  fd: start max end  CPU %`);
for (const r of rows) say(r);
for (const [k, n] of Object.entries(errorKinds)) say(`  error x${n}: ${k}`);
for (const w of churn.writeErrors.slice(0, 10)) say(`  write error: ${JSON.stringify(w)}`);
for (const d of lost) say(`  lost: ${JSON.stringify(d)}`);

const resultsDir = join(ROOT, 'benchmarks', 'results');
mkdirSync(resultsDir, { recursive: true });
const file = join(resultsDir, `soak-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
writeFileSync(
  file,
  JSON.stringify(
    {
      ...summary,
      flowsNotAllowed,
      startedAt: startedAt.toISOString(),
      errorsAll: load.errors,
      writeErrorsAll: churn.writeErrors,
      probesAll: probes,
      timeline: load.windows.map((w, i) => ({
        fromS: (i * windowMs) / 1000,
        requests: w.requests,
        errors: w.errors,
        p50: +percentile(
          [...w.lat].sort((a, b) => a - b),
          50,
        ).toFixed(2),
        p99: +percentile(
          [...w.lat].sort((a, b) => a - b),
          99,
        ).toFixed(2),
      })),
      samples,
    },
    null,
    1,
  ),
);
say(`saved ${relative(ROOT, file)}`);
console.log(
  JSON.stringify({
    ...summary,
    processes: processes.map((p) => ({ ...p, fdKindsStart: undefined })),
    logs: undefined,
    flowsNotAllowed: flowsNotAllowed.length,
    file: relative(ROOT, file),
  }),
);
process.exit(ok ? 0 : 1);
