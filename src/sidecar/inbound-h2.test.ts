// The inbound's HTTP/2 path with real parts: a grpc-js app behind a server sidecar, a grpc-js client
// through a client sidecar's upstream listener (h2c with prior knowledge, relayed over mTLS), and
// plain node:http2 for the http2 protocol.
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { describe, expect, it } from 'vitest';
import type { FlowRecord } from '../dataflow/index.js';
import type { Intention } from '../intentions/index.js';
import { grpcPercentEncode } from './inbound-h2.js';
import { Sidecar, type SidecarProtocol } from './sidecar.js';
import { TD, intention, testPki as pki, svc, useStops } from './testing/fixtures.js';
import { ECHO_SERVICE, echoClient, grpc, startEchoApp, type EchoClient } from './testing/grpc-echo.js';

const stops = useStops();

const ALLOW = [intention({ Action: 'allow' })];
const DENY_ONE = [
  intention({
    Permissions: [
      { Action: 'deny', HTTP: { PathExact: `/${ECHO_SERVICE}/Denied` } },
      { Action: 'allow', HTTP: { PathPrefix: '/' } },
    ],
  }),
];

/** A server sidecar for "api" (inbound `protocol`) and a client sidecar for "web" whose upstream api says `upstreamProtocol`. */
async function mesh(opts: { protocol: SidecarProtocol; upstreamProtocol: SidecarProtocol; appPort: number; intentions: Intention[] }) {
  const { leaf, bundle } = await pki();
  const flows: FlowRecord[] = [];
  const api = new Sidecar({
    config: {
      service: svc('api'),
      leaf: await leaf('api'),
      bundle,
      inbound: { bindHost: '127.0.0.1', bindPort: 0, localAppHost: '127.0.0.1', localAppPort: opts.appPort, protocol: opts.protocol },
      upstreams: [],
      policy: { intentions: opts.intentions, defaultAllow: false, index: 7, sourceDc: 'dc1' },
    },
    onFlow: (r) => flows.push(r),
  });
  await api.start();
  stops.push(() => api.stop());
  const web = new Sidecar({
    config: {
      service: svc('web'),
      leaf: await leaf('web'),
      bundle,
      upstreams: [
        {
          name: 'api',
          namespace: 'default',
          datacenter: 'dc1',
          localBindHost: '127.0.0.1',
          localBindPort: 0,
          protocol: opts.upstreamProtocol,
          endpoints: [
            { host: '127.0.0.1', port: api.inboundPort, sni: `api.default.dc1.internal.${TD}`, spiffeId: `spiffe://${TD}/ns/default/dc/dc1/svc/api` },
          ],
        },
      ],
      policy: { intentions: [], defaultAllow: false, index: 0, sourceDc: 'dc1' },
    },
    onFlow: (r) => flows.push(r),
  });
  await web.start();
  stops.push(() => web.stop());
  return { flows, port: web.upstreamPort('api') };
}

async function grpcMesh(opts: { intentions?: Intention[]; upstreamProtocol?: SidecarProtocol; appPort?: number } = {}) {
  const app = await startEchoApp();
  stops.push(() => app.close());
  const m = await mesh({
    protocol: 'grpc',
    upstreamProtocol: opts.upstreamProtocol ?? 'grpc',
    appPort: opts.appPort ?? app.port,
    intentions: opts.intentions ?? ALLOW,
  });
  const client = echoClient('127.0.0.1', m.port);
  stops.push(() => client.close());
  return { ...m, app, client };
}

type Unary = { text?: string; code?: number; details?: string; metadata?: Record<string, unknown> };
function unary(client: EchoClient, method: 'say' | 'denied', text: string): Promise<Unary> {
  return new Promise((resolve) => {
    client[method]({ text }, new grpc.Metadata(), (err, r) =>
      resolve(err ? { code: err.code, details: err.details, metadata: err.metadata.getMap() } : { text: r?.text, code: grpc.status.OK }),
    );
  });
}

const waitFor = async (what: string, ok: () => boolean) => {
  const end = Date.now() + 5000;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

const netConnect = (port: number) => net.connect(port, '127.0.0.1').on('error', () => {});

const streams = (flows: FlowRecord[]) => flows.filter((f) => f.hop === 'server-sidecar' && f.requestIndex > 0);

describe('inbound HTTP/2 for gRPC', () => {
  it('carries unary calls as streams of one connection, each recorded with its path and the connection under its traceId', async () => {
    const { client, flows, app } = await grpcMesh();
    expect(await unary(client, 'say', 'hello')).toEqual({ text: 'said hello', code: grpc.status.OK });
    expect(await unary(client, 'say', 'again')).toEqual({ text: 'said again', code: grpc.status.OK });
    await waitFor('two stream records', () => streams(flows).length === 2);
    const [a, b] = streams(flows);
    expect(a).toMatchObject({
      requestIndex: 1,
      verdict: 'allowed',
      intentionId: 'web-api',
      source: { service: 'web' },
      destination: { service: 'api' },
      http: { method: 'POST', path: `/${ECHO_SERVICE}/Say`, status: 200 },
      reason: expect.stringContaining('grpc-status 0'),
    });
    expect(b).toMatchObject({ requestIndex: 2, http: { path: `/${ECHO_SERVICE}/Say` } });
    expect(a.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(a.traceId).not.toBe('0'.repeat(32));
    expect(b.traceId).toBe(a.traceId);
    expect(a.bytesOut).toBeGreaterThan(0);
    // The app got the traceparent the client sidecar started for each call.
    await waitFor('two client records', () => flows.filter((f) => f.hop === 'client-sidecar').length === 2);
    expect(app.traceparents).toEqual(flows.filter((f) => f.hop === 'client-sidecar').map((f) => f.http?.traceparent));
    expect(new Set(app.traceparents).size).toBe(2);
    // Each call's client hop joins the server hop by the connection's ClientHello random.
    expect(flows.filter((f) => f.hop === 'client-sidecar').map((f) => f.traceId)).toEqual([a.traceId, a.traceId]);
  });

  it('streams a server-streaming call: each message reaches the caller before the app sends the next', async () => {
    const { client, app, flows } = await grpcMesh();
    const got: string[] = [];
    const arrived: ((v: void) => void)[] = [];
    const arrival = (i: number) => new Promise<void>((r) => (arrived[i] = r));
    const waits = Array.from({ length: 5 }, (_, i) => arrival(i));
    // Message i+1 leaves the app only once message i has reached the caller: any buffering on the way stalls the call.
    app.gate = (i) => (i === 0 ? Promise.resolve() : waits[i - 1]);
    const sentWhenArrived: number[] = [];
    const call = client.count({ n: 5 });
    const ended = new Promise<{ code: number }>((resolve) => {
      call.on('data', (m: { text: string }) => {
        got.push(m.text);
        sentWhenArrived.push(app.sent);
        arrived[Number(m.text)]?.();
      });
      call.on('status', (s: grpc.StatusObject) => resolve({ code: s.code }));
      call.on('error', () => {});
    });
    expect(await ended).toEqual({ code: grpc.status.OK });
    expect(got).toEqual(['0', '1', '2', '3', '4']);
    expect(sentWhenArrived).toEqual([1, 2, 3, 4, 5]);
    await waitFor('the stream record', () => streams(flows).length === 1);
    expect(streams(flows)[0]).toMatchObject({ verdict: 'allowed', http: { path: `/${ECHO_SERVICE}/Count`, status: 200 } });
  });

  it('denies one method by an L7 permission with PERMISSION_DENIED naming the intention, and lets the others through', async () => {
    const { client, app, flows } = await grpcMesh({ intentions: DENY_ONE });
    const denied = await unary(client, 'denied', 'x');
    expect(denied).toMatchObject({
      code: grpc.status.PERMISSION_DENIED,
      details: 'denied by intention web => api, permission 0',
      metadata: { 'isthmus-error': 'ISTHMUS_ERR_INTENTION_DENIED', 'isthmus-intention-id': 'web-api' },
    });
    expect(app.deniedReached).toBe(0);
    expect(await unary(client, 'say', 'ok')).toEqual({ text: 'said ok', code: grpc.status.OK });
    await waitFor('two stream records', () => streams(flows).length === 2);
    expect(streams(flows).map((f) => [f.requestIndex, f.verdict, f.http?.path, f.http?.status, f.intentionId])).toEqual([
      [1, 'denied', `/${ECHO_SERVICE}/Denied`, 200, 'web-api'],
      [2, 'allowed', `/${ECHO_SERVICE}/Say`, 200, 'web-api'],
    ]);
    expect(streams(flows)[0].reason).toBe('denied by intention web => api, permission 0; grpc-status 7');
  });

  it("passes the app's status, message and trailers through, after data too", async () => {
    const { client, flows } = await grpcMesh();
    expect(await unary(client, 'say', 'fail')).toMatchObject({
      code: grpc.status.NOT_FOUND,
      details: 'no such thing',
      metadata: { 'x-app-trailer': 'from the app' },
    });
    const call = client.count({ n: -1 });
    const got: string[] = [];
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      call.on('data', (m: { text: string }) => got.push(m.text));
      call.on('status', resolve);
      call.on('error', () => {});
    });
    expect(got).toEqual(['0', '1']);
    expect({ code: status.code, details: status.details }).toEqual({ code: grpc.status.RESOURCE_EXHAUSTED, details: 'stopped after 2' });
    await waitFor('two stream records', () => streams(flows).length === 2);
    expect(streams(flows).map((f) => f.reason.replace(/.*; /, ''))).toEqual(['grpc-status 5', 'grpc-status 8']);
  });

  it('holds the app back while the caller does not read (flow control end to end), then delivers everything', async () => {
    const { app, port } = await grpcMesh();
    const n = 400;
    const size = 64 * 1024;
    // A gRPC call by hand (grpc-js reads on while paused): Count{n: 400, size: 65536}, framed.
    const message = Buffer.from([0x08, 0x90, 0x03, 0x10, 0x80, 0x80, 0x04]);
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, message.length]), message]);
    const session = http2.connect(`http://127.0.0.1:${port}`);
    stops.push(() => void session.destroy());
    const req = session.request({ ':method': 'POST', ':path': `/${ECHO_SERVICE}/Count`, 'content-type': 'application/grpc', te: 'trailers' });
    req.end(frame);
    let trailers: http2.IncomingHttpHeaders = {};
    req.on('trailers', (t) => (trailers = t));
    req.pause();
    // The app writes only as the path drains; with the caller not reading it must stall well short of n.
    let last = -1;
    while (app.sent !== last) {
      last = app.sent;
      await new Promise((r) => setTimeout(r, 300));
    }
    expect(app.sent).toBeGreaterThan(0);
    expect(app.sent * size).toBeLessThan(8 * 1024 * 1024);
    let bytes = 0;
    req.on('data', (d: Buffer) => (bytes += d.length));
    await new Promise<void>((resolve) => {
      req.on('end', () => resolve());
      req.resume();
    });
    expect(trailers['grpc-status']).toBe('0');
    // Each message: 5 bytes of frame, the field's tag and length (1 + 3), its bytes.
    expect(bytes).toBe(n * (5 + 4 + size));
  });

  it("carries a caller's cancel to the app", async () => {
    const { client, app, flows } = await grpcMesh();
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    app.gate = (i) => (i === 0 ? Promise.resolve() : held);
    const call = client.count({ n: 3 });
    call.on('error', () => {});
    await new Promise<void>((r) => call.once('data', () => r()));
    call.cancel();
    await waitFor('the app to see the cancel', () => app.cancelled === 1);
    release();
    await waitFor('the stream record', () => streams(flows).length === 1);
    expect(streams(flows)[0]).toMatchObject({ verdict: 'allowed', reason: expect.stringContaining('the caller reset the stream (code 8)') });
  });

  it('ends a call whose app goes away mid-stream with an error, records it, and answers the next with UNAVAILABLE', async () => {
    const { client, app, flows } = await grpcMesh();
    app.gate = (i) => (i === 0 ? Promise.resolve() : new Promise(() => {}));
    const call = client.count({ n: 3 });
    const status = new Promise<grpc.StatusObject>((resolve) => {
      call.on('status', resolve);
      call.on('error', () => {});
    });
    await new Promise<void>((r) => call.once('data', () => r()));
    await app.close();
    const ended = await status;
    expect(ended.code).toBe(grpc.status.UNAVAILABLE);
    await waitFor('the stream record', () => streams(flows).length === 1);
    expect(streams(flows)[0]).toMatchObject({ verdict: 'error', reason: expect.stringMatching(/^the application/), http: { path: `/${ECHO_SERVICE}/Count` } });
    expect(await unary(client, 'say', 'x')).toMatchObject({ code: grpc.status.UNAVAILABLE, details: 'local application unreachable' });
  });

  it('answers UNAVAILABLE when the app cannot be reached', async () => {
    const gone = await startEchoApp();
    const port = gone.port;
    await gone.close();
    const { client, flows } = await grpcMesh({ appPort: port });
    expect(await unary(client, 'say', 'x')).toMatchObject({ code: grpc.status.UNAVAILABLE, details: 'local application unreachable' });
    await waitFor('the stream record', () => streams(flows).length === 1);
    expect(streams(flows)[0]).toMatchObject({ verdict: 'error', reason: expect.stringContaining('local application unreachable') });
  });

  it('takes h2 spoken with prior knowledge through a client sidecar that offers no ALPN (its upstream protocol unknown)', async () => {
    const { client, flows } = await grpcMesh({ intentions: DENY_ONE, upstreamProtocol: 'tcp' });
    expect(await unary(client, 'say', 'plain')).toEqual({ text: 'said plain', code: grpc.status.OK });
    expect((await unary(client, 'denied', 'x')).code).toBe(grpc.status.PERMISSION_DENIED);
    await waitFor('two stream records', () => streams(flows).length === 2);
    expect(streams(flows).map((f) => f.verdict)).toEqual(['allowed', 'denied']);
  });
});

describe('inbound HTTP/2 for http2 and http', () => {
  /** An h2c client through the upstream listener: status, body and trailers of one request. */
  async function h2get(
    port: number,
    path: string,
  ): Promise<{ status: number; body: string; trailers: http2.IncomingHttpHeaders; headers: http2.IncomingHttpHeaders }> {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    stops.push(() => void session.close());
    return new Promise((resolve, reject) => {
      const req = session.request({ ':path': path });
      let body = '';
      let headers: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders = {};
      req.on('response', (h) => (headers = h));
      req.on('trailers', (t) => (trailers = t));
      req.on('data', (d) => (body += d));
      req.on('end', () => resolve({ status: Number(headers[':status']), body, trailers, headers }));
      req.on('error', reject);
    });
  }

  it('http2: denies with the 403 body, forwards the rest over h2c with their trailers', async () => {
    const app = http2.createServer();
    app.on('stream', (stream, headers) => {
      stream.respond({ ':status': 200, 'x-proto': 'h2' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'x-checksum': 'abc' }));
      stream.end(`h2 app saw ${headers[':path']}`);
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    stops.push(() => new Promise<void>((r) => app.close(() => r())));
    const { port, flows } = await mesh({
      protocol: 'http2',
      upstreamProtocol: 'http2',
      appPort: (app.address() as net.AddressInfo).port,
      intentions: [
        intention({
          Permissions: [
            { Action: 'deny', HTTP: { PathPrefix: '/admin' } },
            { Action: 'allow', HTTP: { PathPrefix: '/' } },
          ],
        }),
      ],
    });
    const ok = await h2get(port, '/orders');
    expect([ok.status, ok.body, ok.headers['x-proto'], ok.trailers['x-checksum']]).toEqual([200, 'h2 app saw /orders', 'h2', 'abc']);
    const denied = await h2get(port, '/admin/users');
    expect(denied.status).toBe(403);
    expect(JSON.parse(denied.body)).toEqual({
      Error: 'ISTHMUS_ERR_INTENTION_DENIED',
      Message: 'denied by intention web => api, permission 0',
      IntentionID: 'web-api',
      Permission: 'Permissions[0]',
    });
    await waitFor('two stream records', () => streams(flows).length === 2);
    expect(streams(flows).map((f) => [f.verdict, f.http?.path, f.http?.status])).toEqual([
      ['allowed', '/orders', 200],
      ['denied', '/admin/users', 403],
    ]);
  });

  it('http2: an HTTP/1.1 caller reaches an app that speaks only h2c, trailers and all', async () => {
    const app = http2.createServer();
    app.on('stream', (stream, headers) => {
      let body = '';
      stream.on('data', (d) => (body += d));
      stream.on('end', () => {
        stream.respond({ ':status': 201, 'x-proto': 'h2' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'x-checksum': 'abc' }));
        stream.end(`h2 app saw ${headers[':method']} ${headers[':path']} ${headers[':authority'] ? 'with' : 'without'} authority: ${body}`);
      });
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    stops.push(() => new Promise<void>((r) => app.close(() => r())));
    const { port, flows } = await mesh({ protocol: 'http2', upstreamProtocol: 'tcp', appPort: (app.address() as net.AddressInfo).port, intentions: ALLOW });
    const res = await new Promise<{ status: number; body: string; trailers: NodeJS.Dict<string>; proto: string | undefined }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/things', agent: false, headers: { te: 'trailers' } }, (r) => {
        let body = '';
        r.on('data', (d) => (body += d));
        r.on('end', () => resolve({ status: r.statusCode!, body, trailers: r.trailers, proto: r.headers['x-proto'] as string | undefined }));
      });
      req.on('error', reject);
      req.end('hello');
    });
    expect(res).toEqual({ status: 201, body: 'h2 app saw POST /things with authority: hello', trailers: { 'x-checksum': 'abc' }, proto: 'h2' });
    await waitFor('the request record', () => streams(flows).length === 1);
    expect(streams(flows)[0]).toMatchObject({ verdict: 'allowed', http: { method: 'POST', path: '/things', status: 201 } });
  });

  it('http: an h2 caller is checked per stream and forwarded to the app as HTTP/1.1', async () => {
    const app = http.createServer((req, res) => res.end(`h1 app saw ${req.method} ${req.url} v${req.httpVersion} host ${req.headers.host ? 'set' : 'unset'}`));
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    stops.push(
      () =>
        new Promise<void>((r) => {
          app.closeAllConnections();
          app.close(() => r());
        }),
    );
    const { port, flows } = await mesh({
      protocol: 'http',
      upstreamProtocol: 'http2',
      appPort: (app.address() as net.AddressInfo).port,
      intentions: [
        intention({
          Permissions: [
            { Action: 'deny', HTTP: { PathPrefix: '/admin' } },
            { Action: 'allow', HTTP: { PathPrefix: '/' } },
          ],
        }),
      ],
    });
    expect(await h2get(port, '/y?q=1')).toMatchObject({ status: 200, body: 'h1 app saw GET /y?q=1 v1.1 host set' });
    expect(await h2get(port, '/admin')).toMatchObject({ status: 403 });
    await waitFor('two stream records', () => streams(flows).length === 2);
    expect(streams(flows).map((f) => [f.verdict, f.http?.path, f.http?.status])).toEqual([
      ['allowed', '/y?q=1', 200],
      ['denied', '/admin', 403],
    ]);
  });
});

describe('the client sidecar', () => {
  it('offers h2 by ALPN to an http2 or grpc upstream, nothing to the others', async () => {
    const { leaf, bundle } = await pki();
    const api = await leaf('api');
    const offered: (string | false)[] = [];
    // The server side of the test: a TLS listener with api's identity that says what was negotiated.
    const srv = tls.createServer(
      {
        key: api.keyPem,
        cert: [api.certPem.trim(), ...bundle.chain].join('\n'),
        ca: bundle.roots,
        requestCert: true,
        ALPNProtocols: ['h2', 'http/1.1'],
      },
      (sock) => {
        offered.push(sock.alpnProtocol ?? false);
        // Read (and drop) what the sidecar relays, or its end is never seen and close() waits: Node 24
        // delivers what the peer sends after this side's end(), where Node 20 dropped it.
        sock.resume();
        sock.end();
      },
    );
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    stops.push(() => new Promise<void>((r) => srv.close(() => r())));
    const protocols: SidecarProtocol[] = ['grpc', 'http2', 'http', 'tcp'];
    const web = new Sidecar({
      config: {
        service: svc('web'),
        leaf: await leaf('web'),
        bundle,
        upstreams: protocols.map((protocol) => ({
          name: `api-${protocol}`,
          namespace: 'default',
          datacenter: 'dc1',
          localBindHost: '127.0.0.1',
          localBindPort: 0,
          protocol,
          endpoints: [{ host: '127.0.0.1', port: (srv.address() as net.AddressInfo).port, sni: `api.default.dc1.internal.${TD}`, spiffeId: api.spiffeId }],
        })),
        policy: { intentions: [], defaultAllow: false, index: 0, sourceDc: 'dc1' },
      },
      onFlow: () => {},
    });
    await web.start();
    stops.push(() => web.stop());
    // What each upstream's connections offered: an http, http2 or grpc upstream is an L7 proxy (it
    // dials once it has a request, and may dial again when the connection is closed before an answer).
    const seen: Record<string, (string | false)[]> = {};
    for (const protocol of protocols) {
      const port = web.upstreamPort(`api-${protocol}`);
      if (protocol === 'grpc' || protocol === 'http2') {
        const c = http2.connect(`http://127.0.0.1:${port}`);
        c.on('error', () => {});
        await new Promise<void>((r) =>
          c
            .request({ ':path': '/' })
            .on('error', () => {})
            .once('close', () => r())
            .end()
            .resume(),
        );
        c.destroy();
      } else {
        const s = netConnect(port);
        s.on('data', () => {});
        await new Promise<void>((r) => s.once('close', () => r()).write('GET / HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n'));
      }
      seen[protocol] = offered.splice(0);
    }
    for (const h2 of [seen.grpc, seen.http2]) {
      expect(h2.length).toBeGreaterThan(0);
      expect(new Set(h2)).toEqual(new Set(['h2']));
    }
    expect(seen.tcp).toEqual([false]);
    expect(seen.http.length).toBeGreaterThan(0);
    expect(new Set(seen.http)).toEqual(new Set([false]));
  });
});

describe('grpcPercentEncode', () => {
  it('keeps printable ASCII and encodes the rest, % included, as UTF-8 bytes', () => {
    expect(grpcPercentEncode('denied by intention web => api')).toBe('denied by intention web => api');
    expect(grpcPercentEncode('50% ü\n')).toBe('50%25 %C3%BC%0A');
  });
});
