import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { FlowRecord } from '../dataflow/index.js';
import { isIsthmusError } from '../core/errors.js';
import { createLogger } from '../telemetry/index.js';
import { GatewayCluster } from './gateway-cluster.js';
import { reusePortAvailable } from './reuse-port.js';
import type { GatewayRoutes } from './routes.js';

const GOLDEN = readFileSync(new URL('./testdata/node-tls13.bin', import.meta.url));
const stops: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (stops.length) await stops.pop()!();
});

/** Reads everything until the client's FIN, then answers its sha256 and closes. */
async function hashBackend(): Promise<number> {
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

const routesTo = (port: number): GatewayRoutes => ({
  dc: 'dc1',
  trustDomain: 'golden.isthmus',
  services: [{ name: 'api', namespace: 'default', endpoints: [{ host: '127.0.0.1', port }] }],
  serverAddresses: [],
  remotes: [],
});

function roundTrip(port: number, body: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let answer = '';
    sock.on('data', (d) => (answer += d));
    sock.on('end', () => resolve(answer));
    sock.on('error', reject);
    sock.end(Buffer.concat([GOLDEN, body]));
  });
}

/** A two-worker gateway cluster routing to a hash backend, stopped after the test (reusePort unset: as this Node offers). */
async function twoWorkers(id: string, reusePort?: boolean): Promise<GatewayCluster> {
  const gw = new GatewayCluster({ id, dc: 'dc1', host: '127.0.0.1', port: 0, workers: 2, logLevel: 'warn', reusePort, routes: routesTo(await hashBackend()) });
  await gw.start();
  stops.push(() => gw.stop());
  return gw;
}

/** Each worker's open connections once `ok` holds of them (or as they are after 5 s). */
async function workerLoads(gw: GatewayCluster, ok: (l: number[]) => boolean): Promise<number[]> {
  const end = Date.now() + 5000;
  let l = gw.workerConnections.map((w) => w.connections);
  while (!ok(l) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 20));
    l = gw.workerConnections.map((w) => w.connections);
  }
  return l;
}

/** Each worker's connections taken since it started, once `ok` holds of them (or as they are after 5 s). */
async function workerAccepted(gw: GatewayCluster, ok: (a: number[]) => boolean): Promise<number[]> {
  const end = Date.now() + 5000;
  let a = gw.workerConnections.map((w) => w.accepted);
  while (!ok(a) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 20));
    a = gw.workerConnections.map((w) => w.accepted);
  }
  return a;
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const hashOf = (body: Buffer) =>
  `ready:${createHash('sha256')
    .update(Buffer.concat([GOLDEN, body]))
    .digest('hex')}`;

/** `n` connections at once through the gateway, each answered with the hash of what it sent. */
async function roundTrips(port: number, n: number): Promise<void> {
  const bodies = Array.from({ length: n }, () => randomBytes(1000));
  const answers = await Promise.all(bodies.map((b) => roundTrip(port, b)));
  answers.forEach((a, i) => expect(a).toBe(hashOf(bodies[i])));
}

/** A per-worker series of the cluster's metrics: worker process ID to value. */
function perWorker(text: string, name: string): Map<number, number> {
  const re = new RegExp(`^${name}\\{[^}]*worker="(\\d+)"[^}]*\\} (\\d+)$`, 'gm');
  return new Map([...text.matchAll(re)].map((m) => [Number(m[1]), Number(m[2])]));
}

describe('gateway cluster', () => {
  it('splices through its workers on one port, takes route updates, reports flows, and stops with the port free', async () => {
    const first = await hashBackend();
    const flows: FlowRecord[] = [];
    const gw = new GatewayCluster({
      id: 'gw-cluster',
      dc: 'dc1',
      host: '127.0.0.1',
      port: 0,
      workers: 2,
      logLevel: 'warn',
      routes: { ...routesTo(first), services: [] },
      onFlow: (r) => flows.push(r),
    });
    await gw.start();
    stops.push(() => gw.stop());
    expect(gw.port).toBeGreaterThan(0);

    gw.update(routesTo(first));
    gw.id = 'gw-renamed';
    // Messages to workers are ordered: a connection after update() and the ID change sees both.
    await new Promise((r) => setTimeout(r, 200));
    const bodies = Array.from({ length: 8 }, () => randomBytes(100_000));
    const answers = await Promise.all(bodies.map((b) => roundTrip(gw.port, b)));
    answers.forEach((a, i) =>
      expect(a).toBe(
        `ready:${createHash('sha256')
          .update(Buffer.concat([GOLDEN, bodies[i]]))
          .digest('hex')}`,
      ),
    );
    const end = Date.now() + 3000;
    while (flows.length < 8 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    expect(flows).toHaveLength(8);
    expect(flows.every((f) => f.verdict === 'allowed' && f.reporter === 'gw-renamed' && f.bytesIn === GOLDEN.length + 100_000)).toBe(true);
    expect(await gw.metrics()).toMatch(/isthmus_gateway_connections_total\{[^}]*route="api.default.dc1"[^}]*\} 8/);

    const port = gw.port;
    await gw.stop();
    const again = net.createServer();
    await new Promise<void>((resolve, reject) => {
      again.once('error', reject);
      again.listen(port, '127.0.0.1', () => resolve());
    });
    await new Promise<void>((r) => again.close(() => r()));
  }, 20_000);

  it('on the shared listener, shares connections that all land on one worker with the other, and every one of them still splices', async () => {
    const gw = await twoWorkers('gw-balance', false);
    expect(await workerLoads(gw, (l) => l.length === 2)).toEqual([0, 0]);
    // One worker cannot accept: the kernel gives every connection to the other, as it gives a burst
    // to whichever worker waits.
    const stopped = gw.workerConnections[0].pid;
    process.kill(stopped, 'SIGSTOP');
    const socks: net.Socket[] = [];
    const answers: Promise<string>[] = [];
    try {
      for (let i = 0; i < 32; i++) {
        const sock = net.connect({ host: '127.0.0.1', port: gw.port });
        socks.push(sock);
        answers.push(
          new Promise((resolve, reject) => {
            let answer = '';
            sock.on('data', (d) => (answer += d));
            sock.on('end', () => resolve(answer));
            sock.on('error', reject);
          }),
        );
        sock.write(GOLDEN);
      }
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      process.kill(stopped, 'SIGCONT');
    }
    // Passes still in flight settle within a report or two: wait for the split, not for the first pass.
    // On a quiet machine it ends 16/16 or near it; on a busy one (CI beside other jobs) it was seen at
    // 9/23 and 11/21, the counts a worker decides by being up to a report old while the burst is
    // accepted. What must hold either way: the worker that got everything passed a share of it on.
    const split = await workerLoads(gw, (l) => l[0] + l[1] === 32 && Math.min(...l) >= 12);
    expect(split[0] + split[1]).toBe(32);
    expect(Math.min(...split)).toBeGreaterThanOrEqual(6);
    // Passed on before a byte was read: the hello and what follows reach the backend whole.
    const bodies = socks.map(() => randomBytes(10_000));
    socks.forEach((s, i) => s.end(bodies[i]));
    // The metrics keep each worker's count and what it passed.
    const text = await gw.metrics();
    const open = [...text.matchAll(/^isthmus_gateway_worker_connections\{[^}]*worker="(\d+)"[^}]*\} (\d+)$/gm)].map((m) => Number(m[2]));
    expect(open).toHaveLength(2);
    expect(open[0] + open[1]).toBe(32);
    expect(Number(/^isthmus_gateway_worker_passed_total\{[^}]*\} (\d+)$/m.exec(text)?.[1])).toBeGreaterThanOrEqual(Math.min(...split));
    // A connection passed on is counted as taken by the worker it went to, not by both.
    const taken = await workerAccepted(gw, (a) => sum(a) === 32);
    expect(taken).toEqual(split);
    const got = await Promise.all(answers);
    got.forEach((a, i) =>
      expect(a).toBe(
        `ready:${createHash('sha256')
          .update(Buffer.concat([GOLDEN, bodies[i]]))
          .digest('hex')}`,
      ),
    );
  }, 20_000);

  it('on the shared listener, passes nothing to a worker that has stopped reporting: a stuck worker takes no connection down with it', async () => {
    const gw = await twoWorkers('gw-stuck', false);
    await workerLoads(gw, (l) => l.length === 2);
    const stuck = gw.workerConnections[0].pid;
    process.kill(stuck, 'SIGSTOP');
    try {
      // Silent past the bound (3 s), and the primary's check (every second) has told the other.
      await new Promise((r) => setTimeout(r, 4500));
      const bodies = Array.from({ length: 32 }, () => randomBytes(10_000));
      const answers = await Promise.all(bodies.map((b) => roundTrip(gw.port, b)));
      answers.forEach((a, i) =>
        expect(a).toBe(
          `ready:${createHash('sha256')
            .update(Buffer.concat([GOLDEN, bodies[i]]))
            .digest('hex')}`,
        ),
      );
    } finally {
      process.kill(stuck, 'SIGCONT');
    }
  }, 20_000);

  it.runIf(reusePortAvailable())(
    'with reusePort, each worker listens on a socket of its own on the one port and the kernel gives each a share, counted per worker',
    async () => {
      const gw = await twoWorkers('gw-reuseport');
      expect(gw.reusePort).toBe(true);
      expect(gw.port).toBeGreaterThan(0);
      expect(await workerLoads(gw, (l) => l.length === 2)).toEqual([0, 0]);
      await roundTrips(gw.port, 200);
      const taken = await workerAccepted(gw, (a) => sum(a) === 200);
      expect(sum(taken)).toBe(200);
      // Hashed by the kernel over the two sockets (the split of 200 is binomial: below 40 about once in 10^17).
      for (const t of taken) expect(t).toBeGreaterThanOrEqual(40);
      const text = await gw.metrics();
      const counted = perWorker(text, 'isthmus_gateway_worker_accepted_total');
      expect(new Map(gw.workerConnections.map((w) => [w.pid, w.accepted]))).toEqual(counted);
      // Nothing passed between workers: no worker holds a pass-on counter above 0.
      expect([...perWorker(text, 'isthmus_gateway_worker_passed_total').values()].every((n) => n === 0)).toBe(true);
      // A second gateway on the same port is refused, not let in beside the first one's sockets.
      const second = new GatewayCluster({ id: 'gw-second', dc: 'dc1', host: '127.0.0.1', port: gw.port, workers: 2, reusePort: true });
      await expect(second.start()).rejects.toMatchObject({ code: 'EADDRINUSE' });
    },
    30_000,
  );

  it.runIf(reusePortAvailable())(
    'with reusePort, a worker that dies is replaced by one listening on the port the first bound, which takes its share',
    async () => {
      const gw = await twoWorkers('gw-reuseport-restart');
      await workerLoads(gw, (l) => l.length === 2);
      const [dead, kept] = gw.workerConnections.map((w) => w.pid);
      process.kill(dead, 'SIGKILL');
      const end = Date.now() + 10_000;
      while (!(gw.workerConnections.length === 2 && !gw.workerConnections.some((w) => w.pid === dead)) && Date.now() < end)
        await new Promise((r) => setTimeout(r, 50));
      const pids = gw.workerConnections.map((w) => w.pid);
      expect(pids).toHaveLength(2);
      expect(pids).toContain(kept);
      expect(pids).not.toContain(dead);
      await roundTrips(gw.port, 100);
      const taken = await workerAccepted(gw, (a) => sum(a) === 100);
      expect(sum(taken)).toBe(100);
      for (const t of taken) expect(t).toBeGreaterThanOrEqual(15);
    },
    30_000,
  );

  it.runIf(reusePortAvailable())(
    'with reusePort, a worker that stops reporting is killed with a warning and replaced, and every new connection is served',
    async () => {
      const lines: Record<string, unknown>[] = [];
      const logger = createLogger({ level: 'warn', write: (l) => lines.push(JSON.parse(l) as Record<string, unknown>) });
      const gw = new GatewayCluster({
        id: 'gw-reuseport-stuck',
        dc: 'dc1',
        host: '127.0.0.1',
        port: 0,
        workers: 2,
        logLevel: 'warn',
        logger,
        routes: routesTo(await hashBackend()),
      });
      await gw.start();
      stops.push(() => gw.stop());
      expect(gw.reusePort).toBe(true);
      await workerLoads(gw, (l) => l.length === 2);
      const [stuck, kept] = gw.workerConnections.map((w) => w.pid);
      const stoppedAt = Date.now();
      process.kill(stuck, 'SIGSTOP');
      // Silent past the bound (3 s, up to a second after its last report), found by the check that
      // runs every second, then replaced a second after it died.
      const end = stoppedAt + 10_000;
      while (!(gw.workerConnections.length === 2 && !gw.workerConnections.some((w) => w.pid === stuck)) && Date.now() < end)
        await new Promise((r) => setTimeout(r, 50));
      const replacedMs = Date.now() - stoppedAt;
      const pids = gw.workerConnections.map((w) => w.pid);
      expect(pids).toHaveLength(2);
      expect(pids).toContain(kept);
      expect(pids).not.toContain(stuck);
      expect(replacedMs).toBeLessThan(10_000);
      // Killed, not merely silent: a stopped process still exists, a killed one does not.
      expect(() => process.kill(stuck, 0)).toThrow(expect.objectContaining({ code: 'ESRCH' }) as Error);
      const warned = lines.filter((l) => l.msg === 'gateway worker stuck; killing it');
      expect(warned).toHaveLength(1);
      expect(warned[0]).toMatchObject({ level: 'warn', pid: stuck });
      expect(warned[0].silentMs as number).toBeGreaterThan(3000);
      // From here on the stuck worker's socket is gone: every new connection lands on a live one.
      await roundTrips(gw.port, 100);
      const taken = await workerAccepted(gw, (a) => sum(a) >= 100);
      expect(sum(taken)).toBeGreaterThanOrEqual(100);
    },
    30_000,
  );

  it.runIf(!reusePortAvailable())('refuses reusePort where this Node has no server.listen({ reusePort })', () => {
    let err: unknown;
    try {
      new GatewayCluster({ id: 'gw', dc: 'dc1', host: '127.0.0.1', port: 0, workers: 2, reusePort: true });
    } catch (e) {
      err = e;
    }
    expect(isIsthmusError(err, 'ISTHMUS_ERR_BAD_CONFIG')).toBe(true);
    expect((err as Error).message).toMatch(/^reusePort needs server\.listen\(\{ reusePort \}\) \(Node 22\.12 or later, on Linux\); this is Node /);
  });
});
