// `isthmus demo`: three federated regions on loopback (dc1 127.0.1.1, dc2 127.0.2.1, dc3 127.0.3.1),
// each server and gateway its own process, demo services behind sidecars (web in dc1 calls api in
// dc2, which calls db in dc3; web also tries db directly, which an intention denies), and a traffic
// generator. Stopping it stops every process it started.
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

    // Services: db in dc3; api in dc2 calls db; web in dc1 calls api, and tries db directly.
    const [h1, h2, h3] = DCS.map((d) => d.host);
    const dbPort = await app(h3, 9090, (_q, r) => r.end(JSON.stringify({ service: 'db', dc: 'dc3', rows: 42 }) + '\n'));
    const apiPort = await app(h2, 9090, (_q, r) => {
      // api -> db through api's sidecar upstream on 127.0.2.1:9191.
      http
        .get({ host: h2, port: 9191, path: '/', agent: false, timeout: 3000 }, (res) => {
          let body = '';
          res.on('data', (d) => (body += d));
          res.on('end', () => r.end(JSON.stringify({ service: 'api', dc: 'dc2', db: body.trim() }) + '\n'));
        })
        .on('error', (e) => {
          r.statusCode = 502;
          r.end(JSON.stringify({ service: 'api', error: `db unreachable: ${e.message}` }) + '\n');
        });
    });
    const sidecar = (host: string, name: string, appPort: number, sidecarPort: number, upstreams: { name: string; dc: string; port: number }[]) => ({
      Name: name,
      Address: host,
      Port: appPort,
      Connect: {
        SidecarService: {
          Address: host,
          Port: sidecarPort,
          Proxy: {
            LocalServiceAddress: host,
            Config: { protocol: 'http' },
            Upstreams: upstreams.map((u) => ({ DestinationName: u.name, Datacenter: u.dc, LocalBindAddress: host, LocalBindPort: u.port })),
          },
        },
      },
    });
    await api(h3, 'PUT', '/v1/agent/service/register', sidecar(h3, 'db', dbPort, 21000, []));
    await api(h2, 'PUT', '/v1/agent/service/register', sidecar(h2, 'api', apiPort, 21000, [{ name: 'db', dc: 'dc3', port: 9191 }]));
    await api(
      h1,
      'PUT',
      '/v1/agent/service/register',
      sidecar(h1, 'web', 9090, 21000, [
        { name: 'api', dc: 'dc2', port: 9191 },
        { name: 'db', dc: 'dc3', port: 9192 },
      ]),
    );
    opts.say('  starting sidecars: web (dc1), api (dc2), db (dc3)');
    await run('sidecar db', ['connect', 'proxy', '--sidecar-for', 'db', '--grpc-addr', `${h3}:8502`, '--log-level', 'warn'], /Sidecar for db/);
    await run('sidecar api', ['connect', 'proxy', '--sidecar-for', 'api', '--grpc-addr', `${h2}:8502`, '--log-level', 'warn'], /Sidecar for api/);
    await run('sidecar web', ['connect', 'proxy', '--sidecar-for', 'web', '--grpc-addr', `${h1}:8502`, '--log-level', 'warn'], /Sidecar for web/);

    // Intentions, written at the primary: web may call api, api may call db, web may not call db.
    await api(h1, 'PUT', '/v1/connect/intentions/exact?source=web&destination=api', { Action: 'allow', Description: 'the storefront calls the API' });
    await api(h1, 'PUT', '/v1/connect/intentions/exact?source=api&destination=db', { Action: 'allow', Description: 'the API reads the database' });
    await api(h2, 'PUT', '/v1/connect/intentions/exact?source=web&destination=db&wait-for=all', {
      Action: 'deny',
      Description: 'the storefront must go through the API',
    });

    // Traffic: web -> api -> db most of the time, and now and then web -> db (denied).
    const rate = opts.rate ?? 4;
    let n = 0;
    const hit = (path: string, port: number) => {
      const c = (counts[path] ??= { ok: 0, refused: 0 });
      http
        .get({ host: h1, port, path: '/', agent: false, timeout: 3000 }, (res) => {
          res.resume();
          res.on('end', () => (res.statusCode === 200 ? c.ok++ : c.refused++));
        })
        .on('error', () => c.refused++);
    };
    if (rate > 0) {
      trafficTimer = setInterval(
        () => {
          n++;
          hit('web -> api -> db', 9191);
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
    stop,
  };
}
