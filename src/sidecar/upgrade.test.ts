// HTTP/1.1 Upgrade (WebSocket) through the mesh over real mTLS: a caller -> client sidecar (http
// upstream, a hand-built chain) -> server sidecar (http inbound, L7 intentions) -> an app doing a
// raw upgrade handshake with node:http; the route's IdleTimeout; the h2 inbound's idle sessions.
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import type { CompiledChain } from '../config-entries/index.js';
import type { FlowRecord } from '../dataflow/index.js';
import { watchRequestIdle } from './idle-timeout.js';
import type { SidecarUpstream } from './sidecar.js';
import {
  TD,
  apiChain,
  apiUpstream,
  chainTarget,
  closedPort,
  intention,
  listen,
  policyOf,
  startClientSidecar,
  startServerSidecar,
  testPki,
  useStops,
} from './testing/fixtures.js';

const stops = useStops();

// web may open anything but /private (an L7 permission).
const intentions = [
  intention({
    Permissions: [
      { Action: 'deny', HTTP: { PathPrefix: '/private' } },
      { Action: 'allow', HTTP: { PathPrefix: '/' } },
    ],
  }),
];
const policy = policyOf(intentions);

const TARGET = 'api.default.dc1';

/** Routes[0] /old/ rewritten to /ws/ with header edits; Routes[1] /idle with a 300 ms IdleTimeout; Routes[2] the rest. */
function chain(): CompiledChain {
  return apiChain(
    'http',
    [
      {
        Definition: {
          Match: { HTTP: { PathPrefix: '/old/' } },
          Destination: { PrefixRewrite: '/ws/', RequestHeaders: { Set: { 'x-route': 'old' } }, ResponseHeaders: { Add: { 'x-served-by': 'mesh' } } },
        },
        NextNode: `resolver:${TARGET}`,
      },
      { Definition: { Match: { HTTP: { PathPrefix: '/idle' } }, Destination: { IdleTimeout: '300ms' } }, NextNode: `resolver:${TARGET}` },
      { Definition: { Match: { HTTP: { PathPrefix: '/' } } }, NextNode: `resolver:${TARGET}` },
    ],
    {
      [`resolver:${TARGET}`]: { Type: 'resolver', Name: TARGET, Resolver: { Default: true, ConnectTimeout: '5s', Target: TARGET } },
    },
    { [TARGET]: chainTarget(TARGET) },
  );
}

/** What the app saw of each upgrade request. */
interface AppSeen {
  url: string;
  headers: http.IncomingHttpHeaders;
}

/**
 * The app: an upgrade to /refuse gets a 400 with a body, /idle/silent no answer at all; any other
 * is switched and echoes what it reads, and on the caller's end writes "bye" and ends.
 */
async function startApp() {
  const upgrades: AppSeen[] = [];
  const app = http.createServer((_req, res) => res.end('plain'));
  // An upgraded socket is no longer the server's: closeAllConnections() does not see it.
  const open = new Set<net.Socket>();
  app.on('upgrade', (req: http.IncomingMessage, sock: net.Socket) => {
    upgrades.push({ url: req.url ?? '', headers: req.headers });
    open.add(sock);
    sock.once('close', () => open.delete(sock));
    if (req.url === '/refuse') return sock.end('HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 4\r\n\r\nnope');
    if (req.url === '/idle/silent') return;
    sock.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${req.headers.upgrade}\r\nx-app: yes\r\n\r\n`);
    sock.on('data', (d: Buffer) => sock.write(d));
    sock.on('end', () => sock.end('bye'));
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  stops.push(
    () =>
      new Promise<void>((r) => {
        app.closeAllConnections();
        for (const s of open) s.destroy();
        app.close(() => r());
      }),
  );
  return { port: (app.address() as net.AddressInfo).port, upgrades };
}

async function mesh(opts: { deadFirst?: boolean } = {}) {
  const p = await testPki();
  const app = await startApp();
  const flows: FlowRecord[] = [];
  const api = await startServerSidecar(stops, p, { appPort: app.port, protocol: 'http', policy, options: { onFlow: (r) => flows.push(r) } });
  const endpoint = { host: '127.0.0.1', port: api.inboundPort, sni: `${TARGET}.internal.${TD}`, spiffeId: `spiffe://${TD}/ns/default/dc/dc1/svc/api` };
  // An endpoint that refuses (a port just closed), tried first.
  const dead = { ...endpoint, port: await closedPort() };
  const endpoints = opts.deadFirst ? [dead, endpoint] : [endpoint];
  const upstream: SidecarUpstream = apiUpstream({
    endpoints,
    protocol: 'http',
    chain: chain(),
    targets: [{ id: TARGET, datacenter: 'dc1', healthy: true, healthAgeMs: 0, endpoints }],
  });
  const web = await startClientSidecar(stops, p, { upstreams: [upstream], policy, options: { onFlow: (r) => flows.push(r) } });
  return { app, flows, port: web.upstreamPort('api') };
}

type Opened =
  | { kind: 'upgraded'; res: http.IncomingMessage; sock: net.Socket; head: Buffer }
  | { kind: 'answered'; status: number; headers: http.IncomingHttpHeaders; body: string };

/** Asks the client sidecar for an upgrade to `path`. */
function open(port: number, path: string): Promise<Opened> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers: { connection: 'Upgrade', upgrade: 'websocket', 'x-caller': 'web' } });
    req.once('upgrade', (res, sock: net.Socket, head: Buffer) => {
      stops.push(() => void sock.destroy());
      resolve({ kind: 'upgraded', res, sock, head });
    });
    req.once('response', (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ kind: 'answered', status: res.statusCode!, headers: res.headers, body }));
    });
    req.once('error', reject);
    req.end();
  });
}

/** Reads from `sock` until what came in holds `want`. */
function readUntil(sock: net.Socket, want: string, already = ''): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = already;
    if (got.includes(want)) return resolve(got);
    const onData = (d: Buffer) => {
      got += d.toString();
      if (got.includes(want)) {
        sock.off('data', onData);
        resolve(got);
      }
    };
    sock.on('data', onData);
    sock.once('close', () => (got.includes(want) ? undefined : reject(new Error(`closed after ${JSON.stringify(got)}, wanted ${want}`))));
  });
}

const ended = (sock: net.Socket) => new Promise<void>((r) => (sock.closed ? r() : sock.once('close', () => r())));

/** Flow records arrive as connections close: waits for the one `pick` finds. */
async function flowOf(flows: FlowRecord[], pick: (f: FlowRecord) => boolean): Promise<FlowRecord> {
  for (let i = 0; i < 200; i++) {
    const f = flows.find(pick);
    if (f) return f;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('no such flow record');
}

describe('WebSocket upgrades through an http upstream', () => {
  it('echoes bytes both ways through both sidecars, passes a half-close on, and records the bytes', async () => {
    const m = await mesh();
    const o = await open(m.port, '/old/chat?room=1');
    if (o.kind !== 'upgraded') throw new Error(`not upgraded: ${JSON.stringify(o)}`);
    expect(o.res.statusCode).toBe(101);
    expect(o.res.headers.upgrade).toBe('websocket');
    expect(o.res.headers['x-app']).toBe('yes');
    // The route's response edit applies to the 101.
    expect(o.res.headers['x-served-by']).toBe('mesh');
    // The route's PrefixRewrite and request edit reached the app, with the upgrade itself.
    expect(m.app.upgrades[0].url).toBe('/ws/chat?room=1');
    expect(m.app.upgrades[0].headers['x-route']).toBe('old');
    expect(m.app.upgrades[0].headers['x-caller']).toBe('web');
    expect(m.app.upgrades[0].headers.upgrade).toBe('websocket');
    expect(m.app.upgrades[0].headers.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);

    const sock = o.sock;
    sock.write('hello');
    expect(await readUntil(sock, 'hello', o.head.toString())).toBe('hello');
    const big = 'x'.repeat(300_000);
    sock.write(big);
    expect((await readUntil(sock, big)).length).toBe(big.length);
    // The caller ends its side; the app still answers after it ("bye"), and that gets back.
    let rest = '';
    sock.on('data', (d) => (rest += d));
    sock.end();
    await ended(sock);
    expect(rest).toBe('bye');

    const client = await flowOf(m.flows, (f) => f.hop === 'client-sidecar' && f.http?.status === 101);
    expect(client).toMatchObject({
      verdict: 'allowed',
      bytesIn: 5 + big.length,
      bytesOut: 5 + big.length + 3,
      http: { method: 'GET', path: '/old/chat?room=1' },
    });
    expect(client.routing).toMatchObject({ route: 'Routes[0]', target: TARGET });
    expect(client.reason).toMatch(/^upgraded to websocket; closed$/);
    const server = await flowOf(m.flows, (f) => f.hop === 'server-sidecar' && f.http?.status === 101);
    expect(server).toMatchObject({
      verdict: 'allowed',
      intentionId: 'web-api',
      bytesIn: 5 + big.length,
      bytesOut: 5 + big.length + 3,
      http: { path: '/ws/chat?room=1' },
    });
    expect(server.requestIndex).toBe(1);
    // The two hops' records join by the connection's ClientHello random.
    expect(server.traceId).toBe(client.traceId);
    expect(client.traceId).not.toBe('0'.repeat(32));
  });

  it('takes the next endpoint when the first refuses the connection', async () => {
    const m = await mesh({ deadFirst: true });
    const o = await open(m.port, '/chat');
    if (o.kind !== 'upgraded') throw new Error('not upgraded');
    o.sock.write('ping');
    expect(await readUntil(o.sock, 'ping', o.head.toString())).toBe('ping');
    o.sock.end();
    await ended(o.sock);
    const rec = await flowOf(m.flows, (f) => f.hop === 'client-sidecar' && f.http?.status === 101);
    expect(rec.reason).toMatch(/^upgraded to websocket after connect failure at 127\.0\.0\.1:\d+ \(ECONNREFUSED\); closed$/);
    expect(rec.routing).toMatchObject({ target: TARGET, retries: 1 });
  });

  it('refuses an upgrade the L7 permissions deny with the usual 403, and the app never sees it', async () => {
    const m = await mesh();
    const o = await open(m.port, '/private/chat');
    if (o.kind !== 'answered') throw new Error('upgraded');
    expect(o.status).toBe(403);
    expect(JSON.parse(o.body)).toEqual({
      Error: 'ISTHMUS_ERR_INTENTION_DENIED',
      Message: expect.any(String),
      IntentionID: 'web-api',
      Permission: 'Permissions[0]',
    });
    expect(m.app.upgrades).toHaveLength(0);
    const denied = await flowOf(m.flows, (f) => f.hop === 'server-sidecar' && f.verdict === 'denied');
    expect(denied.http).toMatchObject({ path: '/private/chat', status: 403 });
  });

  it('passes an answer other than 101 back as it came', async () => {
    const m = await mesh();
    const o = await open(m.port, '/refuse');
    if (o.kind !== 'answered') throw new Error('upgraded');
    expect(o.status).toBe(400);
    expect(o.body).toBe('nope');
    expect(o.headers['content-type']).toBe('text/plain');
    expect(m.app.upgrades.map((u) => u.url)).toEqual(['/refuse']);
    const rec = await flowOf(m.flows, (f) => f.hop === 'client-sidecar' && f.http?.status === 400);
    expect(rec.bytesOut).toBe(4);
  });

  it("answers 504 when no answer comes within the route's IdleTimeout", async () => {
    const m = await mesh();
    const o = await open(m.port, '/idle/silent');
    if (o.kind !== 'answered') throw new Error('upgraded');
    expect(o.status).toBe(504);
    expect(JSON.parse(o.body)).toMatchObject({ Error: 'ISTHMUS_ERR_TIMEOUT', Message: expect.stringContaining('Routes[1] IdleTimeout') });
    expect(m.app.upgrades.map((u) => u.url)).toEqual(['/idle/silent']);
  });

  it("closes an upgraded connection silent for the route's IdleTimeout, and not one that talks", async () => {
    const m = await mesh();
    const o = await open(m.port, '/idle/chat');
    if (o.kind !== 'upgraded') throw new Error('not upgraded');
    // Talking every 100 ms for 600 ms (twice the IdleTimeout) keeps it open.
    for (let i = 0; i < 6; i++) {
      o.sock.write(`m${i};`);
      await readUntil(o.sock, `m${i};`);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(o.sock.destroyed).toBe(false);
    // Then silence: both sides are closed.
    await ended(o.sock);
    const rec = await flowOf(m.flows, (f) => f.hop === 'client-sidecar' && f.http?.status === 101);
    expect(rec.reason).toContain('closed: no bytes either way for 300 ms (Routes[1] IdleTimeout)');
    expect(rec.bytesIn).toBe(18);
  });
});

describe('the IdleTimeout of an HTTP/1.1 request', () => {
  // What the client sidecar's request path does with it: a silent request is answered 504 as its
  // request timeout would be; one whose answer is under way is reset; a talking one is left alone.
  async function server(IdleTimeout: string, behave: (res: http.ServerResponse) => void) {
    const idled: string[] = [];
    const s = http.createServer((req, res) => {
      watchRequestIdle(req, res, { IdleTimeout }, 3, (why) => {
        idled.push(why);
        if (res.headersSent) return void res.destroy();
        const body = JSON.stringify({ Error: 'ISTHMUS_ERR_TIMEOUT', Message: why });
        res.writeHead(504, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
      });
      behave(res);
    });
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    stops.push(() => new Promise<void>((r) => (s.closeAllConnections(), s.close(() => r()))));
    const get = () =>
      new Promise<{ status: number; body: string; complete: boolean }>((resolve) => {
        http
          .get({ host: '127.0.0.1', port: (s.address() as net.AddressInfo).port, path: '/', agent: false }, (res) => {
            let body = '';
            res.on('data', (d) => (body += d));
            res.on('end', () => resolve({ status: res.statusCode!, body, complete: true }));
            res.on('error', () => resolve({ status: res.statusCode!, body, complete: false }));
          })
          .once('error', () => resolve({ status: 0, body: '', complete: false }));
      });
    return { idled, get };
  }

  it('ends a silent request with 504', async () => {
    const m = await server('200ms', () => {});
    const got = await m.get();
    expect(got.status).toBe(504);
    expect(JSON.parse(got.body)).toEqual({ Error: 'ISTHMUS_ERR_TIMEOUT', Message: 'no bytes either way for 200 ms (Routes[3] IdleTimeout)' });
    expect(m.idled).toHaveLength(1);
  });

  it('resets an answer that stops, and leaves one that keeps moving', async () => {
    const stalls = await server('200ms', (res) => {
      res.writeHead(200);
      res.write('part');
    });
    expect(await stalls.get()).toMatchObject({ status: 200, body: 'part', complete: false });
    const talks = await server('200ms', (res) => {
      res.writeHead(200);
      let i = 0;
      const t = setInterval(() => (++i === 8 ? (clearInterval(t), res.end('.')) : res.write('.')), 50);
    });
    expect(await talks.get()).toEqual({ status: 200, body: '........', complete: true });
    expect(talks.idled).toHaveLength(0);
  });
});

describe('the h2 inbound', () => {
  it('closes a session with no open stream after the idle timeout, and keeps one with a stream open', async () => {
    const p = await testPki();
    const { leaf, bundle } = p;
    const app = http.createServer((req, res) => {
      const t = setTimeout(() => res.end('late'), req.url === '/slow' ? 900 : 0);
      res.once('close', () => clearTimeout(t));
    });
    const appPort = await listen(stops, app);
    const api = await startServerSidecar(stops, p, { appPort, protocol: 'http', policy, options: { httpIdleTimeoutMs: 300 } });
    const web = await leaf('web');
    const connect = () => {
      const s = http2.connect(`https://127.0.0.1:${api.inboundPort}`, {
        key: web.keyPem,
        cert: [web.certPem.trim(), ...bundle.chain].join('\n'),
        ca: bundle.roots,
        servername: `${TARGET}.internal.${TD}`,
        checkServerIdentity: () => undefined,
      });
      stops.push(() => void s.destroy());
      const events: { goaway?: number; closedAt?: number } = {};
      s.on('goaway', (code) => (events.goaway = code));
      s.on('error', () => {});
      s.once('close', () => (events.closedAt = Date.now()));
      return { s, events, closed: new Promise<void>((r) => s.once('close', () => r())) };
    };

    // Idle from the start: a GOAWAY (NO_ERROR), then the close.
    const idle = connect();
    await idle.closed;
    expect(idle.events.goaway).toBe(http2.constants.NGHTTP2_NO_ERROR);

    // A stream open three times the idle timeout keeps the session; once it is done, the session goes idle.
    const busy = connect();
    const opened = Date.now();
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = busy.s.request({ ':path': '/slow' });
      let status = 0;
      let body = '';
      req.on('response', (h) => (status = Number(h[':status'])));
      req.on('data', (d) => (body += d));
      req.on('end', () => resolve({ status, body }));
      req.on('error', reject);
    });
    expect(answer).toEqual({ status: 200, body: 'late' });
    // No GOAWAY came while the stream was open (a session closed under it would have had one at 300 ms).
    expect(busy.events.goaway).toBeUndefined();
    expect(busy.events.closedAt).toBeUndefined();
    expect(Date.now() - opened).toBeGreaterThanOrEqual(900);
    await busy.closed;
    expect(busy.events.goaway).toBe(http2.constants.NGHTTP2_NO_ERROR);
  });
});
