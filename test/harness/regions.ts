// Three (or more) federated regions on loopback, every part its own process: per DC an
// `isthmus server` on 127.0.X.1 and one or more `isthmus gateway`s whose WAN side sits behind a
// WanLink, so tests can add latency, cut or blackhole a region. The first DC is the primary; the
// others join it with tokens made by the CLI, as an operator would. Every process of a DC can get
// extra environment (a skewed clock, say), and a DC can run several gateways.
import { readFileSync, rmSync } from 'node:fs';
import { api, freePort, runCli, startCli, tempDir } from './server-process.js';
import { until } from './until.js';
import { WanLink } from './wan-link.js';

export interface GatewayProc {
  id: string;
  pid: number;
  /** LAN address (what the DC's own sidecars and server dial). */
  lan: string;
  /** WAN address other DCs dial: the WanLink in front of it. */
  wan: string;
  link: WanLink;
  output(): string;
  stop(): Promise<void>;
  kill9(): Promise<void>;
}

export interface ServerProc {
  pid: number;
  http: string;
  url: string;
  grpc: string;
  fed: string;
  output(): string;
  stop(): Promise<void>;
  kill9(): Promise<void>;
}

export interface RegionProcs {
  dc: string;
  host: string;
  dataDir: string;
  server: ServerProc;
  gateways: GatewayProc[];
  /** Extra environment every process of this DC runs with (its server, gateways, and what tests start). */
  env: NodeJS.ProcessEnv;
  /** Restarts the server with the same ports, data and environment (after stop or kill9). */
  restart(): Promise<void>;
  /** Starts one more gateway in this DC (stopped with the federation). */
  addGateway(): Promise<GatewayProc>;
}

export interface FederationOptions {
  /** Gateways per DC: one number for all, or per DC name (default 1). */
  gatewaysPerDc?: number | Record<string, number>;
  /** Loopback address of each DC in the order of the names (default 127.0.1.1, 127.0.2.1, ...). */
  hosts?: string[];
  /** Extra environment for every process of a DC, by DC name. */
  env?: Record<string, NodeJS.ProcessEnv>;
}

export interface Federation3 {
  dcs: Record<string, RegionProcs>;
  stop(): Promise<void>;
}

/** A port free right now on `host`. */
export function freePortOn(host: string): Promise<number> {
  return freePort(host);
}

function killable(p: { child: import('node:child_process').ChildProcess; stop(): Promise<void> }) {
  return async () => {
    if (p.child.exitCode === null && p.child.signalCode === null) {
      const gone = new Promise<void>((r) => p.child.once('exit', () => r()));
      p.child.kill('SIGKILL');
      await gone;
    }
  };
}

async function startServerProc(
  dc: string,
  host: string,
  ports: { http: number; grpc: number; fed: number },
  dataDir: string,
  extra: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<ServerProc> {
  const p = await startCli(
    [
      'server',
      '--dc',
      dc,
      '--http-addr',
      `${host}:${ports.http}`,
      '--grpc-addr',
      `${host}:${ports.grpc}`,
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
    { ISTHMUS_FEDERATION_HEARTBEAT: '500ms', ...env },
  );
  return {
    pid: p.child.pid!,
    http: `${host}:${ports.http}`,
    url: `http://${host}:${ports.http}`,
    grpc: `${host}:${ports.grpc}`,
    fed: `${host}:${ports.fed}`,
    output: p.output,
    stop: p.stop,
    kill9: killable(p),
  };
}

export async function startGateway(dc: string, host: string, serverGrpc: string, n: number, env: NodeJS.ProcessEnv = {}): Promise<GatewayProc> {
  const lanPort = await freePortOn(host);
  const link = new WanLink({ listen: { host }, target: { host, port: lanPort } });
  await link.start();
  const id = `mesh-gateway-${dc}-${n}`;
  const p = await startCli(
    ['gateway', '--dc', dc, '--id', id, '--addr', `${host}:${lanPort}`, '--wan-addr', link.address, '--server', serverGrpc, '--log-level', 'warn'],
    /Mesh gateway .* listening/,
    env,
  );
  return {
    id,
    pid: p.child.pid!,
    lan: `${host}:${lanPort}`,
    wan: link.address,
    link,
    output: p.output,
    stop: async () => {
      await p.stop();
      await link.stop();
    },
    kill9: killable(p),
  };
}

/** Starts `names` (default dc1..dc3) on 127.0.1.1, 127.0.2.1, ... (or opts.hosts); the first is the primary. */
export async function startFederation(names = ['dc1', 'dc2', 'dc3'], opts: FederationOptions = {}): Promise<Federation3> {
  const dcs: Record<string, RegionProcs> = {};
  const stops: (() => Promise<unknown>)[] = [];
  try {
    for (const [i, dc] of names.entries()) {
      const host = opts.hosts?.[i] ?? `127.0.${i + 1}.1`;
      const env = opts.env?.[dc] ?? {};
      const perDc = typeof opts.gatewaysPerDc === 'number' ? opts.gatewaysPerDc : (opts.gatewaysPerDc?.[dc] ?? 1);
      const ports = { http: await freePortOn(host), grpc: await freePortOn(host), fed: await freePortOn(host) };
      const dataDir = tempDir(`isthmus-${dc}-`);
      const extra: string[] = [];
      if (i > 0) {
        const primary = dcs[names[0]];
        const t = await runCli(['federation', 'token', '--dc', dc, '--http-addr', primary.server.http]);
        if (t.code !== 0) throw new Error(`federation token failed: ${t.stderr}`);
        extra.push('--join-token', t.stdout.trim());
      }
      const server = await startServerProc(dc, host, ports, dataDir, extra, env);
      const region: RegionProcs = {
        dc,
        host,
        dataDir,
        server,
        gateways: [],
        env,
        restart: async () => {
          region.server = await startServerProc(dc, host, ports, dataDir, [], env);
        },
        addGateway: async () => {
          const gw = await startGateway(dc, host, region.server.grpc, region.gateways.length + 1, env);
          region.gateways.push(gw);
          stops.push(() => gw.stop());
          return gw;
        },
      };
      dcs[dc] = region;
      stops.push(async () => {
        await region.server.stop();
        rmSync(dataDir, { recursive: true, force: true });
      });
      for (let n = 1; n <= perDc; n++) await region.addGateway();
      // The gateways are in the catalog before the next DC asks for a token that names them.
      await until(`${dc} gateways registered`, async () => {
        const r = await api(server.url, 'GET', '/v1/health/service/mesh-gateway?passing');
        return Array.isArray(r.body) && r.body.length === perDc;
      });
    }
    // Every pair of DCs linked.
    for (const dc of names) {
      await until(
        `${dc} linked to every peer`,
        async () => {
          const r = await api(dcs[dc].server.url, 'GET', '/v1/federation/status');
          return r.body?.Peers?.length === names.length - 1 && r.body.Peers.every((p: { State: string }) => p.State === 'up');
        },
        30_000,
      );
    }
  } catch (err) {
    while (stops.length) await stops.pop()!().catch(() => undefined);
    throw err;
  }
  return {
    dcs,
    stop: async () => {
      while (stops.length) await stops.pop()!().catch(() => undefined);
    },
  };
}

/**
 * Established TCP connections to `addr` (host:port) on this machine right now, read from
 * /proc/net/tcp: which of several gateways a new connection went to, without asking either.
 */
export function connectionsTo(addr: string): number {
  const [host, port] = addr.split(':');
  const ip = host
    .split('.')
    .map((o) => Number(o).toString(16).padStart(2, '0').toUpperCase())
    .reverse()
    .join('');
  const want = `${ip}:${Number(port).toString(16).toUpperCase().padStart(4, '0')}`;
  let n = 0;
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[2] === want && f[3] === '01') n++;
  }
  return n;
}
