// A region (startRegion) with a real `isthmus gateway` process and an `isthmus connect proxy` for
// "api": the gateway registers as a mesh-gateway, a client reaches api's sidecar through it by SNI
// (mTLS end to end, the gateway never terminating), both hops record the flow under one traceId,
// an unknown SNI is reset and recorded, and a killed gateway stops counting as healthy.
import { rmSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadRegionConfig } from '../../src/config/index.js';
import { startRegion, type Region } from '../../src/region/index.js';
import { silentLogger } from '../../src/telemetry/index.js';
import { spiffeOf, traceIdFromKeylog } from '../../src/sidecar/index.js';
import { api, freePort, runCli, startCli, startServer, tempDir } from '../harness/server-process.js';

let region: Region;
let base = '';
let app: net.Server;
let gatewayPort = 0;
let metricsPort = 0;
let gatewayOutput: () => string = () => '';
const stops: (() => Promise<unknown> | void)[] = [];

const poll = async <T>(fn: () => Promise<T>, ok: (v: T) => boolean, what: string, ms = 10_000): Promise<T> => {
  const end = Date.now() + ms;
  let v = await fn();
  while (!ok(v) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 100));
    v = await fn();
  }
  if (!ok(v)) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v)}`);
  return v;
};

beforeAll(async () => {
  const config = loadRegionConfig({ mode: 'dev', env: {}, flags: { 'http-addr': '127.0.0.1:0', 'grpc-addr': '127.0.0.1:0' } });
  region = await startRegion(config, { logger: silentLogger, processMetrics: false });
  stops.push(() => region.stop());
  base = `http://${region.httpAddress}`;

  app = net.createServer((s) => {
    s.on('data', (d) => s.write(`api:${d}`));
    s.on('error', () => {});
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  stops.push(() => new Promise<void>((r) => app.close(() => r())));
  const sidecarPort = await freePort();
  const reg = await api(base, 'PUT', '/v1/agent/service/register', {
    Name: 'api',
    Port: (app.address() as net.AddressInfo).port,
    Tags: ['v1'],
    Connect: { SidecarService: { Port: sidecarPort } },
  });
  expect(reg.status).toBe(200);
  const sidecar = await startCli(['connect', 'proxy', '--sidecar-for', 'api', '--grpc-addr', region.grpcAddress], /Sidecar for api/);
  stops.push(() => sidecar.stop());

  gatewayPort = await freePort();
  metricsPort = await freePort();
  const gw = await startCli(
    [
      'gateway',
      '--dc',
      'dc1',
      '--addr',
      `127.0.0.1:${gatewayPort}`,
      '--wan-addr',
      `127.0.0.1:${gatewayPort}`,
      '--server',
      region.grpcAddress,
      '--metrics-addr',
      `127.0.0.1:${metricsPort}`,
    ],
    /Mesh gateway \S+ \(datacenter dc1\) listening/,
  );
  stops.push(() => gw.stop());
  gatewayOutput = gw.output;
  // Routed once its routes arrived (the log says so).
  await poll(
    async () => gw.output(),
    (o) => o.includes('"routes received"'),
    "the gateway's routes",
  );
});

afterAll(async () => {
  while (stops.length) await stops.pop()!();
});

/** The JSON log lines in a process's output. */
const logLines = (out: string): Record<string, unknown>[] =>
  out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

async function mtls(sni: string, port = gatewayPort) {
  const leaf = (await api(base, 'GET', '/v1/agent/connect/ca/leaf/web')).body;
  const roots = (await api(base, 'GET', '/v1/connect/ca/roots')).body.Roots.map((r: { RootCert: string }) => r.RootCert);
  let traceId = '';
  const sock = tls.connect({
    host: '127.0.0.1',
    port,
    servername: sni,
    key: leaf.PrivateKeyPEM,
    cert: [leaf.CertPEM.trim(), ...(leaf.Chain as string[]).map((c) => c.trim())].join('\n'),
    ca: roots,
    minVersion: 'TLSv1.3',
    checkServerIdentity: (_h, cert) => {
      const got = spiffeOf(cert);
      return got === `spiffe://${region.trustDomain}/ns/default/dc/dc1/svc/api` ? undefined : new Error(`reached ${got}`);
    },
  });
  sock.on('keylog', (line) => (traceId ||= traceIdFromKeylog(line) ?? ''));
  await new Promise<void>((resolve, reject) => {
    sock.once('secureConnect', resolve);
    sock.once('error', reject);
  });
  return { sock, traceId: () => traceId };
}

describe('isthmus gateway', () => {
  it('registers in the catalog as a mesh-gateway with its LAN and WAN addresses', async () => {
    const entries = (await api(base, 'GET', '/v1/catalog/service/mesh-gateway')).body;
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({
      ServiceKind: 'mesh-gateway',
      ServiceName: 'mesh-gateway',
      ServiceID: `mesh-gateway-127.0.0.1-${gatewayPort}`,
      ServiceAddress: '127.0.0.1',
      ServicePort: gatewayPort,
      ServiceTaggedAddresses: { lan: { Address: '127.0.0.1', Port: gatewayPort }, wan: { Address: '127.0.0.1', Port: gatewayPort } },
    });
    const healthy = (await api(base, 'GET', '/v1/health/service/mesh-gateway?passing')).body;
    expect(healthy).toHaveLength(1);
  });

  it("carries a client to the service's sidecar by SNI, and both hops record it under one traceId", async () => {
    const c = await mtls(`api.default.dc1.internal.${region.trustDomain}`);
    const answer = await new Promise<string>((resolve, reject) => {
      c.sock.once('data', (d) => resolve(String(d)));
      c.sock.once('close', () => reject(new Error('closed before answering')));
      c.sock.write('hello');
    });
    expect(answer).toBe('api:hello');
    c.sock.end();
    const trace = c.traceId();
    expect(trace).toMatch(/^[0-9a-f]{32}$/);
    const records = await poll(
      async () => (await api(base, 'GET', `/v1/flows?trace=${trace}`)).body.Records as any[],
      (r) => r.length >= 2,
      'flows of both hops',
    );
    const byHop = Object.fromEntries(records.map((r) => [r.hop, r]));
    expect(Object.keys(byHop).sort()).toEqual(['gateway-ingress', 'server-sidecar']);
    expect(byHop['gateway-ingress']).toMatchObject({
      verdict: 'allowed',
      sni: `api.default.dc1.internal.${region.trustDomain}`,
      destination: { service: 'api', dc: 'dc1' },
      reporter: `mesh-gateway-127.0.0.1-${gatewayPort}`,
    });
    expect(byHop['server-sidecar']).toMatchObject({ verdict: 'allowed', source: { service: 'web' }, destination: { service: 'api' } });

    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(metrics).toMatch(/isthmus_gateway_connections_total\{route="api\.default\.dc1",hop="gateway-ingress"[^}]*\} 1/);
  });

  it('resets an unknown SNI and records it as no_route', async () => {
    const err = await mtls(`ghost.default.dc1.internal.${region.trustDomain}`).then(
      () => undefined,
      (e: NodeJS.ErrnoException) => e,
    );
    expect(err?.code).toBe('ECONNRESET');
    const records = await poll(
      async () => (await api(base, 'GET', '/v1/flows?verdict=no_route')).body.Records as any[],
      (r) => r.length >= 1,
      'the no_route flow',
    );
    expect(records[0]).toMatchObject({
      hop: 'gateway-ingress',
      sni: `ghost.default.dc1.internal.${region.trustDomain}`,
      reason: expect.stringContaining('no healthy instance of ghost'),
    });
  });

  it('refuses bad flags with one line naming the flag', async () => {
    const r = await runCli(['gateway', '--addr', 'localhost', '--server', region.grpcAddress]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('Error: --addr must be host:port (e.g. 127.0.1.1:8443), got "localhost"');
  });

  it('stops counting a killed gateway as healthy', async () => {
    const port = await freePort();
    const doomed = await startCli(['gateway', '--addr', `127.0.0.1:${port}`, '--server', region.grpcAddress, '--id', 'doomed'], /Mesh gateway doomed/);
    stops.push(() => doomed.stop());
    await poll(
      async () => (await api(base, 'GET', '/v1/health/service/mesh-gateway?passing')).body.map((e: any) => e.Service.ID),
      (ids) => ids.includes('doomed'),
      'the second gateway passing',
    );
    doomed.child.kill('SIGKILL');
    const ids = await poll(
      async () => (await api(base, 'GET', '/v1/health/service/mesh-gateway?passing')).body.map((e: any) => e.Service.ID),
      (list) => !list.includes('doomed'),
      'the killed gateway to fail',
    );
    expect(ids).toEqual([`mesh-gateway-127.0.0.1-${gatewayPort}`]);
  });

  it('says at start which data path it uses; switched off (by flag or ISTHMUS_FAST_PATH=off) it carries traffic on the plain one', async () => {
    expect(logLines(gatewayOutput()).filter((l) => l.msg === 'data path')).toEqual([expect.objectContaining({ path: 'fast', selfTest: 'passed' })]);
    const ways: [string, string[], NodeJS.ProcessEnv, string][] = [
      ['flag', ['--fast-path', 'off'], {}, 'fast path switched off (--fast-path off)'],
      ['env', [], { ISTHMUS_FAST_PATH: 'off' }, 'ISTHMUS_FAST_PATH=off'],
    ];
    for (const [way, flags, env, reason] of ways) {
      const port = await freePort();
      const plain = await startCli(
        ['gateway', '--addr', `127.0.0.1:${port}`, '--server', region.grpcAddress, '--id', `plain-${way}`, ...flags],
        /Mesh gateway plain-/,
        env,
      );
      try {
        await poll(
          async () => plain.output(),
          (o) => o.includes('"routes received"'),
          `the ${way}-switched gateway's routes`,
        );
        expect(logLines(plain.output()).filter((l) => l.msg === 'data path')).toEqual([
          expect.objectContaining({ path: 'plain', selfTest: 'skipped', reason }),
        ]);
        const c = await mtls(`api.default.dc1.internal.${region.trustDomain}`, port);
        const answer = await new Promise<string>((resolve, reject) => {
          c.sock.once('data', (d) => resolve(String(d)));
          c.sock.once('close', () => reject(new Error('closed before answering')));
          c.sock.write('plainly');
        });
        expect(answer).toBe('api:plainly');
        c.sock.destroy();
      } finally {
        await plain.stop();
      }
    }
  });

  it('takes -pump (one dash, as Consul spells its flags) over ISTHMUS_PUMP in every worker, and carries traffic either way', async () => {
    const ways: [string[], NodeJS.ProcessEnv, Record<string, unknown>][] = [
      [['-pump', 'off'], { ISTHMUS_PUMP: 'on' }, { pump: 'off', movesBytes: 'fast data path', reason: '--pump=off' }],
      [['-pump', 'on'], { ISTHMUS_PUMP: 'off' }, { pump: 'native', movesBytes: 'native pump' }],
    ];
    for (const [flags, env, want] of ways) {
      const port = await freePort();
      const id = `pump-${flags[1]}`;
      const gw = await startCli(
        ['gateway', '--addr', `127.0.0.1:${port}`, '--server', region.grpcAddress, '--id', id, '--workers', '2', ...flags],
        new RegExp(`Mesh gateway ${id}`),
        env,
      );
      try {
        await poll(
          async () => gw.output(),
          (o) => o.includes('"routes received"') && logLines(o).filter((l) => l.msg === 'byte pump').length === 2,
          `the ${id} gateway's routes and its workers' pump lines`,
        );
        const lines = logLines(gw.output()).filter((l) => l.msg === 'byte pump');
        expect(lines).toEqual([expect.objectContaining(want), expect.objectContaining(want)]);
        // One line from each worker.
        expect(new Set(lines.map((l) => l.worker)).size).toBe(2);
        const c = await mtls(`api.default.dc1.internal.${region.trustDomain}`, port);
        const answer = await new Promise<string>((resolve, reject) => {
          c.sock.once('data', (d) => resolve(String(d)));
          c.sock.once('close', () => reject(new Error('closed before answering')));
          c.sock.write('pumped');
        });
        expect(answer).toBe('api:pumped');
        c.sock.destroy();
      } finally {
        await gw.stop();
      }
    }
  });

  it('refuses a -pump or an ISTHMUS_PUMP that is not on, auto or off', async () => {
    const port = await freePort();
    const r = await runCli(['gateway', '-pump', 'fast', '--addr', `127.0.0.1:${port}`, '--server', region.grpcAddress]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('Error: --pump must be on, auto or off, got "fast"');
    const bad = await runCli(['gateway', '--addr', `127.0.0.1:${port}`, '--server', region.grpcAddress], { ISTHMUS_PUMP: 'sometimes' });
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim()).toBe('Error: ISTHMUS_PUMP must be on, auto or off, got "sometimes"');
  });

  it('refuses a --fast-path that is neither on nor off', async () => {
    const r = await runCli(['gateway', '--fast-path', 'maybe', '--server', region.grpcAddress]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('Error: --fast-path must be on or off, got "maybe"');
  });
});

describe('isthmus gateway while its server is away', () => {
  it('keeps routing on its last routes, and registers again once the server is back', async () => {
    const local: (() => Promise<unknown> | void)[] = [];
    try {
      const grpcPort = await freePort();
      const dataDir = tempDir('isthmus-gateway-');
      local.push(() => rmSync(dataDir, { recursive: true, force: true }));
      const args = ['--grpc-addr', `127.0.0.1:${grpcPort}`, '--data-dir', dataDir];
      let srv = await startServer('dev', args);
      local.push(() => srv.stop());
      const echo = net.createServer((s) => {
        s.on('data', (d) => s.write(d));
        s.on('error', () => {});
      });
      await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
      local.push(() => new Promise<void>((r) => echo.close(() => r())));
      await api(srv.url, 'PUT', '/v1/agent/service/register', {
        Name: 'echo',
        Port: (echo.address() as net.AddressInfo).port,
        Connect: { SidecarService: { Port: await freePort() } },
      });
      const sidecar = await startCli(['connect', 'proxy', '--sidecar-for', 'echo', '--grpc-addr', `127.0.0.1:${grpcPort}`], /Sidecar for echo/);
      local.push(() => sidecar.stop());
      const port = await freePort();
      const gw = await startCli(['gateway', '--addr', `127.0.0.1:${port}`, '--server', `127.0.0.1:${grpcPort}`, '--id', 'steady'], /Mesh gateway steady/);
      local.push(() => gw.stop());
      await poll(
        async () => gw.output(),
        (o) => o.includes('"routes received"'),
        'routes',
      );
      const td = (await api(srv.url, 'GET', '/v1/connect/ca/roots')).body.TrustDomain as string;
      const leaf = (await api(srv.url, 'GET', '/v1/agent/connect/ca/leaf/web')).body;
      const roots = (await api(srv.url, 'GET', '/v1/connect/ca/roots')).body.Roots.map((r: { RootCert: string }) => r.RootCert);

      await srv.kill9();
      const sock = tls.connect({
        host: '127.0.0.1',
        port,
        servername: `echo.default.dc1.internal.${td}`,
        key: leaf.PrivateKeyPEM,
        cert: [leaf.CertPEM.trim(), ...leaf.Chain.map((c: string) => c.trim())].join('\n'),
        ca: roots,
        checkServerIdentity: () => undefined,
      });
      const answer = await new Promise<string>((resolve, reject) => {
        sock.once('secureConnect', () => sock.write('still routed'));
        sock.once('data', (d) => resolve(String(d)));
        sock.once('error', reject);
      });
      sock.destroy();
      expect(answer).toBe('still routed');
      expect(gw.output()).toContain('stream to server lost; keeping the last configuration and retrying');

      srv = await startServer('dev', args);
      const back = await poll(
        async () => (await api(srv.url, 'GET', '/v1/health/service/mesh-gateway?passing')).body,
        (b) => Array.isArray(b) && b.length === 1,
        'registration after the restart',
        15_000,
      );
      expect(back[0].Service.ID).toBe('steady');
    } finally {
      while (local.length) await local.pop()!();
    }
  });
});
