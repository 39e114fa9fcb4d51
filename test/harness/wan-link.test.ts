// The WAN link on real loopback sockets: bytes pass unchanged, latency and bandwidth cost what they
// say, backpressure holds, cut resets, blackhole stays silent, heal restores, stop frees the port.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WanLink } from './wan-link.js';

const HOST = '127.0.0.1';
const cleanups: (() => Promise<unknown> | void)[] = [];

afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

interface Target {
  port: number;
  /** Bytes the target has read, over all connections. */
  received(): number;
  /** Server-side sockets, open or closed, in arrival order. */
  sockets: net.Socket[];
}

/** An echo server; with `paused`, sockets read nothing until resumed. */
async function startTarget(opts: { paused?: boolean } = {}): Promise<Target> {
  let received = 0;
  const sockets: net.Socket[] = [];
  const server = net.createServer({ pauseOnConnect: opts.paused }, (s) => {
    sockets.push(s);
    s.on('error', () => {});
    s.on('data', (d: Buffer) => (received += d.length));
    s.pipe(s);
    // Listening for data switches to flowing; pause again so a paused target really reads nothing.
    if (opts.paused) s.pause();
  });
  await new Promise<void>((r) => server.listen(0, HOST, r));
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  );
  return { port: (server.address() as net.AddressInfo).port, received: () => received, sockets };
}

async function startLink(targetPort: number, queueBytes?: number): Promise<WanLink> {
  const link = new WanLink({ listen: { host: HOST, port: 0 }, target: { host: HOST, port: targetPort }, queueBytes });
  await link.start();
  cleanups.push(() => link.stop());
  return link;
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: HOST, port, noDelay: true }, () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
    cleanups.push(() => void s.destroy());
  });
}

/** Resolves with what arrived within `ms`, and how the socket ended if it did. */
function watch(s: net.Socket, ms: number): Promise<{ data: Buffer; error?: string; closed: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let error: string | undefined;
    const finish = (closed: boolean) => {
      clearTimeout(timer);
      s.off('data', onData);
      resolve({ data: Buffer.concat(chunks), error, closed });
    };
    const onData = (d: Buffer) => chunks.push(d);
    const timer = setTimeout(() => finish(false), ms);
    s.on('data', onData);
    s.on('error', (e: NodeJS.ErrnoException) => (error = e.code));
    s.once('close', () => finish(true));
  });
}

function readExactly(s: net.Socket, n: number, ms = 5_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const done = (err?: Error) => {
      clearTimeout(timer);
      s.off('data', onData);
      s.off('close', onClose);
      if (err) reject(err);
      else resolve(Buffer.concat(chunks));
    };
    const onData = (d: Buffer) => {
      chunks.push(d);
      got += d.length;
      if (got >= n) done();
    };
    const onClose = () => done(new Error(`closed after ${got} of ${n} bytes`));
    const timer = setTimeout(() => done(new Error(`${got} of ${n} bytes in ${ms} ms`)), ms);
    s.on('data', onData);
    s.once('close', onClose);
  });
}

async function roundTrip(s: net.Socket): Promise<number> {
  const t0 = performance.now();
  const reply = readExactly(s, 1);
  s.write('x');
  await reply;
  return performance.now() - t0;
}

async function waitUntil(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('WanLink', () => {
  it('passes 1 MiB both ways unchanged, with the FIN after the data', async () => {
    const target = await startTarget();
    const link = await startLink(target.port);
    const client = await connect(link.port);
    const payload = randomBytes(1024 * 1024);
    const chunks: Buffer[] = [];
    client.on('data', (d: Buffer) => chunks.push(d));
    const ended = new Promise<void>((r) => client.once('end', r));
    client.end(payload);
    await ended;
    expect(Buffer.concat(chunks).equals(payload)).toBe(true);
    expect(link.stats()).toMatchObject({ accepted: 1, bytesToTarget: payload.length, bytesToClient: payload.length, bytesQueued: 0 });
    expect(link.address).toBe(`${HOST}:${link.port}`);
  });

  it('keeps byte order under latency and jitter', async () => {
    const target = await startTarget();
    const link = await startLink(target.port);
    link.setLatency(5, 5);
    const client = await connect(link.port);
    const writes: Buffer[] = [];
    for (let i = 0; i < 200; i++) writes.push(Buffer.from(`${i},`));
    const expected = Buffer.concat(writes);
    const echoed = readExactly(client, expected.length);
    for (let i = 0; i < writes.length; i++) {
      client.write(writes[i]);
      // Spread the writes out so they reach the link as many chunks with different jitter draws.
      if (i % 5 === 0) await new Promise((r) => setImmediate(r));
    }
    expect((await echoed).toString()).toBe(expected.toString());
    expect(link.stats().chunksDelayed).toBeGreaterThan(1);
  });

  it('adds the set one-way delay to each direction, on a connection already open', async () => {
    const target = await startTarget();
    const link = await startLink(target.port);
    const client = await connect(link.port);
    const before = await roundTrip(client);
    link.setLatency(60);
    const rtts: number[] = [];
    for (let i = 0; i < 4; i++) rtts.push(await roundTrip(client));
    // 60 ms each way: never under 120 ms; the upper bound only has to catch a runaway.
    for (const rtt of rtts) {
      expect(rtt).toBeGreaterThanOrEqual(120);
      expect(rtt).toBeLessThan(120 + 500);
    }
    expect(before).toBeLessThan(60);
    link.setLatency(0);
    expect(await roundTrip(client)).toBeLessThan(60);
  });

  it('caps bandwidth per direction', async () => {
    const target = await startTarget();
    const link = await startLink(target.port);
    const rate = 1024 * 1024;
    link.setBandwidth(rate);
    const client = await connect(link.port);
    const payload = randomBytes(512 * 1024);
    const t0 = performance.now();
    const echoed = readExactly(client, payload.length);
    client.write(payload);
    expect((await echoed).equals(payload)).toBe(true);
    // Reads are at most 64 KiB, so only the last one can leave without waiting its turn.
    expect(performance.now() - t0).toBeGreaterThanOrEqual(((payload.length - 64 * 1024) / rate) * 1000);
    // Lifted on the open connection: 2 MiB would need at least 1.9 s under the cap.
    link.setBandwidth(null);
    const big = randomBytes(2 * 1024 * 1024);
    const t1 = performance.now();
    const again = readExactly(client, big.length);
    client.write(big);
    await again;
    expect(performance.now() - t1).toBeLessThan(1_000);
  });

  it('stops reading from the sender while the receiver does not read', async () => {
    const target = await startTarget({ paused: true });
    const queueBytes = 256 * 1024;
    const link = await startLink(target.port, queueBytes);
    const client = await connect(link.port);
    const payload = randomBytes(64 * 1024 * 1024);
    // Drop the echo: a client that stopped reading would hold the target back through the link too.
    client.resume();
    client.write(payload);
    // Let the pipeline fill, then check the link stopped reading instead of buffering all of it.
    let last = -1;
    await waitUntil(
      () => {
        const s = link.stats();
        const now = s.bytesToTarget + s.bytesQueued;
        const settled = now === last && now > 0;
        last = now;
        return settled;
      },
      10_000,
      'the link to stop reading',
    );
    await new Promise((r) => setTimeout(r, 200));
    const held = link.stats();
    expect(held.bytesQueued).toBeLessThanOrEqual(queueBytes + 64 * 1024);
    // What passed is bounded by socket buffers on loopback (a few MiB), far from the 64 MiB offered.
    expect(held.bytesToTarget + held.bytesQueued).toBeLessThan(24 * 1024 * 1024);
    expect(target.received()).toBe(0);
    target.sockets[0].resume();
    await waitUntil(() => target.received() === payload.length, 10_000, 'the target to read everything');
    expect(link.stats().bytesToTarget).toBe(payload.length);
  });

  it('cut resets open connections on both sides and new ones on arrival; heal lets new ones through', async () => {
    const target = await startTarget();
    const link = await startLink(target.port);
    const client = await connect(link.port);
    await roundTrip(client);
    const clientEnd = watch(client, 2_000);
    const targetEnd = watch(target.sockets[0], 2_000);
    link.cut();
    const c = await clientEnd;
    expect(c.closed).toBe(true);
    expect(c.error).toBe('ECONNRESET');
    expect((await targetEnd).closed).toBe(true);
    expect(link.stats().active).toBe(0);

    // The TCP handshake may complete before the reset; either way no byte comes back.
    const late = await new Promise<{ data: Buffer; error?: string; closed: boolean }>((resolve) => {
      const s = net.connect({ host: HOST, port: link.port });
      cleanups.push(() => void s.destroy());
      const seen = watch(s, 2_000);
      s.on('connect', () => s.write('x'));
      void seen.then(resolve);
    });
    expect(late.closed).toBe(true);
    // ECONNRESET on read, or EPIPE if the write is what meets the reset.
    expect(['ECONNRESET', 'EPIPE']).toContain(late.error);
    expect(late.data.length).toBe(0);
    expect(link.stats().refused).toBe(1);
    expect(target.sockets).toHaveLength(1);

    link.heal();
    const fresh = await connect(link.port);
    expect(await roundTrip(fresh)).toBeLessThan(1_000);
  });

  it('blackhole answers nothing and closes nothing while the target is alive; heal resets those connections', async () => {
    const target = await startTarget();
    const link = await startLink(target.port);
    const open = await connect(link.port);
    await roundTrip(open);
    const receivedBefore = target.received();

    link.blackhole();
    const opened = await connect(link.port);
    const silentOpen = watch(open, 300);
    const silentNew = watch(opened, 300);
    open.write('request');
    opened.write('request');
    for (const r of [await silentOpen, await silentNew]) {
      expect(r.data.length).toBe(0);
      expect(r.closed).toBe(false);
      expect(r.error).toBeUndefined();
    }
    expect(target.received()).toBe(receivedBefore);
    expect(target.sockets).toHaveLength(1);
    const direct = await connect(target.port);
    expect(await roundTrip(direct)).toBeLessThan(300);
    expect(link.stats()).toMatchObject({ accepted: 2, active: 2 });

    const heldOpen = watch(open, 2_000);
    const heldNew = watch(opened, 2_000);
    link.heal();
    expect((await heldOpen).closed).toBe(true);
    expect((await heldNew).closed).toBe(true);
    const fresh = await connect(link.port);
    expect(await roundTrip(fresh)).toBeLessThan(1_000);
    // One byte from the direct round trip, one from the fresh one; nothing from the held connections.
    expect(target.received()).toBe(receivedBefore + 2);
  });

  it('stop closes connections and frees the port', async () => {
    const target = await startTarget();
    const link = new WanLink({ listen: { host: HOST }, target: { host: HOST, port: target.port } });
    await link.start();
    const port = link.port;
    const client = await connect(port);
    await roundTrip(client);
    const ended = watch(client, 2_000);
    await link.stop();
    expect((await ended).closed).toBe(true);
    await expect(connect(port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    const again = net.createServer();
    await new Promise<void>((resolve, reject) => {
      again.once('error', reject);
      again.listen(port, HOST, resolve);
    });
    await new Promise<void>((r) => again.close(() => r()));
    await link.stop();
  });

  it('rejects bad options and settings with the rule they break', () => {
    expect(() => new WanLink({ listen: { host: HOST, port: -1 }, target: { host: HOST, port: 0 } })).toThrow(
      'invalid WanLink options: listen.port must be an integer from 0 to 65535; target.port must be an integer from 1 to 65535',
    );
    const link = new WanLink({ listen: { host: HOST }, target: { host: HOST, port: 1 } });
    expect(() => link.setLatency(-1)).toThrow(RangeError);
    expect(() => link.setBandwidth(0)).toThrow(RangeError);
    expect(() => link.address).toThrow('not listening');
  });
});
