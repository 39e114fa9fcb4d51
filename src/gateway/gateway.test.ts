import { createHash, randomBytes } from 'node:crypto';
import diagnosticsChannel from 'node:diagnostics_channel';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createRoot, newKeyPem, signCa, signLeaf } from '../ca/index.js';
import type { FlowRecord } from '../dataflow/index.js';
import { chooseDataPath, type DataPathName } from '../netio/index.js';
import { spiffeOf, traceIdFromKeylog } from '../sidecar/index.js';
import { createLogger, createRegistry } from '../telemetry/index.js';
import { Gateway, GATEWAY_CONNECTION_CHANNEL, type GatewayOptions } from './gateway.js';
import { loadNativePump } from './pump/index.js';
import type { GatewayRoutes } from './routes.js';
import { helloMessage, records } from './testing/hello-builder.js';

const TD = 'gw.isthmus';
const stops: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (stops.length) await stops.pop()!();
});

async function pki() {
  const root = await createRoot({ trustDomain: TD, commonName: 'root', ttlMs: 3_600_000 });
  const interKey = await newKeyPem();
  const inter = await signCa({ signer: root, subjectKeyPem: interKey, commonName: 'inter', trustDomain: TD, ttlMs: 3_600_000, pathLength: 0 });
  const leaf = async (svc: string, dc = 'dc1') => {
    const spiffeId = `spiffe://${TD}/ns/default/dc/${dc}/svc/${svc}`;
    const l = await signLeaf({ signer: { certPem: inter.certPem, keyPem: interKey }, spiffeId, dnsNames: [], commonName: svc, ttlMs: 600_000 });
    return { key: l.keyPem, cert: `${l.certPem.trim()}\n${inter.certPem.trim()}\n`, spiffeId };
  };
  return { ca: root.certPem, leaf };
}
let shared: Awaited<ReturnType<typeof pki>> | undefined;
const getPki = async () => (shared ??= await pki());

/** A TLS backend (what a sidecar's inbound is): mTLS, echoes, and notes the client random of each handshake. */
async function tlsBackend(svc = 'api', dc = 'dc1') {
  const p = await getPki();
  const leaf = await p.leaf(svc, dc);
  const traces: string[] = [];
  const peers: string[] = [];
  const server = tls.createServer({ key: leaf.key, cert: leaf.cert, ca: p.ca, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' }, (s) => {
    peers.push(spiffeOf(s.getPeerCertificate()) ?? '');
    s.pipe(s);
    s.on('error', () => {});
  });
  server.on('keylog', (line) => {
    const t = traceIdFromKeylog(line);
    if (t && !traces.includes(t)) traces.push(t);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  stops.push(() => new Promise<void>((r) => server.close(() => r())));
  return { port: (server.address() as net.AddressInfo).port, traces, peers, spiffeId: leaf.spiffeId };
}

/** A plain TCP backend: says "ready", reads everything until the client's FIN, then answers its sha256 and closes. */
async function hashBackend() {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.write('ready:');
    const h = createHash('sha256');
    s.on('data', (d) => h.update(d));
    s.on('end', () => s.end(h.digest('hex')));
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  stops.push(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as net.AddressInfo).port;
}

/** The data path the gateways of the suite running now use (see kinds). */
let kind: DataPathName = 'fast';

async function gateway(routes: Partial<GatewayRoutes>, over: Partial<GatewayOptions> = {}) {
  const flows: FlowRecord[] = [];
  const registry = createRegistry({ dc: routes.dc ?? 'dc1', node: 'gw' }, { processMetrics: false });
  const gw = new Gateway({
    id: `mesh-gateway-${routes.dc ?? 'dc1'}`,
    dc: routes.dc ?? 'dc1',
    host: '127.0.0.1',
    port: 0,
    registry,
    routes: { dc: 'dc1', trustDomain: TD, services: [], serverAddresses: [], remotes: [], ...routes },
    onFlow: (r) => flows.push(r),
    fastPath: kind === 'fast',
    ...over,
  });
  await gw.start();
  stops.push(() => gw.stop());
  expect(gw.dataPath.name).toBe(over.fastPath === undefined ? kind : over.fastPath ? 'fast' : 'plain');
  return { gw, flows, registry };
}

async function mtlsClient(port: number, sni: string, expect: string, client = 'web') {
  const p = await getPki();
  const leaf = await p.leaf(client);
  let trace = '';
  let seen = '';
  const sock = tls.connect({
    host: '127.0.0.1',
    port,
    servername: sni,
    key: leaf.key,
    cert: leaf.cert,
    ca: p.ca,
    minVersion: 'TLSv1.3',
    checkServerIdentity: (_h, cert) => {
      seen = spiffeOf(cert) ?? '';
      return seen === expect ? undefined : new Error(`backend is ${seen}, expected ${expect}`);
    },
  });
  sock.on('keylog', (line) => (trace ||= traceIdFromKeylog(line) ?? ''));
  await new Promise<void>((resolve, reject) => {
    sock.once('secureConnect', resolve);
    sock.once('error', reject);
  });
  stops.push(() => void sock.destroy());
  return { sock, trace: () => trace, seen: () => seen };
}

function echo(sock: net.Socket, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const got: Buffer[] = [];
    let n = 0;
    const onData = (d: Buffer) => {
      got.push(d);
      n += d.length;
      if (n >= payload.length) {
        sock.off('data', onData);
        resolve(Buffer.concat(got));
      }
    };
    sock.on('data', onData);
    sock.once('error', reject);
    sock.write(payload);
  });
}

/** Resolves with how a raw connection ended: 'reset' (ECONNRESET) or 'closed'. */
function outcome(sock: net.Socket): Promise<'reset' | 'closed'> {
  return new Promise((resolve) => {
    let reset = false;
    sock.on('error', (e: NodeJS.ErrnoException) => (reset ||= e.code === 'ECONNRESET'));
    sock.on('data', () => {});
    sock.on('close', () => resolve(reset ? 'reset' : 'closed'));
  });
}

const until = async (fn: () => boolean, ms = 3000) => {
  const end = Date.now() + ms;
  while (!fn() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  expect(fn()).toBe(true);
};

const GOLDEN = readFileSync(new URL('./testdata/node-tls13.bin', import.meta.url));
const goldenSni = 'api.default.dc1.internal.golden.isthmus';

// Every behaviour twice: on the fast data path (the default, where it passes its self-test) and on
// the plain one (net.Sockets only: the fast path switched off or failing). netio/fast-path.test.ts
// fails when the fast path does not pass here.
const fastWorks = (await chooseDataPath({ fastPath: true })).path.name === 'fast';
const kinds: { name: string; path: DataPathName }[] = [
  ...(fastWorks ? [{ name: 'on the fast data path', path: 'fast' as const }] : []),
  { name: 'on the plain data path', path: 'plain' },
];

describe.each(kinds)('mesh gateway, $name', ({ path }) => {
  beforeAll(() => {
    kind = path;
  });

  it('says at start which data path it uses, and why', async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger({ level: 'info', write: (l) => lines.push(JSON.parse(l) as Record<string, unknown>) });
    await gateway({}, { logger });
    const said = lines.filter((l) => l.msg === 'data path');
    expect(said).toHaveLength(1);
    if (path === 'fast') expect(said[0]).toMatchObject({ path: 'fast', selfTest: 'passed' });
    else expect(said[0]).toMatchObject({ path: 'plain', selfTest: 'skipped', reason: 'fast path switched off (--fast-path off)' });
  });

  it('routes an mTLS connection by SNI to a local sidecar without terminating it, and records the flow', async () => {
    const backend = await tlsBackend('api');
    const { gw, flows, registry } = await gateway({
      services: [{ name: 'api', namespace: 'default', endpoints: [{ host: '127.0.0.1', port: backend.port }] }],
    });
    const seenOnChannel: FlowRecord[] = [];
    const listener = (m: unknown) => seenOnChannel.push(m as FlowRecord);
    diagnosticsChannel.subscribe(GATEWAY_CONNECTION_CHANNEL, listener);
    stops.push(() => void diagnosticsChannel.unsubscribe(GATEWAY_CONNECTION_CHANNEL, listener));

    const c = await mtlsClient(gw.port, `api.default.dc1.internal.${TD}`, backend.spiffeId);
    // The client verified the backend's own certificate, and the backend saw the client's: end to end.
    expect(c.seen()).toBe(`spiffe://${TD}/ns/default/dc/dc1/svc/api`);
    // While it is open, the route counts it as active (and nothing waits under "" any more).
    await until(() => gw.connections === 1);
    const during = await registry.metrics();
    expect(during).toMatch(/isthmus_gateway_connections_active\{route="api\.default\.dc1"[^}]*\} 1\n/);
    expect(during).toMatch(/isthmus_gateway_connections_active\{route=""[^}]*\} 0\n/);
    const payload = randomBytes(4 << 20);
    const back = await echo(c.sock, payload);
    expect(backend.peers).toEqual([`spiffe://${TD}/ns/default/dc/dc1/svc/web`]);
    expect(createHash('sha256').update(back).digest('hex')).toBe(createHash('sha256').update(payload).digest('hex'));
    c.sock.end();
    await until(() => flows.length === 1);
    const f = flows[0];
    expect(f).toMatchObject({
      hop: 'gateway-ingress',
      dc: 'dc1',
      reporter: 'mesh-gateway-dc1',
      verdict: 'allowed',
      sni: `api.default.dc1.internal.${TD}`,
      destination: { service: 'api', namespace: 'default', dc: 'dc1' },
      reason: `routed to 127.0.0.1:${backend.port}`,
    });
    expect(f.traceId).toBe(c.trace());
    expect(backend.traces).toEqual([c.trace()]);
    expect(f.bytesIn).toBeGreaterThan(4 << 20);
    expect(f.bytesOut).toBeGreaterThan(4 << 20);
    expect(seenOnChannel.map((r) => r.id)).toEqual([f.id]);
    const text = await registry.metrics();
    expect(text).toMatch(/isthmus_gateway_connections_total\{route="api\.default\.dc1",hop="gateway-ingress",dc="dc1",node="gw"\} 1/);
    expect(text).toMatch(/isthmus_gateway_bytes_in_total\{route="api\.default\.dc1"[^}]*\} \d{7}/);
    expect(text).toMatch(/isthmus_gateway_bytes_out_total\{route="api\.default\.dc1"[^}]*\} \d{7}/);
    expect(text).toMatch(/isthmus_gateway_connections_active\{route="api\.default\.dc1"[^}]*\} 0\n/);
    expect(gw.connections).toBe(0);
  });

  it('forwards the hello bytes verbatim, then the stream, and passes half-closes both ways', async () => {
    const port = await hashBackend();
    const { gw, flows } = await gateway({
      trustDomain: 'golden.isthmus',
      services: [{ name: 'api', namespace: 'default', endpoints: [{ host: '127.0.0.1', port }] }],
    });
    const sock = net.connect({ host: '127.0.0.1', port: gw.port });
    const body = randomBytes(300_000);
    // The hello arrives in three segments, the rest right behind it.
    sock.write(GOLDEN.subarray(0, 3));
    await new Promise((r) => setTimeout(r, 20));
    sock.write(GOLDEN.subarray(3, 200));
    await new Promise((r) => setTimeout(r, 20));
    sock.write(Buffer.concat([GOLDEN.subarray(200), body]));
    sock.end();
    const answer = await new Promise<string>((resolve) => {
      let s = '';
      sock.on('data', (d) => (s += d));
      sock.on('end', () => resolve(s));
    });
    expect(answer).toBe(
      `ready:${createHash('sha256')
        .update(Buffer.concat([GOLDEN, body]))
        .digest('hex')}`,
    );
    await until(() => flows.length === 1);
    expect(flows[0]).toMatchObject({ verdict: 'allowed', sni: goldenSni, bytesIn: GOLDEN.length + body.length, bytesOut: 70 });
  });

  it('keeps every byte in order toward a slow reader (read buffers reused only when writes finished)', async () => {
    const data = randomBytes(24 << 20);
    const server = net.createServer((sock) => {
      sock.once('data', () => sock.end(data));
      sock.on('error', () => {});
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    stops.push(() => new Promise<void>((r) => server.close(() => r())));
    const port = (server.address() as net.AddressInfo).port;
    const { gw } = await gateway({
      trustDomain: 'golden.isthmus',
      services: [{ name: 'api', namespace: 'default', endpoints: [{ host: '127.0.0.1', port }] }],
    });
    const sock = net.connect({ host: '127.0.0.1', port: gw.port });
    sock.write(GOLDEN);
    sock.pause();
    await new Promise((r) => setTimeout(r, 150));
    const h = createHash('sha256');
    let n = 0;
    await new Promise<void>((resolve) => {
      sock.on('data', (d) => {
        h.update(d);
        n += d.length;
        // Stall now and then so the gateway's writes to us back up.
        if (n % 7 === 0) {
          sock.pause();
          setTimeout(() => sock.resume(), 5);
        }
      });
      sock.on('end', resolve);
      sock.resume();
    });
    expect(n).toBe(data.length);
    expect(h.digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
  });

  it('gives back the read buffers of a connection that moved bulk once it idles, and keeps every byte after', async () => {
    const server = net.createServer((sock) => {
      sock.pipe(sock);
      sock.on('error', () => {});
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    stops.push(() => new Promise<void>((r) => server.close(() => r())));
    const port = (server.address() as net.AddressInfo).port;
    const { gw } = await gateway(
      { trustDomain: 'golden.isthmus', services: [{ name: 'api', namespace: 'default', endpoints: [{ host: '127.0.0.1', port }] }] },
      // The data path's read buffers: a pumped connection has none (see the byte pump's tests below).
      { bufferSweepMs: 200, pump: 'off' },
    );
    const sock = net.connect({ host: '127.0.0.1', port: gw.port });
    stops.push(() => void sock.destroy());
    expect((await echo(sock, GOLDEN)).equals(GOLDEN)).toBe(true);
    expect(gw.connectionsWithOwnBuffers).toBe(0);
    const bulk = randomBytes(4 << 20);
    expect((await echo(sock, bulk)).equals(bulk)).toBe(true);
    // Bulk moved through buffers of the connection's own...
    expect(gw.connectionsWithOwnBuffers).toBe(1);
    // ...given back once it idles.
    await until(() => gw.connectionsWithOwnBuffers === 0);
    // Through the shared buffer again, then its own again, in order both times.
    const small = randomBytes(100);
    expect((await echo(sock, small)).equals(small)).toBe(true);
    const again = randomBytes(4 << 20);
    expect((await echo(sock, again)).equals(again)).toBe(true);
    expect(gw.connectionsWithOwnBuffers).toBe(1);
    await until(() => gw.connectionsWithOwnBuffers === 0);
    expect((await echo(sock, small)).equals(small)).toBe(true);
  });

  it("sends another DC's name to that DC's gateway, which delivers it locally: one traceId on both hops", async () => {
    const backend = await tlsBackend('api', 'dc2');
    const dc2 = await gateway({ dc: 'dc2', services: [{ name: 'api', namespace: 'default', endpoints: [{ host: '127.0.0.1', port: backend.port }] }] });
    const dc1 = await gateway({ dc: 'dc1', remotes: [{ dc: 'dc2', gateways: [dc2.gw.address] }] });
    const c = await mtlsClient(dc1.gw.port, `api.default.dc2.internal.${TD}`, backend.spiffeId);
    expect((await echo(c.sock, Buffer.from('ping'))).toString()).toBe('ping');
    c.sock.end();
    await until(() => dc1.flows.length === 1 && dc2.flows.length === 1);
    expect(dc1.flows[0]).toMatchObject({
      hop: 'gateway-egress',
      dc: 'dc1',
      verdict: 'allowed',
      destination: { service: 'api', dc: 'dc2' },
      traceId: c.trace(),
    });
    expect(dc2.flows[0]).toMatchObject({ hop: 'gateway-ingress', dc: 'dc2', verdict: 'allowed', traceId: c.trace() });
  });

  it('fails over to the next remote gateway when the first refuses', async () => {
    const backend = await tlsBackend('api', 'dc2');
    const dc2 = await gateway({ dc: 'dc2', services: [{ name: 'api', namespace: 'default', endpoints: [{ host: '127.0.0.1', port: backend.port }] }] });
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const deadPort = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const dc1 = await gateway({ dc: 'dc1', remotes: [{ dc: 'dc2', gateways: [`127.0.0.1:${deadPort}`, dc2.gw.address] }] });
    const c = await mtlsClient(dc1.gw.port, `api.default.dc2.internal.${TD}`, backend.spiffeId);
    expect((await echo(c.sock, Buffer.from('x'))).toString()).toBe('x');
    c.sock.end();
    await until(() => dc1.flows.length === 1);
    expect(dc1.flows[0].verdict).toBe('allowed');
    expect(dc1.flows[0].reason).toBe(`routed to ${dc2.gw.address} after 127.0.0.1:${deadPort} ECONNREFUSED`);

    // With every target refusing, the client is reset and the flow says what was tried.
    dc1.gw.update({ dc: 'dc1', trustDomain: TD, services: [], serverAddresses: [], remotes: [{ dc: 'dc2', gateways: [`127.0.0.1:${deadPort}`] }] });
    const raw = net.connect({ host: '127.0.0.1', port: dc1.gw.port });
    const end = outcome(raw);
    raw.write(tlsHello(`api.default.dc2.internal.${TD}`));
    expect(await end).toBe('reset');
    await until(() => dc1.flows.length === 2);
    expect(dc1.flows[1]).toMatchObject({
      verdict: 'error',
      hop: 'gateway-egress',
      reason: `no upstream reachable for api.default.dc2: 127.0.0.1:${deadPort} ECONNREFUSED`,
    });
  });

  it('passes over a target that takes the connection but closes or resets it without answering the hello', async () => {
    const backend = await tlsBackend('api', 'dc2');
    const dc2 = await gateway({ dc: 'dc2', services: [{ name: 'api', namespace: 'default', endpoints: [{ host: '127.0.0.1', port: backend.port }] }] });
    // What a load balancer in front of a dead gateway does: accept, then hang up.
    const mute = net.createServer((sock) => sock.once('data', () => sock.end()));
    const rude = net.createServer((sock) => sock.once('data', () => sock.resetAndDestroy()));
    for (const srv of [mute, rude]) {
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
      stops.push(() => new Promise<void>((r) => srv.close(() => r())));
    }
    const addr = (srv: net.Server) => `127.0.0.1:${(srv.address() as net.AddressInfo).port}`;
    const dc1 = await gateway({ dc: 'dc1', remotes: [{ dc: 'dc2', gateways: [addr(mute), addr(rude), dc2.gw.address] }] });
    const c = await mtlsClient(dc1.gw.port, `api.default.dc2.internal.${TD}`, backend.spiffeId);
    expect((await echo(c.sock, Buffer.from('through'))).toString()).toBe('through');
    c.sock.end();
    await until(() => dc1.flows.length === 1);
    expect(dc1.flows[0]).toMatchObject({
      verdict: 'allowed',
      reason: `routed to ${dc2.gw.address} after ${addr(mute)} closed without answering; ${addr(rude)} ECONNRESET`,
    });
    expect(backend.traces).toEqual([c.trace()]);
  });

  it('resets an unknown SNI and records it as no_route with the reason', async () => {
    const { gw, flows, registry } = await gateway({ services: [] });
    for (const sni of [`ghost.default.dc1.internal.${TD}`, 'example.com']) {
      const raw = net.connect({ host: '127.0.0.1', port: gw.port });
      const end = outcome(raw);
      raw.write(tlsHello(sni));
      expect(await end).toBe('reset');
    }
    await until(() => flows.length === 2);
    expect(flows[0]).toMatchObject({
      verdict: 'no_route',
      sni: `ghost.default.dc1.internal.${TD}`,
      hop: 'gateway-ingress',
      destination: { service: 'ghost', dc: 'dc1' },
      reason: expect.stringContaining('no healthy instance of ghost'),
    });
    expect(flows[0].traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(flows[1]).toMatchObject({ verdict: 'no_route', sni: 'example.com', reason: `SNI example.com is not in trust domain ${TD}` });
    expect(await registry.metrics()).toMatch(/isthmus_gateway_errors_total\{route="",reason="no_route"[^}]*\} 2/);
  });

  it("resets a malformed hello and records the parser's reason; a bare connect-and-close is no flow", async () => {
    const { gw, flows } = await gateway({});
    const raw = net.connect({ host: '127.0.0.1', port: gw.port });
    const end = outcome(raw);
    raw.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(await end).toBe('reset');
    const probe = net.connect({ host: '127.0.0.1', port: gw.port });
    await new Promise((r) => probe.once('connect', r));
    probe.end();
    const truncated = net.connect({ host: '127.0.0.1', port: gw.port });
    const t = outcome(truncated);
    truncated.end(GOLDEN.subarray(0, 100));
    await t;
    await until(() => flows.length === 2 && gw.connections === 0);
    expect(flows[0]).toMatchObject({
      verdict: 'error',
      reason: 'bad ClientHello: not TLS: the connection starts with plain text (HTTP?)',
      traceId: '0'.repeat(32),
    });
    expect(flows[1]).toMatchObject({
      verdict: 'error',
      reason: expect.stringMatching(/^bad ClientHello: ClientHello truncated: connection closed after 100 bytes/),
    });
  });

  it('cuts a client that dribbles its hello past the time bound', async () => {
    const { gw, flows } = await gateway({ trustDomain: 'golden.isthmus' }, { helloTimeoutMs: 300 });
    const raw = net.connect({ host: '127.0.0.1', port: gw.port });
    const end = outcome(raw);
    let i = 0;
    const drip = setInterval(() => {
      if (i < GOLDEN.length && !raw.destroyed) raw.write(GOLDEN.subarray(i, ++i));
    }, 20);
    stops.push(() => clearInterval(drip));
    const t0 = Date.now();
    expect(await end).toBe('reset');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(Date.now() - t0).toBeLessThan(2000);
    await until(() => flows.length === 1);
    expect(flows[0]).toMatchObject({ verdict: 'error', reason: expect.stringMatching(/^ClientHello not complete within 300 ms \(\d+ bytes received\)$/) });
  });

  it('refuses connections past its limit with a reset and a flow record', async () => {
    const { gw, flows, registry } = await gateway({}, { maxConnections: 2 });
    const held = [net.connect({ host: '127.0.0.1', port: gw.port }), net.connect({ host: '127.0.0.1', port: gw.port })];
    for (const h of held) {
      h.on('error', () => {});
      stops.push(() => void h.destroy());
    }
    await until(() => gw.connections === 2);
    const third = net.connect({ host: '127.0.0.1', port: gw.port });
    expect(await outcome(third)).toBe('reset');
    await until(() => flows.length === 1);
    expect(flows[0]).toMatchObject({ verdict: 'error', reason: 'connection limit of 2 reached' });
    expect(await registry.metrics()).toMatch(/isthmus_gateway_errors_total\{route="",reason="connection_limit"[^}]*\} 1/);
    for (const h of held) h.destroy();
    await until(() => gw.connections === 0);
    // Below the limit again: taken.
    const fourth = net.connect({ host: '127.0.0.1', port: gw.port });
    fourth.on('error', () => {});
    await until(() => gw.connections === 1);
    fourth.destroy();
  });

  it('closes a spliced connection idle past its bound', async () => {
    const port = await hashBackend();
    const { gw, flows } = await gateway(
      { trustDomain: 'golden.isthmus', services: [{ name: 'api', namespace: 'default', endpoints: [{ host: '127.0.0.1', port }] }] },
      { idleTimeoutMs: 200 },
    );
    const raw = net.connect({ host: '127.0.0.1', port: gw.port });
    const end = outcome(raw);
    raw.write(GOLDEN);
    await end;
    await until(() => flows.length === 1);
    expect(flows[0]).toMatchObject({ verdict: 'error', reason: 'idle for 200 ms', sni: goldenSni });
  });

  it('swaps routes live: new connections use the new table, open ones carry on', async () => {
    const backend = await tlsBackend('api');
    const routes = {
      dc: 'dc1',
      trustDomain: TD,
      services: [{ name: 'api', namespace: 'default', endpoints: [{ host: '127.0.0.1', port: backend.port }] }],
      serverAddresses: [],
      remotes: [],
    };
    const { gw, flows } = await gateway({ services: [] });
    const refused = net.connect({ host: '127.0.0.1', port: gw.port });
    const end = outcome(refused);
    refused.write(tlsHello(`api.default.dc1.internal.${TD}`));
    expect(await end).toBe('reset');
    gw.update(routes);
    const c = await mtlsClient(gw.port, `api.default.dc1.internal.${TD}`, backend.spiffeId);
    gw.update({ ...routes, services: [] });
    expect((await echo(c.sock, Buffer.from('still here'))).toString()).toBe('still here');
    expect(flows.map((f) => f.verdict)).toEqual(['no_route']);
  });

  it('stops with no port bound and every connection closed', async () => {
    const backend = await tlsBackend('api');
    const { gw } = await gateway({ services: [{ name: 'api', namespace: 'default', endpoints: [{ host: '127.0.0.1', port: backend.port }] }] });
    const port = gw.port;
    const c = await mtlsClient(port, `api.default.dc1.internal.${TD}`, backend.spiffeId);
    const closed = new Promise((r) => c.sock.once('close', r));
    c.sock.on('error', () => {});
    await gw.stop();
    await closed;
    const again = net.createServer();
    await new Promise<void>((resolve, reject) => {
      again.once('error', reject);
      again.listen(port, '127.0.0.1', () => resolve());
    });
    await new Promise<void>((r) => again.close(() => r()));
  });
});

// The gateway with the native byte pump switched on (the default where it loads: every test above
// runs on it, and with ISTHMUS_PUMP=off on the data path): what only the pump path has to show. Run only where the addon was built; pump.test.ts fails
// when it was not on Linux x64.
describe.runIf(loadNativePump().available).each(kinds)('mesh gateway with the native byte pump, $name', ({ path }) => {
  beforeAll(() => {
    kind = path;
  });
  const routes = (port: number): Partial<GatewayRoutes> => ({
    trustDomain: 'golden.isthmus',
    services: [{ name: 'api', namespace: 'default', endpoints: [{ host: '127.0.0.1', port }] }],
  });

  it('says at start that the native pump moves the bytes', async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger({ level: 'info', write: (l) => lines.push(JSON.parse(l) as Record<string, unknown>) });
    await gateway({}, { logger, pump: 'on', pumpAfterMs: 0 });
    expect(lines.filter((l) => l.msg === 'byte pump')).toEqual([expect.objectContaining({ pump: 'native', movesBytes: 'native pump' })]);
  });

  it('hands a routed connection to the pump: the flow record and metrics count the bytes the client sent and got', async () => {
    const port = await hashBackend();
    const { gw, flows, registry } = await gateway(routes(port), { pump: 'on', pumpAfterMs: 0 });
    const sock = net.connect({ host: '127.0.0.1', port: gw.port, allowHalfOpen: true });
    const got: Buffer[] = [];
    sock.on('data', (d: Buffer) => got.push(d));
    sock.write(GOLDEN);
    // The backend's "ready:" is its answer: the connection is the pump's once it came.
    await until(() => Buffer.concat(got).toString() === 'ready:');
    expect(gw.pump!.open()).toBe(1);
    expect(gw.connections).toBe(1);
    const body = randomBytes(3 << 20);
    sock.end(body);
    await once(sock, 'end');
    const answer = Buffer.concat(got).toString();
    expect(answer).toBe(
      `ready:${createHash('sha256')
        .update(Buffer.concat([GOLDEN, body]))
        .digest('hex')}`,
    );
    await until(() => flows.length === 1);
    expect(flows[0]).toMatchObject({ verdict: 'allowed', sni: goldenSni, bytesIn: GOLDEN.length + body.length, bytesOut: answer.length });
    expect(gw.pump!.open()).toBe(0);
    expect(gw.connections).toBe(0);
    expect(gw.connectionsWithOwnBuffers).toBe(0);
    const text = await registry.metrics();
    expect(text).toMatch(new RegExp(`isthmus_gateway_bytes_in_total\\{route="api\\.default\\.dc1"[^}]*\\} ${GOLDEN.length + body.length}\n`));
    expect(text).toMatch(new RegExp(`isthmus_gateway_bytes_out_total\\{route="api\\.default\\.dc1"[^}]*\\} ${answer.length}\n`));
    expect(text).toMatch(/isthmus_gateway_connections_active\{route="api\.default\.dc1"[^}]*\} 0\n/);
  });

  it('keeps a connection on the data path for pumpAfterMs, then hands it over mid-stream (or at once after 64 KiB): every byte counted once', async () => {
    const port = await hashBackend();
    const { gw, flows } = await gateway(routes(port), { pump: 'on', pumpAfterMs: 300 });
    const sock = net.connect({ host: '127.0.0.1', port: gw.port, allowHalfOpen: true });
    const got: Buffer[] = [];
    sock.on('data', (d: Buffer) => got.push(d));
    sock.write(GOLDEN);
    await until(() => Buffer.concat(got).toString() === 'ready:');
    // Small writes on the data path: not the pump's yet.
    const parts = [randomBytes(1000), randomBytes(2000)];
    sock.write(parts[0]);
    await new Promise((r) => setTimeout(r, 50));
    expect(gw.pump!.open()).toBe(0);
    // Its time came: the pump's, and the stream goes on through it.
    await until(() => gw.pump!.open() === 1);
    sock.write(parts[1]);
    // A second connection that moves 64 KiB at once is handed over at once, well before 300 ms.
    const bulk = net.connect({ host: '127.0.0.1', port: gw.port, allowHalfOpen: true });
    const bulkGot: Buffer[] = [];
    bulk.on('data', (d: Buffer) => bulkGot.push(d));
    bulk.write(GOLDEN);
    await until(() => Buffer.concat(bulkGot).toString() === 'ready:');
    const started = Date.now();
    bulk.write(randomBytes(256 * 1024));
    await until(() => gw.pump!.open() === 2);
    expect(Date.now() - started).toBeLessThan(250);
    bulk.destroy();
    const body = randomBytes(1 << 20);
    sock.end(body);
    await once(sock, 'end');
    const sent = Buffer.concat([GOLDEN, parts[0], parts[1], body]);
    const answer = Buffer.concat(got).toString();
    expect(answer).toBe(`ready:${createHash('sha256').update(sent).digest('hex')}`);
    await until(() => flows.length === 2);
    expect(flows.find((f) => f.verdict === 'allowed' && f.bytesIn === sent.length)).toMatchObject({ bytesOut: answer.length });
    expect(gw.pump!.open()).toBe(0);
  });

  it('an upstream reset reaches the client as a reset and is recorded as one', async () => {
    const server = net.createServer((s) => {
      s.write('hi');
      // The hello first, then the client's "now", once the connection is the pump's.
      s.on('data', (d: Buffer) => d.toString('latin1').endsWith('now') && s.resetAndDestroy());
      s.on('error', () => {});
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    stops.push(() => new Promise<void>((r) => server.close(() => r())));
    const { gw, flows, registry } = await gateway(routes((server.address() as net.AddressInfo).port), { pump: 'on', pumpAfterMs: 0 });
    const sock = net.connect({ host: '127.0.0.1', port: gw.port });
    const end = outcome(sock);
    sock.write(GOLDEN);
    await until(() => gw.pump!.open() === 1);
    sock.write('now');
    expect(await end).toBe('reset');
    await until(() => flows.length === 1);
    expect(flows[0]).toMatchObject({ verdict: 'error', reason: expect.stringMatching(/^upstream 127\.0\.0\.1:\d+: ECONNRESET$/), bytesOut: 2 });
    expect(await registry.metrics()).toMatch(/isthmus_gateway_errors_total\{route="api\.default\.dc1",reason="upstream_reset"[^}]*\} 1\n/);
  });

  it('closes a pumped connection idle past its bound, and only once it idles', async () => {
    const port = await hashBackend();
    const { gw, flows } = await gateway(routes(port), { idleTimeoutMs: 300, pump: 'on', pumpAfterMs: 0 });
    const raw = net.connect({ host: '127.0.0.1', port: gw.port });
    const end = outcome(raw);
    raw.write(GOLDEN);
    await until(() => gw.pump!.open() === 1);
    // Bytes every 100 ms keep it open past the bound...
    for (let i = 0; i < 6; i++) {
      await new Promise((r) => setTimeout(r, 100));
      raw.write('x');
    }
    expect(gw.pump!.open()).toBe(1);
    // ...and then it idles.
    await end;
    await until(() => flows.length === 1);
    expect(flows[0]).toMatchObject({ verdict: 'error', reason: 'idle for 300 ms', sni: goldenSni, bytesIn: GOLDEN.length + 6 });
  });

  it('stop() closes an open pumped connection and waits for it: its flow record is out when stop() returns', async () => {
    const port = await hashBackend();
    const { gw, flows } = await gateway(routes(port), { pump: 'on', pumpAfterMs: 0 });
    const raw = net.connect({ host: '127.0.0.1', port: gw.port });
    const end = outcome(raw);
    raw.write(GOLDEN);
    await until(() => gw.pump!.open() === 1);
    expect(flows).toHaveLength(0);
    await gw.stop();
    expect(gw.pump!.open()).toBe(0);
    expect(gw.connections).toBe(0);
    expect(flows).toEqual([expect.objectContaining({ verdict: 'error', reason: 'gateway stopped', bytesIn: GOLDEN.length, bytesOut: 6 })]);
    expect(await end).toBe('closed');
  });
});

/** The first bytes a TLS client sends for `sni`. */
function tlsHello(sni: string): Buffer {
  return records(helloMessage({ sni }));
}
