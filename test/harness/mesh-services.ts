// Services on the mesh for tests that start processes: a small HTTP app (`/` answers its name,
// `/stream?chunks=N&every=MS` sends numbered lines slowly), its registration with a sidecar in a DC,
// the `isthmus connect proxy` process, and calls through an upstream port that report how they ended.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { api, startCli } from './server-process.js';
import { freePortOn } from './regions.js';

export type Proc = Awaited<ReturnType<typeof startCli>>;

export interface App {
  server: http.Server;
  host: string;
  port: number;
  close(): void;
}

/** The app: GET / answers `text`; GET /stream?chunks=N&every=MS sends "line i\n" N times, MS apart. */
export async function startApp(host: string, text: string): Promise<App> {
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    if (u.pathname === '/stream') {
      const chunks = Number(u.searchParams.get('chunks') ?? 100);
      const every = Number(u.searchParams.get('every') ?? 100);
      res.writeHead(200, { 'content-type': 'text/plain' });
      let i = 0;
      const t = setInterval(() => {
        if (res.destroyed) return clearInterval(t);
        res.write(`line ${i}\n`);
        if (++i >= chunks) {
          clearInterval(t);
          res.end();
        }
      }, every);
      res.once('close', () => clearInterval(t));
      return;
    }
    res.end(text);
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  return {
    server,
    host,
    port: (server.address() as AddressInfo).port,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

export interface UpstreamDef {
  name: string;
  dc?: string;
  port: number;
}

/**
 * Registers `name` in the DC at `serverUrl` with a sidecar on `host`: with `app` its inbound goes to
 * the app, with `upstreams` it gets local listeners for them. Resolves with the sidecar's inbound port.
 */
export async function registerWithSidecar(serverUrl: string, host: string, name: string, opts: { app?: App; upstreams?: UpstreamDef[] }): Promise<number> {
  const sidecarPort = await freePortOn(host);
  const body = {
    Name: name,
    Address: host,
    Port: opts.app?.port ?? 1,
    Connect: {
      SidecarService: {
        Address: host,
        Port: sidecarPort,
        Proxy: {
          LocalServiceAddress: host,
          Upstreams: (opts.upstreams ?? []).map((u) => ({
            DestinationName: u.name,
            ...(u.dc ? { Datacenter: u.dc } : {}),
            LocalBindAddress: host,
            LocalBindPort: u.port,
          })),
        },
      },
    },
  };
  const r = await api(serverUrl, 'PUT', '/v1/agent/service/register', body);
  if (r.status !== 200) throw new Error(`registering ${name} failed: ${r.status} ${JSON.stringify(r.body)}`);
  return sidecarPort;
}

/** `isthmus connect proxy --sidecar-for NAME` against a DC's gRPC address, with the DC's environment. */
export function startSidecar(name: string, grpcAddr: string, env: NodeJS.ProcessEnv = {}): Promise<Proc> {
  return startCli(['connect', 'proxy', '--sidecar-for', name, '--grpc-addr', grpcAddr, '--log-level', 'warn'], new RegExp(`Sidecar for ${name}`), env);
}

/** SIGTERM to each, then SIGKILL to any still running after `graceMs`: a stuck proxy never hangs a suite. */
export async function stopAll(procs: Proc[], graceMs = 5000): Promise<void> {
  await Promise.all(
    procs.map(async (p) => {
      const timer = setTimeout(() => p.child.kill('SIGKILL'), graceMs);
      await p.stop();
      clearTimeout(timer);
    }),
  );
}

export interface CallResult {
  ok: boolean;
  status: number;
  body: string;
  /** The error code (ECONNRESET, ...) or "timeout" when the call failed. */
  error?: string;
  ms: number;
}

/** One HTTP GET through a local upstream port, never throwing. */
export function call(host: string, port: number, path = '/', timeoutMs = 5000): Promise<CallResult> {
  const start = Date.now();
  return new Promise((resolve) => {
    const done = (r: Omit<CallResult, 'ms'>) => resolve({ ...r, ms: Date.now() - start });
    const req = http.get({ host, port, path, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => done({ ok: res.statusCode === 200, status: res.statusCode ?? 0, body }));
      res.on('error', (e: NodeJS.ErrnoException) => done({ ok: false, status: res.statusCode ?? 0, body, error: e.code ?? e.message }));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'timeout' })));
    req.on('error', (e: NodeJS.ErrnoException) => done({ ok: false, status: 0, body: '', error: e.code ?? e.message }));
  });
}

export interface StreamCall {
  /** Lines received so far. */
  lines(): string[];
  /** Resolves when the stream ends: complete (every line, then a clean end) or not. */
  done: Promise<{ complete: boolean; lines: number; error?: string; endedAt: number }>;
  /** Resolves with the first line (the connection is through every hop by then). */
  first: Promise<void>;
  abort(): void;
}

/** A long GET /stream through a local upstream port; `chunks` lines `every` ms apart. */
export function streamCall(host: string, port: number, chunks: number, every: number): StreamCall {
  let text = '';
  let firstSeen: () => void = () => {};
  let firstFailed: (e: Error) => void = () => {};
  const first = new Promise<void>((resolve, reject) => {
    firstSeen = resolve;
    firstFailed = reject;
  });
  first.catch(() => undefined);
  let req: http.ClientRequest;
  const done = new Promise<{ complete: boolean; lines: number; error?: string; endedAt: number }>((resolve) => {
    const count = () => text.split('\n').filter(Boolean).length;
    const finish = (error?: string) => {
      const lines = count();
      const complete =
        !error &&
        lines === chunks &&
        text
          .split('\n')
          .filter(Boolean)
          .every((l, i) => l === `line ${i}`);
      firstFailed(new Error(error ?? 'ended before the first line'));
      resolve({ complete, lines, error, endedAt: Date.now() });
    };
    req = http.get({ host, port, path: `/stream?chunks=${chunks}&every=${every}`, agent: false }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (d) => {
        text += d;
        if (text.includes('\n')) firstSeen();
      });
      res.on('end', () => finish(res.complete ? undefined : 'aborted'));
      res.on('error', (e: NodeJS.ErrnoException) => finish(e.code ?? e.message));
      res.on('close', () => finish(res.complete ? undefined : 'closed'));
    });
    req.on('error', (e: NodeJS.ErrnoException) => finish(e.code ?? e.message));
  });
  let settled = false;
  const once = done.then((r) => {
    settled = true;
    return r;
  });
  return {
    lines: () => text.split('\n').filter(Boolean),
    done: once,
    first,
    abort: () => {
      if (!settled) req.destroy();
    },
  };
}

/** A PUT to a server's HTTP API that must answer 200. */
export async function putOk(url: string, path: string, body: unknown): Promise<void> {
  const r = await api(url, 'PUT', path, body);
  if (r.status !== 200) throw new Error(`PUT ${path} failed: ${r.status} ${JSON.stringify(r.body)}`);
}

/**
 * The gRPC tests' caller: `web` in the DC at `server`/`host`, with an upstream `grpc-api` in dc2 on
 * a free local port (returned), and the intention web => grpc-api that denies `/<service>/Denied`
 * and allows the service's other methods.
 */
export async function registerGrpcWeb(server: string, host: string, echoService: string): Promise<number> {
  const upstreamPort = await freePortOn(host);
  await putOk(server, '/v1/agent/service/register', {
    Name: 'web',
    Address: host,
    Port: 1,
    Connect: {
      SidecarService: {
        Address: host,
        Port: await freePortOn(host),
        Proxy: {
          LocalServiceAddress: host,
          Upstreams: [{ DestinationName: 'grpc-api', Datacenter: 'dc2', LocalBindAddress: host, LocalBindPort: upstreamPort }],
        },
      },
    },
  });
  await putOk(server, '/v1/connect/intentions/exact?source=web&destination=grpc-api', {
    Permissions: [
      { Action: 'deny', HTTP: { PathExact: `/${echoService}/Denied` } },
      { Action: 'allow', HTTP: { PathPrefix: `/${echoService}/` } },
    ],
  });
  return upstreamPort;
}
