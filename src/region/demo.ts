// `isthmus demo`: three federated regions on loopback (dc1 127.0.1.1, dc2 127.0.2.1, dc3 127.0.3.1),
// each server and gateway its own process, demo services behind sidecars (web in dc1 calls api in
// dc2, which calls db in dc3; web also tries db directly, which an intention denies), config entries
// that split api's calls between two versions and fail them over to dc3, and a traffic generator. Stopping it stops every process it started.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, IsthmusError } from '../core/errors.js';
import type { Logger } from '../telemetry/index.js';

const BIN = fileURLToPath(new URL('../../bin/isthmus.js', import.meta.url));

export interface DemoOptions {
  /** Data dirs go here (a fresh temp dir by default, removed at stop). */
  dataDir?: string;
  logger: Logger;
  /** Requests per second of the traffic generator (0: none). */
  rate?: number;
  /** Progress lines for the operator. */
  say: (line: string) => void;
}

export interface Demo {
  dashboardUrl: string;
  dcs: { dc: string; http: string; grpc: string; gateway: string }[];
  /** Requests made by the traffic generator, by path and outcome. */
  traffic(): Record<string, { ok: number; refused: number }>;
  /** Answered api calls by where they landed ("dc2 v1"), since the start. */
  landed(): Record<string, number>;
  stop(): Promise<void>;
}

interface Child {
  name: string;
  proc: ChildProcess;
  output(): string;
}

const DCS = [
  { dc: 'dc1', host: '127.0.1.1' },
  { dc: 'dc2', host: '127.0.2.1' },
  { dc: 'dc3', host: '127.0.3.1' },
];

export async function startDemo(opts: DemoOptions): Promise<Demo> {
  const children: Child[] = [];
  const servers: http.Server[] = [];
  const ownDir = !opts.dataDir;
  const root = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'isthmus-demo-'));
  let trafficTimer: NodeJS.Timeout | undefined;
  const counts: Record<string, { ok: number; refused: number }> = {};
  const landed: Record<string, number> = {};

  const run = (name: string, args: string[], ready: RegExp, env: NodeJS.ProcessEnv = {}): Promise<Child> =>
    new Promise((resolve, reject) => {
      const proc = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      const child: Child = { name, proc, output: () => out };
      children.push(child);
      const timer = setTimeout(() => reject(new IsthmusError(ErrorCodes.TIMEOUT, `${name} did not start within 30 s:\n${out.slice(-2000)}`)), 30_000);
      const onData = (d: Buffer) => {
        out += d;
        if (out.length > 1 << 20) out = out.slice(-(1 << 19));
        if (ready.test(out)) {
          clearTimeout(timer);
          resolve(child);
        }
      };
      proc.stdout!.on('data', onData);
      proc.stderr!.on('data', onData);
      proc.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new IsthmusError(ErrorCodes.UNAVAILABLE, `${name} exited (${code ?? signal}) before it was ready:\n${out.slice(-2000)}`));
      });
    });

  const cli = async (args: string[]): Promise<string> => {
    const c = await new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      const p = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (err += d));
      p.once('exit', (code) => resolve({ code, out, err }));
    });
    if (c.code !== 0) throw new IsthmusError(ErrorCodes.UNAVAILABLE, `isthmus ${args.slice(0, 2).join(' ')} failed: ${c.err.trim() || c.out.trim()}`);
    return c.out.trim();
  };

  const api = async (host: string, method: string, path: string, body?: unknown) => {
    const res = await fetch(`http://${host}:8500${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    if (!res.ok) throw new IsthmusError(ErrorCodes.UNAVAILABLE, `${method} ${path} at ${host}: ${res.status} ${text}`);
    return text ? (JSON.parse(text) as unknown) : undefined;
  };

  const waitFor = async (what: string, check: () => Promise<boolean>, ms = 30_000) => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (await check().catch(() => false)) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new IsthmusError(ErrorCodes.TIMEOUT, `the demo gave up waiting for ${what}`);
  };

  const app = async (host: string, port: number, handler: http.RequestListener) => {
    const s = http.createServer(handler);
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(port, host, () => resolve());
    });
    servers.push(s);
    return (s.address() as AddressInfo).port;
  };

  const stop = async () => {
    clearInterval(trafficTimer);
    for (const s of servers) {
      s.closeAllConnections();
      s.close();
    }
    // Sidecars and gateways first, servers last, each given time to close its ports.
    for (const c of [...children].reverse()) {
      if (c.proc.exitCode !== null || c.proc.signalCode !== null) continue;
      const gone = new Promise<void>((r) => c.proc.once('exit', () => r()));
      c.proc.kill('SIGTERM');
      const t = setTimeout(() => c.proc.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(t);
    }
    if (ownDir) rmSync(root, { recursive: true, force: true });
  };

  try {
    // Regions, one after another: the primary first, each secondary joining with a token.
    for (const [i, { dc, host }] of DCS.entries()) {
      opts.say(`  starting ${dc} on ${host}: server and mesh gateway`);
      const extra: string[] = [];
      if (i > 0) extra.push('--join-token', await cli(['federation', 'token', '--dc', dc, '--http-addr', `${DCS[0].host}:8500`]));
      await run(
        `server ${dc}`,
        [
          'server',
          '--dc',
          dc,
          '--http-addr',
          `${host}:8500`,
          '--data-dir',
          join(root, dc),
          '--acl-default-policy',
          'allow',
          '--federation-heartbeat',
          '2s',
          '--log-level',
          'warn',
          ...extra,
        ],
        /HTTP API: http:\/\//,
      );
      await run(
        `gateway ${dc}`,
        ['gateway', '--dc', dc, '--addr', `${host}:8443`, '--server', `${host}:8502`, '--log-level', 'warn'],
        /Mesh gateway .* listening/,
      );
      await waitFor(
        `the gateway of ${dc} in its catalog`,
        async () => ((await api(host, 'GET', '/v1/health/service/mesh-gateway?passing')) as unknown[]).length === 1,
      );
    }
    opts.say('  waiting for every pair of regions to link');
    for (const { host } of DCS) {
      await waitFor('federation links', async () => {
        const s = (await api(host, 'GET', '/v1/federation/status')) as { Peers: { State: string }[] };
        return s.Peers.length === DCS.length - 1 && s.Peers.every((p) => p.State === 'up');
      });
    }

    // Services: db in dc3; api in dc2 (two instances, versions v1 and v2) and in dc3 (v1), each
    // calling db; web in dc1 calls api, and tries db directly.
    const [h1, h2, h3] = DCS.map((d) => d.host);
    const dbPort = await app(h3, 9090, (_q, r) => r.end(JSON.stringify({ service: 'db', dc: 'dc3', rows: 42 }) + '\n'));
    // An api instance answers with its DC and version, after asking db through its own sidecar upstream.
    const apiApp = (host: string, port: number, dc: string, version: string, dbUpstream: number) =>
      app(host, port, (_q, r) => {
        http
          .get({ host, port: dbUpstream, path: '/', agent: false, timeout: 3000 }, (res) => {
            let body = '';
            res.on('data', (d) => (body += d));
            res.on('end', () => r.end(JSON.stringify({ service: 'api', dc, version, db: body.trim() }) + '\n'));
          })
          .on('error', (e) => {
            r.statusCode = 502;
            r.end(JSON.stringify({ service: 'api', dc, version, error: `db unreachable: ${e.message}` }) + '\n');
          });
      });
    const apiV1 = await apiApp(h2, 9090, 'dc2', 'v1', 9191);
    const apiV2 = await apiApp(h2, 9093, 'dc2', 'v2', 9194);
    const apiDc3 = await apiApp(h3, 9093, 'dc3', 'v1', 9194);
    interface DemoService {
      host: string;
      name: string;
      id?: string;
      appPort: number;
      sidecarPort: number;
      version?: string;
      upstreams: { name: string; dc: string; port: number }[];
    }
    // The app's registration carries an HTTP check every second: a failing app leaves its callers'
    // endpoints within about a second (its sidecar's alias check follows it).
    const sidecar = (s: DemoService) => ({
      Name: s.name,
      ...(s.id ? { ID: s.id } : {}),
      Address: s.host,
      Port: s.appPort,
      ...(s.version ? { Meta: { version: s.version } } : {}),
      Check: { HTTP: `http://${s.host}:${s.appPort}/`, Interval: '1s', Timeout: '1s' },
      Connect: {
        SidecarService: {
          Address: s.host,
          Port: s.sidecarPort,
          Proxy: {
            LocalServiceAddress: s.host,
            Config: { protocol: 'http' },
            Upstreams: s.upstreams.map((u) => ({ DestinationName: u.name, Datacenter: u.dc, LocalBindAddress: s.host, LocalBindPort: u.port })),
          },
        },
      },
    });
    const services: DemoService[] = [
      { host: h3, name: 'db', appPort: dbPort, sidecarPort: 21000, upstreams: [] },
      { host: h2, name: 'api', appPort: apiV1, sidecarPort: 21000, version: 'v1', upstreams: [{ name: 'db', dc: 'dc3', port: 9191 }] },
      { host: h2, name: 'api', id: 'api-v2', appPort: apiV2, sidecarPort: 21001, version: 'v2', upstreams: [{ name: 'db', dc: 'dc3', port: 9194 }] },
      { host: h3, name: 'api', appPort: apiDc3, sidecarPort: 21001, version: 'v1', upstreams: [{ name: 'db', dc: 'dc3', port: 9194 }] },
      {
        host: h1,
        name: 'web',
        appPort: 9090,
        sidecarPort: 21000,
        upstreams: [
          { name: 'api', dc: 'dc2', port: 9191 },
          { name: 'db', dc: 'dc3', port: 9192 },
        ],
      },
    ];
    // Routing, written at the primary: api speaks http; its resolver splits it into v1 and v2 and
    // fails v1 over to dc3 (v2 to dc3's v1); a router sends `x-canary: 1` to v2 and the rest
    // through a 90/10 split; web's calls are retried on a failed connection.
    await api(h1, 'PUT', '/v1/config', { Kind: 'service-defaults', Name: 'api', Protocol: 'http' });
    await api(h1, 'PUT', '/v1/config', {
      Kind: 'service-resolver',
      Name: 'api',
      DefaultSubset: 'v1',
      Subsets: { v1: { Filter: 'Service.Meta.version == v1' }, v2: { Filter: 'Service.Meta.version == v2' } },
      Failover: { v1: { Datacenters: ['dc3'] }, v2: { Targets: [{ Datacenter: 'dc3', ServiceSubset: 'v1' }] } },
      ConnectTimeout: '2s',
    });
    await api(h1, 'PUT', '/v1/config', {
      Kind: 'service-splitter',
      Name: 'api',
      Splits: [
        { Weight: 90, ServiceSubset: 'v1' },
        { Weight: 10, ServiceSubset: 'v2', ResponseHeaders: { Set: { 'x-isthmus-split': 'canary' } } },
      ],
    });
    await api(h1, 'PUT', '/v1/config', {
      Kind: 'service-router',
      Name: 'api',
      Routes: [
        {
          Match: { HTTP: { Header: [{ Name: 'x-canary', Exact: '1' }] } },
          Destination: { ServiceSubset: 'v2', NumRetries: 2, RetryOnConnectFailure: true },
        },
        { Match: { HTTP: { PathPrefix: '/' } }, Destination: { NumRetries: 2, RetryOnConnectFailure: true, RetryOnStatusCodes: [502, 503] } },
      ],
    });
    for (const s of services) await api(s.host, 'PUT', '/v1/agent/service/register', sidecar(s));
    opts.say('  starting sidecars: web (dc1), api v1 and v2 (dc2), api v1 (dc3), db (dc3)');
    for (const s of services) {
      const id = s.id ?? s.name;
      const dc = DCS.find((d) => d.host === s.host)!.dc;
      await run(`sidecar ${id} (${dc})`, ['connect', 'proxy', '--sidecar-for', id, '--grpc-addr', `${s.host}:8502`, '--log-level', 'warn'], /Sidecar for /);
    }

    // Intentions, written at the primary: web may call api, api may call db, web may not call db.
    await api(h1, 'PUT', '/v1/connect/intentions/exact?source=web&destination=api', { Action: 'allow', Description: 'the storefront calls the API' });
    await api(h1, 'PUT', '/v1/connect/intentions/exact?source=api&destination=db', { Action: 'allow', Description: 'the API reads the database' });
    await api(h2, 'PUT', '/v1/connect/intentions/exact?source=web&destination=db&wait-for=all', {
      Action: 'deny',
      Description: 'the storefront must go through the API',
    });

    // Traffic: web -> api -> db most of the time (every seventh call asks for the canary), and now
    // and then web -> db (denied). Where each api call landed is counted from its answer.
    const rate = opts.rate ?? 4;
    let n = 0;
    const hit = (path: string, port: number, headers: Record<string, string> = {}) => {
      const c = (counts[path] ??= { ok: 0, refused: 0 });
      http
        .get({ host: h1, port, path: '/', headers, agent: false, timeout: 3000 }, (res) => {
          let body = '';
          res.on('data', (d) => (body += d));
          res.on('end', () => {
            if (res.statusCode !== 200) return void c.refused++;
            c.ok++;
            const a = parseAnswer(body);
            if (a) landed[`${a.dc} ${a.version}`] = (landed[`${a.dc} ${a.version}`] ?? 0) + 1;
          });
        })
        .on('error', () => c.refused++);
    };
    if (rate > 0) {
      trafficTimer = setInterval(
        () => {
          n++;
          if (n % 7 === 0) hit('web -> api (canary) -> db', 9191, { 'x-canary': '1' });
          else hit('web -> api -> db', 9191);
          if (n % 5 === 0) hit('web -> db (denied)', 9192);
        },
        Math.max(10, Math.round(1000 / rate)),
      );
      trafficTimer.unref();
    }
  } catch (err) {
    opts.logger.error('demo failed to start', { error: err });
    await stop();
    throw err;
  }

  return {
    dashboardUrl: `http://${DCS[0].host}:8500/ui`,
    dcs: DCS.map(({ dc, host }) => ({ dc, http: `${host}:8500`, grpc: `${host}:8502`, gateway: `${host}:8443` })),
    traffic: () => JSON.parse(JSON.stringify(counts)),
    landed: () => ({ ...landed }),
    stop,
  };
}

/** The DC and version an api answer names, if it is one. */
function parseAnswer(body: string): { dc: string; version: string } | undefined {
  try {
    const a = JSON.parse(body) as { dc?: unknown; version?: unknown };
    return typeof a.dc === 'string' && typeof a.version === 'string' ? { dc: a.dc, version: a.version } : undefined;
  } catch {
    return undefined;
  }
}
