// The soak's mesh: three federated DCs on their own loopback addresses, every part its own process
// from the built CLI (per DC an `isthmus server` and one or more `isthmus gateway`s; `isthmus
// connect proxy` sidecars; small apps), wired as the demo wires its services: web in dc1 calls api in
// dc2 and db in dc3 through web's sidecar, the gateways of both DCs, and the callee's sidecar.
// Processes are started through the test harness (startCli, runCli) and tracked here, so every one of
// them is stopped at the end, on Ctrl-C, and (with SIGKILL) when the bench process exits any other way.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { api, runCli, startCli, tempDir } from '../../test/harness/server-process.js';
import { freePortOn } from '../../test/harness/regions.js';
import { until as waitUntil } from '../../test/harness/until.js';

export type ProcKind = 'server' | 'gateway' | 'sidecar' | 'app';

export interface SoakProc {
  name: string;
  dc: string;
  kind: ProcKind;
  child: ChildProcess;
  output(): string;
  /** Set when the process exited before the soak stopped it. */
  exited?: { code: number | null; signal: string | null; at: number };
}

export interface SoakDc {
  dc: string;
  host: string;
  /** host:port of the HTTP API. */
  http: string;
  url: string;
  grpc: string;
}

export interface SoakPath {
  /** e.g. "web -> api@dc2". */
  name: string;
  /** web's upstream listener for it. */
  host: string;
  port: number;
  /** What the app at the other end answers. */
  expect: { service: string; dc: string };
  /** The callee's sidecar inbound listener (to see which leaf it serves). */
  inbound: { host: string; port: number };
}

export interface SoakMesh {
  dcs: SoakDc[];
  procs: SoakProc[];
  paths: SoakPath[];
  /** Stops every process (sidecars and apps first, servers last) and removes the data dirs. */
  stop(): Promise<void>;
}

export interface SoakMeshOptions {
  /** One loopback address per DC; the first DC is the primary. */
  hosts: string[];
  /** Gateways per DC, in DC order. */
  gateways: number[];
  say(line: string): void;
}

const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));
const procs: SoakProc[] = [];
const dataDirs: string[] = [];
let stopping = false;

function track(name: string, dc: string, kind: ProcKind, child: ChildProcess, output: () => string): SoakProc {
  const p: SoakProc = { name, dc, kind, child, output };
  procs.push(p);
  child.once('exit', (code, signal) => {
    if (!stopping) p.exited = { code, signal, at: Date.now() };
  });
  return p;
}

/** Direct children of this process, by /proc (catches one that started but never became ready). */
function ownChildren(): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === process.pid) out.push(Number(d));
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

/** Last resort, synchronous (for process 'exit'): SIGKILL every process this one started and that still runs. */
export function killEverythingNow(): void {
  stopping = true;
  for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  for (const pid of ownChildren()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  for (const d of dataDirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

async function stopProc(p: SoakProc): Promise<void> {
  const c = p.child;
  if (c.exitCode !== null || c.signalCode !== null) return;
  const gone = new Promise<void>((r) => c.once('exit', () => r()));
  c.kill('SIGTERM');
  const t = setTimeout(() => c.kill('SIGKILL'), 5000);
  await gone;
  clearTimeout(t);
}

/** Stops every tracked process, callers first and servers last, each given 5 s before SIGKILL. */
export async function stopEverything(): Promise<void> {
  stopping = true;
  const order: ProcKind[] = ['sidecar', 'app', 'gateway', 'server'];
  for (const kind of order) await Promise.all(procs.filter((p) => p.kind === kind).map(stopProc));
  for (const pid of ownChildren()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  for (const d of dataDirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

const until = <T>(what: string, f: () => Promise<T | undefined | false>, ms = 30_000): Promise<T> => waitUntil(what, f, ms, 200);

async function cli(name: string, dc: string, kind: ProcKind, args: string[], ready: RegExp): Promise<SoakProc> {
  const p = await startCli(args, ready);
  return track(name, dc, kind, p.child, p.output);
}

/** A soak app (benchmarks/support/soak-app.ts) in its own process; resolves with its port. */
function startApp(service: string, dc: string, host: string): Promise<{ proc: SoakProc; port: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', here('./soak-app.ts'), service, dc, host], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stderr!.on('data', (d) => (out += d));
  const proc = track(`app ${service}`, dc, 'app', child, () => out);
  return new Promise((resolve, reject) => {
    let line = '';
    child.stdout!.on('data', (d) => {
      line += d;
      const m = /^\{.*\}$/m.exec(line);
      if (m) resolve({ proc, port: (JSON.parse(m[0]) as { port: number }).port });
    });
    child.once('exit', (code) => reject(new Error(`app ${service} exited (${code}) before listening: ${out}`)));
  });
}

export async function startSoakMesh(opts: SoakMeshOptions): Promise<SoakMesh> {
  const names = opts.hosts.map((_, i) => `dc${i + 1}`);
  const dcs: SoakDc[] = [];
  for (const [i, dc] of names.entries()) {
    const host = opts.hosts[i];
    const ports = { http: await freePortOn(host), grpc: await freePortOn(host), fed: await freePortOn(host) };
    const dataDir = tempDir(`isthmus-soak-${dc}-`);
    dataDirs.push(dataDir);
    const extra: string[] = [];
    if (i > 0) {
      const t = await runCli(['federation', 'token', '--dc', dc, '--http-addr', dcs[0].http]);
      if (t.code !== 0) throw new Error(`federation token for ${dc} failed: ${t.stderr}`);
      extra.push('--join-token', t.stdout.trim());
    }
    opts.say(`  ${dc} on ${host}: server, ${opts.gateways[i]} gateway(s)`);
    const s = { dc, host, http: `${host}:${ports.http}`, url: `http://${host}:${ports.http}`, grpc: `${host}:${ports.grpc}` };
    await cli(
      `server ${dc}`,
      dc,
      'server',
      [
        'server',
        '--dc',
        dc,
        '--http-addr',
        s.http,
        '--grpc-addr',
        s.grpc,
        '--grpc-tls-addr',
        `${host}:${ports.fed}`,
        '--data-dir',
        dataDir,
        '--acl-default-policy',
        'allow',
        '--log-level',
        'warn',
        ...extra,
      ],
      /HTTP API: http:\/\//,
    );
    dcs.push(s);
    for (let n = 1; n <= opts.gateways[i]; n++) {
      const id = `mesh-gateway-${dc}-${n}`;
      await cli(
        `gateway ${dc}-${n}`,
        dc,
        'gateway',
        ['gateway', '--dc', dc, '--id', id, '--addr', `${host}:${await freePortOn(host)}`, '--server', s.grpc, '--log-level', 'warn'],
        /Mesh gateway .* listening/,
      );
    }
    // The gateways are in the catalog before the next DC asks for a token that names them.
    await until(`${dc} gateways registered`, async () => {
      const r = await api(s.url, 'GET', '/v1/health/service/mesh-gateway?passing');
      return Array.isArray(r.body) && r.body.length === opts.gateways[i];
    });
  }
  for (const d of dcs) {
    await until(`${d.dc} linked to every peer`, async () => {
      const r = await api(d.url, 'GET', '/v1/federation/status');
      return r.body?.Peers?.length === dcs.length - 1 && r.body.Peers.every((p: { State: string }) => p.State === 'up');
    });
  }

  // Services: api in dc2 and db in dc3 (HTTP apps behind sidecars); web in dc1 calls both.
  const [d1, d2, d3] = dcs;
  const callees = [
    { service: 'api', d: d2 },
    { service: 'db', d: d3 },
  ];
  const inbound: Record<string, { host: string; port: number }> = {};
  for (const { service, d } of callees) {
    const app = await startApp(service, d.dc, d.host);
    inbound[service] = { host: d.host, port: await freePortOn(d.host) };
    const r = await api(d.url, 'PUT', '/v1/agent/service/register', {
      Name: service,
      Address: d.host,
      Port: app.port,
      Connect: { SidecarService: { Address: d.host, Port: inbound[service].port, Proxy: { LocalServiceAddress: d.host, Config: { protocol: 'http' } } } },
    });
    if (r.status !== 200) throw new Error(`registering ${service} in ${d.dc}: ${r.status} ${JSON.stringify(r.body)}`);
  }
  const upstream = { api: await freePortOn(d1.host), db: await freePortOn(d1.host) };
  const r = await api(d1.url, 'PUT', '/v1/agent/service/register', {
    Name: 'web',
    Address: d1.host,
    Port: 1,
    Connect: {
      SidecarService: {
        Address: d1.host,
        Port: await freePortOn(d1.host),
        Proxy: {
          Upstreams: [
            { DestinationName: 'api', Datacenter: d2.dc, LocalBindAddress: d1.host, LocalBindPort: upstream.api },
            { DestinationName: 'db', Datacenter: d3.dc, LocalBindAddress: d1.host, LocalBindPort: upstream.db },
          ],
        },
      },
    },
  });
  if (r.status !== 200) throw new Error(`registering web in dc1: ${r.status} ${JSON.stringify(r.body)}`);
  opts.say('  sidecars: api (dc2), db (dc3), web (dc1)');
  for (const { service, d } of callees)
    await cli(
      `sidecar ${service}`,
      d.dc,
      'sidecar',
      ['connect', 'proxy', '--sidecar-for', service, '--grpc-addr', d.grpc, '--log-level', 'warn'],
      new RegExp(`Sidecar for ${service}`),
    );
  await cli('sidecar web', d1.dc, 'sidecar', ['connect', 'proxy', '--sidecar-for', 'web', '--grpc-addr', d1.grpc, '--log-level', 'warn'], /Sidecar for web/);

  // The measured path is allowed explicitly, and every DC holds that before the load starts.
  for (const dst of ['api', 'db']) {
    const w = await api(d1.url, 'PUT', `/v1/connect/intentions/exact?source=web&destination=${dst}&wait-for=all`, {
      Action: 'allow',
      Description: 'measured path',
    });
    if (w.status !== 200) throw new Error(`intention web -> ${dst}: ${w.status} ${JSON.stringify(w.body)}`);
  }

  const paths: SoakPath[] = callees.map(({ service, d }) => ({
    name: `web -> ${service}@${d.dc}`,
    host: d1.host,
    port: upstream[service as 'api' | 'db'],
    expect: { service, dc: d.dc },
    inbound: inbound[service],
  }));
  return { dcs, procs, paths, stop: stopEverything };
}
