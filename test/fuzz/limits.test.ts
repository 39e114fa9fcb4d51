// Oversized bodies and headers, and slow senders: the HTTP API refuses a body over 1 MiB (413,
// with or without a Content-Length) and a 100 KiB header (431), times out a body dribbled a byte at
// a time (408) and frees the socket, and keeps answering everyone else meanwhile; a ClientHello
// dribbled at a gateway or at a sidecar's inbound listener is cut off at its bound.
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FlowRecord } from '../../src/dataflow/index.js';
import { Gateway } from '../../src/gateway/index.js';
import { helloMessage, records } from '../../src/gateway/testing/hello-builder.js';
import { Sidecar } from '../../src/sidecar/index.js';
import { createRegistry } from '../../src/telemetry/index.js';
import { call, leaks, startFuzzRegion, type FuzzRegion } from './support.js';

let fr: FuzzRegion;
let host = '';
let port = 0;

beforeAll(async () => {
  fr = await startFuzzRegion();
  [host, port] = [fr.region.httpAddress.split(':')[0], Number(fr.region.httpAddress.split(':')[1])];
});

afterAll(async () => {
  await fr?.stop();
});

interface Raw {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A request through node:http, the body written in pieces as given (chunked unless a length is set). */
function request(method: string, path: string, opts: { headers?: Record<string, string>; chunks?: Buffer[]; contentLength?: number } = {}): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host,
        port,
        method,
        path,
        headers: {
          'content-type': 'application/json',
          ...(opts.contentLength !== undefined ? { 'content-length': String(opts.contentLength) } : {}),
          ...opts.headers,
        },
      },
      (res) => {
        const got: Buffer[] = [];
        res.on('data', (d) => got.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(got).toString() }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    for (const c of opts.chunks ?? []) req.write(c);
    req.end();
  });
}

/** A socket that writes `bytes` one at a time every `everyMs`; resolves with what came back and when the socket closed. */
function dribble(bytes: Buffer, everyMs: number, limitMs: number): Promise<{ answer: string; closedAfterMs: number | undefined; sent: number }> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    const started = Date.now();
    let sent = 0;
    let answer = '';
    sock.on('data', (d) => (answer += d.toString()));
    sock.on('error', () => {});
    const timer = setInterval(() => {
      if (sent < bytes.length && !sock.destroyed) sock.write(bytes.subarray(sent, ++sent));
    }, everyMs);
    const give = setTimeout(() => {
      clearInterval(timer);
      sock.destroy();
      resolve({ answer, closedAfterMs: undefined, sent });
    }, limitMs);
    sock.on('close', () => {
      clearInterval(timer);
      clearTimeout(give);
      resolve({ answer, closedAfterMs: Date.now() - started, sent });
    });
  });
}

/** Latency of a plain read, to show that slow clients do not hold others up. */
async function readLatency(): Promise<number> {
  const t = Date.now();
  const a = await call(fr.url, 'GET', '/v1/status/leader');
  expect(a.status).toBe(200);
  return Date.now() - t;
}

describe('oversized requests', () => {
  it('refuses a 10 MB body with a Content-Length with 413 and a JSON error, and changes nothing', async () => {
    const index = fr.region.store.index();
    const big = Buffer.alloc(10 << 20, 0x20);
    const r = await fetch(`${fr.url}/v1/agent/service/register`, { method: 'PUT', body: big, headers: { 'content-type': 'application/json' } });
    expect(r.status).toBe(413);
    const body = await r.json();
    expect(body).toMatchObject({ Error: 'ISTHMUS_ERR_PAYLOAD_TOO_LARGE', Message: expect.stringContaining('larger than 1048576 bytes') });
    expect(fr.region.store.index()).toBe(index);
  });

  it('refuses a 10 MB chunked body (no Content-Length) with 413 once past the bound, without reading it all', async () => {
    const index = fr.region.store.index();
    const chunk = Buffer.alloc(64 << 10, 0x20);
    const r = await request('PUT', '/v1/connect/intentions/exact?source=web&destination=big', { chunks: Array.from({ length: 160 }, () => chunk) }).catch(
      (err: Error) => err,
    );
    // The server answers as soon as the bound is passed and drops the rest: the client may see the
    // answer or, having written on, a reset. Either way nothing was written and the server goes on.
    if (!(r instanceof Error)) {
      expect(r.status).toBe(413);
      expect(JSON.parse(r.body)).toMatchObject({ Error: 'ISTHMUS_ERR_PAYLOAD_TOO_LARGE' });
    }
    expect(fr.region.store.index()).toBe(index);
    expect(await readLatency()).toBeLessThan(2000);
  });

  it('takes a body just under the bound', async () => {
    const padding = 'x'.repeat((1 << 20) - 200);
    const a = await call(fr.url, 'PUT', '/v1/acl/policy', { Name: 'near-limit', Description: 'd', Rules: `# ${padding.slice(0, 60_000)}\n` });
    expect(a.status, a.text.slice(0, 200)).toBe(200);
    const b = await call(fr.url, 'PUT', '/v1/agent/service/register', `{"Name":"pad","Pad":"${padding}"}`);
    expect(b.status, b.text.slice(0, 200)).toBe(200);
  });

  it('refuses a 100 KB header with 431, and a 10 KB one is fine', async () => {
    const r = await request('GET', '/v1/status/leader', { headers: { 'x-big': 'a'.repeat(100 << 10) } }).catch((err: Error) => err);
    if (r instanceof Error) expect((r as NodeJS.ErrnoException).code).toMatch(/ECONNRESET|EPIPE/);
    else {
      expect(r.status).toBe(431);
      expect(leaks(r.body)).toBeUndefined();
    }
    // Past the count of headers the server reads: a plain refusal or an answer, never more.
    const many = await request('GET', '/v1/status/leader', { headers: Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`x-h${i}`, 'v'])) });
    expect([200, 400, 431]).toContain(many.status);
    expect(leaks(many.body)).toBeUndefined();
    const ok = await request('GET', '/v1/status/leader', { headers: { 'x-ok': 'a'.repeat(10 << 10) } });
    expect(ok.status).toBe(200);
  });
});

describe('slow senders', () => {
  it('times out a body dribbled a byte per 100 ms with 408, frees the socket, and serves others meanwhile', async () => {
    const index = fr.region.store.index();
    const head = `PUT /v1/agent/service/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n`;
    const sock = net.connect({ host, port });
    await new Promise((r) => sock.once('connect', r));
    sock.write(head);
    const slow = (async () => {
      const started = Date.now();
      let answer = '';
      sock.on('data', (d) => (answer += d.toString()));
      sock.on('error', () => {});
      const body = Buffer.from(`{"Name":"slow","Meta":{"k":"${'v'.repeat(900)}"}}`);
      let i = 0;
      const t = setInterval(() => {
        if (!sock.destroyed && i < body.length) sock.write(body.subarray(i, ++i));
      }, 100);
      await new Promise<void>((r) => {
        sock.on('close', () => r());
        setTimeout(r, 20_000);
      });
      clearInterval(t);
      return { answer, ms: Date.now() - started, closed: sock.destroyed };
    })();
    // Others are served while it dribbles.
    await new Promise((r) => setTimeout(r, 500));
    for (let i = 0; i < 5; i++) expect(await readLatency()).toBeLessThan(2000);
    const s = await slow;
    expect(s.answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(s.answer).toContain('ISTHMUS_ERR_REQUEST_TIMEOUT');
    expect(s.closed).toBe(true);
    expect(s.ms).toBeGreaterThan(4000);
    expect(s.ms).toBeLessThan(12_000);
    expect(fr.region.store.index()).toBe(index);
  });

  it('does not let clients dribbling their headers hold up other requests', async () => {
    const head = Buffer.from(`GET /v1/status/leader HTTP/1.1\r\nHost: x\r\nX-Slow: ${'y'.repeat(200)}\r\n\r\n`);
    const slow = Array.from({ length: 20 }, () => dribble(head, 100, 3000));
    await new Promise((r) => setTimeout(r, 300));
    for (let i = 0; i < 5; i++) expect(await readLatency()).toBeLessThan(2000);
    const done = await Promise.all(slow);
    // Still dribbling when given up: none was answered before its headers were complete.
    for (const d of done) expect(d.answer).toBe('');
  });
});

describe('slow TLS senders at the data plane listeners', () => {
  const hello = records(helloMessage({ sni: 'api.default.dc1.internal.example.isthmus' }));

  /** Dribbles a ClientHello a byte per 100 ms at `p`; when the listener closed the connection. */
  function dribbleTls(p: number, limitMs: number): Promise<number | undefined> {
    return new Promise((resolve) => {
      const sock = net.connect({ host: '127.0.0.1', port: p });
      const started = Date.now();
      let i = 0;
      sock.on('error', () => {});
      sock.on('data', () => {});
      const t = setInterval(() => {
        if (!sock.destroyed && i < hello.length) sock.write(hello.subarray(i, ++i));
      }, 100);
      const give = setTimeout(() => {
        clearInterval(t);
        sock.destroy();
        resolve(undefined);
      }, limitMs);
      sock.on('close', () => {
        clearInterval(t);
        clearTimeout(give);
        resolve(Date.now() - started);
      });
    });
  }

  it('a gateway cuts a ClientHello dribbled past its hello bound, and records why', async () => {
    const flows: FlowRecord[] = [];
    const gw = new Gateway({
      id: 'gw-limits',
      dc: 'dc1',
      host: '127.0.0.1',
      port: 0,
      registry: createRegistry({ dc: 'dc1', node: 'gw' }, { processMetrics: false }),
      routes: { dc: 'dc1', trustDomain: 'example.isthmus', services: [], serverAddresses: [], remotes: [] },
      onFlow: (r) => void flows.push(r),
      helloTimeoutMs: 1000,
    });
    await gw.start();
    try {
      const closed = await dribbleTls(gw.port, 8000);
      expect(closed).toBeDefined();
      expect(closed!).toBeGreaterThanOrEqual(900);
      expect(closed!).toBeLessThan(5000);
      for (let i = 0; i < 50 && flows.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(flows[0]).toMatchObject({ verdict: 'error', reason: expect.stringMatching(/^ClientHello not complete within 1000 ms/) });
      for (let i = 0; i < 50 && gw.connections > 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(gw.connections).toBe(0);
    } finally {
      await gw.stop();
    }
  });

  it('a sidecar cuts an inbound handshake dribbled past its bound and frees the socket', async () => {
    const leaf = await fr.region.ca.issueLeaf('api');
    const bundle = fr.region.ca.bundle();
    const flows: FlowRecord[] = [];
    const sidecar = new Sidecar({
      config: {
        service: { id: 'api-sidecar-proxy', name: 'api', namespace: 'default', dc: 'dc1', trustDomain: fr.region.trustDomain },
        leaf: { certPem: leaf.certPem, keyPem: leaf.keyPem, spiffeId: leaf.spiffeId },
        bundle: { roots: bundle.roots, chain: leaf.chain },
        inbound: { bindHost: '127.0.0.1', bindPort: 0, localAppHost: '127.0.0.1', localAppPort: 9, protocol: 'tcp' },
        upstreams: [],
        policy: { intentions: [], defaultAllow: true, index: 0, sourceDc: 'dc1' },
      },
      onFlow: (r) => void flows.push(r),
      handshakeTimeoutMs: 1000,
    });
    await sidecar.start();
    try {
      const closed = await dribbleTls(sidecar.inboundPort, 8000);
      expect(closed, 'the sidecar kept a dribbling handshake open').toBeDefined();
      expect(closed!).toBeGreaterThanOrEqual(900);
      expect(closed!).toBeLessThan(5000);
      for (let i = 0; i < 50 && flows.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(flows[0]).toMatchObject({ verdict: 'denied', reason: expect.stringContaining('TLS handshake refused') });
    } finally {
      await sidecar.stop();
    }
  });
});
