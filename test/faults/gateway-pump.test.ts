// Faults through the real mesh gateway, with the native byte pump moving the bytes and again with
// the TypeScript data path: thousands of short connections ended every way, a peer that never
// reads, upstreams that hang up while the ClientHello is replayed to them, a gigabyte both ways,
// and a process out of file descriptors. Clients and upstreams are real sockets on loopback.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { FlowRecord } from '../../src/dataflow/index.js';
import { Gateway, type GatewayOptions } from '../../src/gateway/index.js';
import { loadNativePump } from '../../src/gateway/pump/index.js';
import { postQuantumHello } from '../../src/gateway/testing/hello-builder.js';
import { mulberry32 } from '../fuzz/support.js';

const HOST = '127.0.0.1';
const MiB = 1024 * 1024;
const TD = 'golden.isthmus';
const SNI = `api.default.dc1.internal.${TD}`;
const ROUTE = 'api.default.dc1';
/** A real ClientHello (Node's tls.connect) for SNI. */
const GOLDEN = readFileSync(fileURLToPath(new URL('../../src/gateway/testdata/node-tls13.bin', import.meta.url)));

const stops: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (stops.length) await stops.pop()!();
});

/** Every connection released, the gateway stopped, and no socket left open beyond `before`'s. */
async function releasedAll(gw: Gateway, before: { socket: number }): Promise<void> {
  expect(
    await poll(
      () => gw.connections,
      (n) => n === 0,
    ),
  ).toBe(0);
  await gw.stop();
  const after = await poll(fds, (x) => x.socket <= before.socket);
  expect(after.socket).toBeLessThanOrEqual(before.socket);
}

/** The first `name` event of `e`; unlike events.once, an 'error' (a reset) does not reject it. */
const event = (e: NodeJS.EventEmitter, name: string) => new Promise<void>((r) => e.once(name, () => r()));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `f` until it holds, up to `ms`; the last value either way. */
async function poll<T>(f: () => T, ok: (v: T) => boolean, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  let v = f();
  while (!ok(v) && Date.now() < end) {
    await sleep(20);
    v = f();
  }
  return v;
}

interface FdCounts {
  socket: number;
  pipe: number;
  other: number;
}

/** This process's open fds by kind (readlink of /proc/self/fd/N: socket:[…], pipe:[…], the rest). */
function fds(): FdCounts {
  const out: FdCounts = { socket: 0, pipe: 0, other: 0 };
  for (const n of readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${n}`);
    } catch {
      continue; // closed meanwhile (readdir's own fd among them)
    }
    if (target.startsWith('socket:')) out.socket++;
    else if (target.startsWith('pipe:')) out.pipe++;
    else out.other++;
  }
  return out;
}

/** fds() once closing (libuv's, the pump thread's) has settled: the same counts 100 ms apart, within 5 s. */
async function steadyFds(): Promise<FdCounts> {
  let last = fds();
  for (let i = 0; i < 50; i++) {
    await sleep(100);
    const now = fds();
    if (now.socket === last.socket && now.pipe === last.pipe && now.other === last.other) return now;
    last = now;
  }
  return last;
}

async function listen(server: net.Server): Promise<number> {
  server.listen(0, HOST);
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  // Its connections are destroyed at the end too: after a failed assertion one may still be open,
  // and close() would wait for it.
  const open = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    open.add(s);
    s.once('close', () => open.delete(s));
  });
  stops.push(() => {
    for (const s of open) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return port;
}

const hostPort = (port: number) => `${HOST}:${port}`;

async function startGateway(pump: 'on' | 'off', endpoints: number[], over: Partial<GatewayOptions> = {}) {
  const flows: FlowRecord[] = [];
  const gw = new Gateway({
    id: 'mesh-gateway-dc1',
    dc: 'dc1',
    host: HOST,
    port: 0,
    routes: {
      dc: 'dc1',
      trustDomain: TD,
      services: [{ name: 'api', namespace: 'default', endpoints: endpoints.map((port) => ({ host: HOST, port })) }],
      serverAddresses: [],
      remotes: [],
    },
    onFlow: (r) => flows.push(r),
    pump,
    // Handed to the pump at the upstream's first bytes, unless a case says otherwise.
    pumpAfterMs: 0,
    ...over,
  });
  await gw.start();
  stops.push(() => gw.stop());
  expect(gw.pump?.name).toBe(pump === 'on' ? 'native' : undefined);
  return { gw, flows };
}

/** An upstream that says "ready:", hashes everything it reads until the FIN, then answers the sha256 and closes. */
async function hashBackend(): Promise<number> {
  return listen(
    net.createServer({ allowHalfOpen: true }, (s) => {
      s.write('ready:');
      const h = createHash('sha256');
      s.on('data', (d) => h.update(d));
      s.on('end', () => s.end(h.digest('hex')));
      s.on('error', () => {});
    }),
  );
}

/** One whole connection through the gateway: `body` after the hello, the upstream's sha256 of it all checked. */
async function roundTrip(port: number, hello: Buffer = GOLDEN, body: Buffer = randomBytes(200_000)): Promise<void> {
  const sock = net.connect({ host: HOST, port, allowHalfOpen: true });
  let answer = '';
  sock.on('data', (d: Buffer) => (answer += d.toString('latin1')));
  sock.write(hello);
  sock.end(body);
  await once(sock, 'end');
  sock.destroy();
  expect(answer).toBe(`ready:${createHash('sha256').update(hello).update(body).digest('hex')}`);
}

const nativePump = loadNativePump().available;
const pumps: { pump: 'on' | 'off'; name: string }[] = [
  ...(nativePump ? [{ pump: 'on' as const, name: 'the native byte pump' }] : []),
  { pump: 'off', name: 'the TypeScript data path' },
];

describe('native byte pump', () => {
  it.runIf(process.platform === 'linux' && process.arch === 'x64')('is built, so the cases below ran with it', () => {
    expect(nativePump).toBe(true);
  });
});

describe.each(pumps)('gateway faults with $name', ({ pump }) => {
  it('10,000 short connections ended every way, 200 at a time: no hang, no fd left open, served normally after', async () => {
    const seed = Number(process.env.ISTHMUS_FAULT_SEED ?? Date.now() % 1_000_000);
    const rnd = mulberry32(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
    const upstreamWays = ['fin-after-client', 'fin-at-once', 'reset-on-data', 'reset-later', 'reset-unanswered'] as const;
    const answers = [0, 1, 100, 4096, 70_000].map((n) => randomBytes(n));
    const bodies = [0, 1, 1000, 20_000, 100_000].map((n) => randomBytes(n));
    // The upstream picks its own way to end each connection it takes.
    const backendPort = await listen(
      net.createServer({ allowHalfOpen: true }, (s) => {
        s.on('error', () => {});
        s.on('data', () => {});
        const way = pick(upstreamWays);
        if (way === 'reset-unanswered') return void s.once('data', () => s.resetAndDestroy());
        s.write(Buffer.concat([Buffer.from('ok'), pick(answers)]));
        if (way === 'fin-at-once') s.end();
        else if (way === 'fin-after-client') s.on('end', () => s.end());
        else if (way === 'reset-on-data') s.once('data', () => setImmediate(() => s.resetAndDestroy()));
        else setTimeout(() => s.resetAndDestroy(), Math.floor(rnd() * 5));
        s.on('end', () => s.end());
      }),
    );
    // Handed over 1 ms after the upstream's answer: some connections end on the data path, some are
    // handed over mid-stream while they end, reset or send.
    const { gw, flows } = await startGateway(pump, [backendPort], { helloTimeoutMs: 5000, connectTimeoutMs: 5000, pumpAfterMs: 1 });
    const clientWays = ['probe', 'probe-reset', 'half-hello', 'half-hello-reset', 'fin', 'reset', 'close-at-once', 'reset-at-once'] as const;
    const seen = new Map<string, number>();
    let hung = 0;
    const one = async (): Promise<void> => {
      const way = pick(clientWays);
      seen.set(way, (seen.get(way) ?? 0) + 1);
      const sock = net.connect({ host: HOST, port: gw.port, allowHalfOpen: true });
      sock.on('error', () => {});
      // (events.once would reject on the 'error' a reset brings.)
      const closed = new Promise<void>((r) => sock.once('close', () => r()));
      const answered = new Promise<void>((r) => sock.once('data', () => r()));
      sock.on('data', () => {});
      await Promise.race([new Promise<void>((r) => sock.once('connect', () => r())), closed]);
      const cut = Math.max(1, Math.floor(rnd() * GOLDEN.length));
      switch (way) {
        case 'probe':
          sock.end();
          break;
        case 'probe-reset':
          sock.resetAndDestroy();
          break;
        case 'half-hello':
          sock.end(GOLDEN.subarray(0, cut));
          break;
        case 'half-hello-reset':
          sock.write(GOLDEN.subarray(0, cut), () => sock.resetAndDestroy());
          break;
        default: {
          sock.write(Buffer.concat([GOLDEN, pick(bodies)]));
          if (way === 'close-at-once') sock.destroy();
          else if (way === 'reset-at-once') sock.resetAndDestroy();
          else {
            await Promise.race([answered, closed]);
            if (way === 'fin') sock.end();
            else sock.resetAndDestroy();
          }
        }
      }
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<boolean>((r) => (timer = setTimeout(r, 15_000, true)));
      if (await Promise.race([closed.then(() => false), late])) {
        hung++;
        sock.destroy();
      }
      clearTimeout(timer);
    };
    const run = async (total: number, parallel: number) => {
      let started = 0;
      const lane = async () => {
        while (started < total) {
          started++;
          await one();
        }
      };
      await Promise.all(Array.from({ length: parallel }, lane));
    };
    const settled = () =>
      poll(
        () => gw.connections + (gw.pump?.open() ?? 0),
        (n) => n === 0,
      );

    // What lives as long as the process (the pump's thread, its spare pipes) is opened by a first round.
    await run(400, 200);
    expect(await settled()).toBe(0);
    const before = await steadyFds();
    const flowsBefore = flows.length;
    const t0 = Date.now();
    await run(10_000, 200);
    const elapsed = Date.now() - t0;
    expect(hung, `seed ${seed}: connections that never closed`).toBe(0);
    expect(await settled(), `seed ${seed}: connections still open in the gateway`).toBe(0);
    const after = await poll(fds, (f) => f.socket <= before.socket && f.other <= before.other);
    expect(after.socket, `seed ${seed}: sockets left open`).toBeLessThanOrEqual(before.socket);
    expect(after.other, `seed ${seed}: other fds left open`).toBeLessThanOrEqual(before.other);
    // Pipes: the pump keeps up to 256 empty ones (two fds each) for reuse; none is held by a connection.
    expect(after.pipe - before.pipe, `seed ${seed}: pipes past the pump's spares`).toBeLessThanOrEqual(pump === 'on' ? 512 : 0);
    // Every way was tried, and every flow recorded says how it went.
    expect([...seen.keys()].sort()).toEqual([...clientWays].sort());
    const recorded = flows.slice(flowsBefore);
    expect(recorded.length).toBeGreaterThan(5000);
    expect(recorded.filter((f) => !['allowed', 'error'].includes(f.verdict) || f.reason === '')).toEqual([]);
    // A failure of the pump itself (not a side's reset or FIN) is a bug.
    expect(recorded.filter((f) => f.reason.startsWith('byte pump'))).toEqual([]);
    // A client FIN meeting an upstream FIN (about one in twenty) is a clean flow.
    expect(recorded.filter((f) => f.verdict === 'allowed').length).toBeGreaterThan(300);
    // And it serves a whole connection as before.
    const good = await hashBackend();
    gw.update({
      dc: 'dc1',
      trustDomain: TD,
      services: [{ name: 'api', namespace: 'default', endpoints: [{ host: HOST, port: good }] }],
      serverAddresses: [],
      remotes: [],
    });
    await roundTrip(gw.port);
    console.log(
      `short connections (pump ${pump}, seed ${seed}): 10,000 in ${elapsed} ms; fds before ${JSON.stringify(before)}, after ${JSON.stringify(after)}`,
    );
  }, 60_000);

  it('an upstream that never reads: the client is held back, memory stays bounded, then every byte arrives in order', async () => {
    // Offered at once, without waiting for 'drain': what the gateway does not hold back piles up
    // somewhere. The chunks are 16 buffers written again and again (a queued write holds a
    // reference, not a copy), so the client's own queue costs next to no memory.
    const offered = (pump === 'on' ? 256 : 160) * MiB;
    const chunks = Array.from({ length: 16 }, () => randomBytes(MiB));
    const order = Array.from({ length: offered / MiB }, (_, i) => (i * 7 + (i >> 4)) % 16);
    const sent = createHash('sha256').update(GOLDEN);
    for (const i of order) sent.update(chunks[i]);
    let upstream: net.Socket | undefined;
    const port = await listen(
      net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => {
        s.on('error', () => {});
        s.write('ok');
        upstream = s;
      }),
    );
    const { gw, flows } = await startGateway(pump, [port]);
    const client = net.connect({ host: HOST, port: gw.port, allowHalfOpen: true });
    const answered = new Promise((r) => client.once('data', r));
    client.write(GOLDEN);
    await answered;
    if (pump === 'on')
      expect(
        await poll(
          () => gw.pump!.open(),
          (n) => n === 1,
        ),
      ).toBe(1);
    const rss0 = process.memoryUsage().rss;
    for (const i of order) client.write(chunks[i]);
    // Held back: the queue stops shrinking while far more is left than the kernels' buffers and the
    // gateway could take.
    let rssMax = rss0;
    let last = client.writableLength;
    for (let still = 0; still < 10;) {
      await sleep(50);
      rssMax = Math.max(rssMax, process.memoryUsage().rss);
      const now = client.writableLength;
      still = now === last ? still + 1 : 0;
      last = now;
    }
    const taken = offered - client.writableLength;
    expect(taken).toBeLessThan(64 * MiB);
    expect(upstream!.bytesRead).toBe(0);
    expect(rssMax - rss0, `RSS grew from ${rss0} to ${rssMax}`).toBeLessThan(32 * MiB);
    // The peer reads now: all of it, in order.
    const got = createHash('sha256');
    let bytes = 0;
    upstream!.on('data', (d: Buffer) => {
      got.update(d);
      bytes += d.length;
    });
    const ended = once(upstream!, 'end');
    upstream!.resume();
    client.end();
    await ended;
    expect(bytes).toBe(GOLDEN.length + offered);
    expect(got.digest('hex')).toBe(sent.digest('hex'));
    upstream!.end();
    await once(client, 'end');
    client.destroy();
    expect(
      (
        await poll(
          () => flows,
          (f) => f.length === 1,
        )
      )[0],
    ).toMatchObject({ verdict: 'allowed', bytesIn: GOLDEN.length + offered, bytesOut: 2 });
    console.log(
      `never-reading peer (pump ${pump}): ${offered / MiB} MiB offered, ${(taken / MiB).toFixed(1)} MiB taken while it did not read, RSS +${((rssMax - rss0) / MiB).toFixed(1)} MiB`,
    );
  }, 30_000);

  it(`${pump === 'on' ? '1 GiB' : '128 MiB'} both ways at once, unchanged (sha256 each way)`, async () => {
    const size = (pump === 'on' ? 1024 : 128) * MiB;
    const chunks = Array.from({ length: 64 }, () => randomBytes(MiB));
    /** Writes `size` bytes of chunks in the order `at(i)` gives, then FIN: their sha256. */
    const send = async (s: net.Socket, at: (i: number) => number): Promise<string> => {
      const h = createHash('sha256');
      for (let i = 0; i < size / MiB; i++) {
        const c = chunks[at(i)];
        h.update(c);
        if (!s.write(c)) await event(s, 'drain');
      }
      s.end();
      return h.digest('hex');
    };
    /** Everything read until FIN, past the first `skip` bytes: its length and sha256. */
    const receive = (s: net.Socket, skip = 0) =>
      new Promise<{ bytes: number; sha: string }>((resolve) => {
        const h = createHash('sha256');
        let bytes = 0;
        s.on('data', (d: Buffer) => {
          const rest = skip > 0 ? d.subarray(Math.min(skip, d.length)) : d;
          skip -= d.length - rest.length;
          h.update(rest);
          bytes += rest.length;
        });
        s.once('end', () => resolve({ bytes, sha: h.digest('hex') }));
      });
    let upstream: Promise<{ sentDown: string; gotUp: { bytes: number; sha: string } }> | undefined;
    const port = await listen(
      net.createServer({ allowHalfOpen: true }, (s) => {
        s.on('error', () => {});
        // What it got past the hello (replayed first, as the client sent it), and what it sent.
        const gotUp = receive(s, GOLDEN.length);
        upstream = Promise.all([send(s, (i) => (i * 13 + 5) % 64), gotUp]).then(([sentDown, up]) => ({ sentDown, gotUp: up }));
      }),
    );
    const { gw, flows } = await startGateway(pump, [port]);
    const client = net.connect({ host: HOST, port: gw.port, allowHalfOpen: true });
    client.on('error', () => {});
    const gotDown = receive(client);
    const t0 = Date.now();
    client.write(GOLDEN);
    const sentUp = await send(client, (i) => (i * 7 + (i >> 6)) % 64);
    const down = await gotDown;
    const up = await poll(
      () => upstream,
      (u) => u !== undefined,
    );
    const { sentDown, gotUp } = await up!;
    const ms = Date.now() - t0;
    expect(gotUp).toEqual({ bytes: size, sha: sentUp });
    expect(down).toEqual({ bytes: size, sha: sentDown });
    client.destroy();
    const [f] = await poll(
      () => flows,
      (x) => x.length === 1,
    );
    expect(f).toMatchObject({ verdict: 'allowed', bytesIn: GOLDEN.length + size, bytesOut: size });
    if (pump === 'on') expect(gw.pump!.open()).toBe(0);
    console.log(`both ways (pump ${pump}): ${size / MiB} MiB each way in ${ms} ms`);
  }, 45_000);

  describe('upstreams that hang up while the ClientHello is replayed to them', () => {
    /** Targets that take the connection and then hang up, each its own way, before answering. */
    async function rudeTargets() {
      const server = (f: (s: net.Socket) => void) =>
        listen(
          net.createServer((s) => {
            s.on('error', () => {});
            f(s);
            // Read on, or the peer's FIN is never seen and this end never closes.
            s.on('data', () => {});
          }),
        );
      return {
        finAtAccept: await server((s) => s.end()),
        resetAtAccept: await server((s) => s.resetAndDestroy()),
        // The first bytes of the replayed hello, then gone.
        finMidHello: await server((s) => s.once('data', () => s.end())),
        resetMidHello: await server((s) => s.once('data', () => s.resetAndDestroy())),
      };
    }

    /** A ~1.5 KB hello (a post-quantum key share) sent in four segments with pauses. */
    async function sendSlowly(sock: net.Socket, hello: Buffer): Promise<void> {
      sock.setNoDelay(true);
      let off = 0;
      for (const size of [5, 300, 700]) {
        sock.write(hello.subarray(off, off + size));
        off += size;
        await sleep(40);
      }
      sock.write(hello.subarray(off));
    }

    /** How the target's refusal reads in the flow record (its FIN, or a reset, whichever the gateway met first). */
    const refused = (port: number) => `${HOST.replace(/\./g, '\\.')}:${port} (closed without answering|ECONNRESET|EPIPE)`;

    it('passes over each of them to the next target: the client gets the whole connection, the flow says what was tried', async () => {
      const rude = await rudeTargets();
      const good = await hashBackend();
      const targets = [rude.finAtAccept, rude.resetAtAccept, rude.finMidHello, rude.resetMidHello, good];
      const before = await steadyFds();
      const { gw, flows } = await startGateway(pump, targets, { maxAttempts: 5 });
      const hello = postQuantumHello(SNI);
      expect(hello.length).toBeGreaterThan(1400);
      const sock = net.connect({ host: HOST, port: gw.port, allowHalfOpen: true });
      let answer = '';
      sock.on('data', (d: Buffer) => (answer += d.toString('latin1')));
      await once(sock, 'connect');
      await sendSlowly(sock, hello);
      const body = randomBytes(500_000);
      sock.end(body);
      await once(sock, 'end');
      sock.destroy();
      expect(answer).toBe(`ready:${createHash('sha256').update(hello).update(body).digest('hex')}`);
      const [f] = await poll(
        () => flows,
        (x) => x.length === 1,
      );
      expect(f).toMatchObject({ verdict: 'allowed', sni: SNI, bytesIn: hello.length + body.length, bytesOut: answer.length });
      expect(f.reason).toMatch(new RegExp(`^routed to ${hostPort(good)} after ${targets.slice(0, 4).map(refused).join('; ')}$`));
      await releasedAll(gw, before);
    });

    it('with none left to try, resets the client and records every refusal; nothing is left open', async () => {
      const rude = await rudeTargets();
      const targets = [rude.finAtAccept, rude.resetAtAccept, rude.finMidHello, rude.resetMidHello];
      const before = await steadyFds();
      const { gw, flows } = await startGateway(pump, targets, { maxAttempts: 4 });
      const hello = postQuantumHello(SNI);
      const sock = net.connect({ host: HOST, port: gw.port });
      let reset = false;
      sock.on('error', (e: NodeJS.ErrnoException) => (reset ||= e.code === 'ECONNRESET'));
      sock.on('data', () => {});
      const closed = event(sock, 'close');
      await event(sock, 'connect');
      await sendSlowly(sock, hello);
      await closed;
      expect(reset).toBe(true);
      const [f] = await poll(
        () => flows,
        (x) => x.length === 1,
      );
      expect(f).toMatchObject({ verdict: 'error', sni: SNI, bytesIn: hello.length, bytesOut: 0 });
      expect(f.reason).toMatch(new RegExp(`^no upstream reachable for ${ROUTE.replace(/\./g, '\\.')}: ${targets.map(refused).join('; ')}$`));
      await releasedAll(gw, before);
    });

    it('a target that answers, then resets mid-stream, resets the client: recorded as an upstream reset', async () => {
      const port = await listen(
        net.createServer((s) => {
          s.on('error', () => {});
          s.write('hi');
          let n = 0;
          s.on('data', (d: Buffer) => {
            n += d.length;
            if (n > 100_000) s.resetAndDestroy();
          });
        }),
      );
      const { gw, flows } = await startGateway(pump, [port]);
      const hello = postQuantumHello(SNI);
      const sock = net.connect({ host: HOST, port: gw.port });
      let reset = false;
      sock.on('error', (e: NodeJS.ErrnoException) => (reset ||= e.code === 'ECONNRESET'));
      const answered = new Promise((r) => sock.once('data', r));
      const closed = event(sock, 'close');
      await event(sock, 'connect');
      await sendSlowly(sock, hello);
      await answered;
      sock.write(randomBytes(1 * MiB));
      await closed;
      expect(reset).toBe(true);
      const [f] = await poll(
        () => flows,
        (x) => x.length === 1,
      );
      expect(f).toMatchObject({ verdict: 'error', reason: `upstream ${hostPort(port)}: ECONNRESET`, bytesOut: 2 });
      expect(
        await poll(
          () => gw.connections,
          (n) => n === 0,
        ),
      ).toBe(0);
    });
  });
});

/** What the gateway child (gateway-fd-child.ts) writes, one JSON object a line. */
interface ChildLine {
  started?: { port: number; limit: number; fds: number };
  status?: { connections: number; pumped: number; fds: number };
  filled?: { held: number };
  log?: { level: string; msg: string } & Record<string, unknown>;
  flow?: { verdict: string; reason: string; bytesIn: number; bytesOut: number };
}

/** The fd limit of the child: its start-up (Node, tsx, the gateway) takes about half. */
const FD_LIMIT = 128;

/** The gateway child (gateway-fd-child.ts) under RLIMIT_NOFILE FD_LIMIT, routing to `upstream`, once started. */
async function gatewayChild(upstream: number) {
  const child = spawn(
    'prlimit',
    [
      `--nofile=${FD_LIMIT}:${FD_LIMIT}`,
      process.execPath,
      '--import',
      'tsx',
      fileURLToPath(new URL('./gateway-fd-child.ts', import.meta.url)),
      String(upstream),
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const lines: ChildLine[] = [];
  const waiting: ((l: ChildLine) => void)[] = [];
  createInterface({ input: child.stdout }).on('line', (text) => {
    const l = JSON.parse(text) as ChildLine;
    lines.push(l);
    for (const w of waiting.splice(0)) w(l);
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  stops.push(async () => {
    child.stdin.end();
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  });
  const next = <K extends keyof ChildLine>(key: K, ms = 20_000) =>
    new Promise<NonNullable<ChildLine[K]>>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`gateway child: no ${key} line in ${ms} ms; stderr: ${stderr}`)), ms);
      const take = (l: ChildLine) => {
        if (l[key] === undefined) return void waiting.push(take);
        clearTimeout(t);
        resolve(l[key]!);
      };
      waiting.push(take);
    });
  const ask = <K extends keyof ChildLine>(command: string, key: K) => {
    const s = next(key);
    child.stdin.write(`${command}\n`);
    return s;
  };
  const status = () => ask('status', 'status');
  const settled = async () => {
    let s = await status();
    for (const end = Date.now() + 10_000; (s.connections > 0 || s.pumped > 0) && Date.now() < end;) {
      await sleep(50);
      s = await status();
    }
    return s;
  };
  const started = await next('started', 30_000);
  // The limit is real: the kernel's, as the child reads it.
  expect(started.limit).toBe(FD_LIMIT);
  expect(started.fds).toBeLessThan(FD_LIMIT - 20);
  return { child, lines, ask, status, settled, started };
}

describe.runIf(nativePump)('gateway with the native byte pump out of file descriptors', () => {
  it(`with RLIMIT_NOFILE ${FD_LIMIT}: refuses what it cannot take with a clear error, stays up, and serves again once fds are free`, async () => {
    const upstream = await hashBackend();
    const { child, lines, ask, status, settled, started } = await gatewayChild(upstream);

    /** One connection: 'served' when the upstream's "ready:" came back through the gateway. */
    const held: { sock: net.Socket; answer: () => string }[] = [];
    const open = () =>
      new Promise<'served' | 'refused'>((resolve) => {
        const sock = net.connect({ host: HOST, port: started.port, allowHalfOpen: true });
        sock.on('error', () => {});
        let got = '';
        let settled = false;
        const t = setTimeout(() => done('refused'), 3000);
        const done = (how: 'served' | 'refused') => {
          if (settled) return;
          settled = true;
          clearTimeout(t);
          if (how === 'served') held.push({ sock, answer: () => got });
          else sock.destroy();
          resolve(how);
        };
        sock.on('data', (d: Buffer) => {
          got += d.toString('latin1');
          if (got === 'ready:') done('served');
        });
        sock.once('close', () => done('refused'));
        sock.write(GOLDEN);
      });
    // Until several in a row are refused: past the limit (each served one holds two fds there).
    let served = 0;
    let refused = 0;
    for (let inARow = 0, i = 0; inARow < 5 && i < FD_LIMIT; i++) {
      if ((await open()) === 'served') {
        served++;
        inARow = 0;
      } else {
        refused++;
        inARow++;
      }
    }
    expect(refused).toBeGreaterThanOrEqual(5);
    expect(served).toBeGreaterThan(10);
    // Said, not crashed: the pump's refusal to take a connection it could not dup is logged (the
    // accepts past the limit leave no trace at all: see the last of the three cases below).
    expect(child.exitCode).toBeNull();
    const emfile = /EMFILE|Too many open files/;
    const said = lines.filter(
      (l) => (l.log && (l.log.level === 'warn' || l.log.level === 'error') && emfile.test(JSON.stringify(l.log))) || (l.flow && emfile.test(l.flow.reason)),
    );
    expect(said.length, `child said: ${JSON.stringify(lines.slice(-10))}`).toBeGreaterThan(0);
    console.log(
      `fd exhaustion: ${served} served, ${refused} refused; what it said: ${JSON.stringify([...new Set(said.map((l) => (l.log ? `log ${l.log.msg}` : `flow ${l.flow!.reason.replace(/\d+/g, 'N')}`)))])}`,
    );
    // The excess goes; every held connection still ends cleanly, its bytes unchanged.
    const flowsAtLimit = lines.filter((l) => l.flow).length;
    for (const h of held) h.sock.end();
    await Promise.all(held.map((h) => event(h.sock, 'close')));
    const helloSha = createHash('sha256').update(GOLDEN).digest('hex');
    expect(held.filter((h) => h.answer() !== `ready:${helloSha}`).map((h) => h.answer())).toEqual([]);
    const ended = (
      await poll(
        () => lines.filter((l) => l.flow).slice(flowsAtLimit),
        (f) => f.length >= served,
      )
    ).map((l) => l.flow!);
    expect(ended.filter((f) => f.verdict !== 'allowed')).toEqual([]);
    expect(await settled()).toMatchObject({ connections: 0, pumped: 0 });

    // Each place that needs an fd, out of them in turn (the rest of the fds held by the child itself).
    const refusal = (sock: net.Socket) =>
      new Promise<'reset' | 'closed'>((resolve) => {
        let reset = false;
        sock.on('error', (e: NodeJS.ErrnoException) => (reset ||= e.code === 'ECONNRESET'));
        sock.on('data', () => {});
        sock.once('close', () => resolve(reset ? 'reset' : 'closed'));
      });
    const flowsSoFar = () => lines.filter((l) => l.flow).length;
    // One fd free: the accept takes it, the upstream socket finds none. Reset and recorded.
    expect((await ask('fill 1', 'filled')).held).toBeGreaterThan(10);
    let flowsBefore = flowsSoFar();
    let sock = net.connect({ host: HOST, port: started.port });
    let end = refusal(sock);
    sock.write(GOLDEN);
    expect(await end).toBe('reset');
    const [noSocket] = (
      await poll(
        () => lines.filter((l) => l.flow).slice(flowsBefore),
        (f) => f.length === 1,
      )
    ).map((l) => l.flow!);
    expect(noSocket).toMatchObject({ verdict: 'error', reason: `no upstream reachable for ${ROUTE}: ${hostPort(upstream)} EMFILE` });
    expect(child.exitCode).toBeNull();
    // Two free: accepted and connected, but the pump cannot dup them: said, and the bytes moved here.
    await ask('unfill', 'filled');
    expect(await settled()).toMatchObject({ connections: 0, pumped: 0 });
    await ask('fill 2', 'filled');
    const warnsBefore = lines.filter((l) => l.log?.msg === 'byte pump refused a connection; it is moved here').length;
    await roundTrip(started.port);
    const warns = lines.filter((l) => l.log?.msg === 'byte pump refused a connection; it is moved here');
    expect(warns.length).toBe(warnsBefore + 1);
    expect(warns.at(-1)!.log).toMatchObject({ level: 'warn', error: { message: 'pump: start: Too many open files' } });
    // None free: the listener's accept fails. (libuv accepts and closes such a connection itself,
    // with a spare fd it keeps for this, and tells nobody: nothing can be logged or recorded here.)
    await ask('unfill', 'filled');
    expect(await settled()).toMatchObject({ connections: 0, pumped: 0 });
    await ask('fill 0', 'filled');
    flowsBefore = flowsSoFar();
    sock = net.connect({ host: HOST, port: started.port });
    end = refusal(sock);
    sock.write(GOLDEN);
    expect(['reset', 'closed']).toContain(await end);
    expect(child.exitCode).toBeNull();
    await ask('unfill', 'filled');
    expect(await settled()).toMatchObject({ connections: 0, pumped: 0 });

    // A new connection is served as before, by the pump.
    sock = net.connect({ host: HOST, port: started.port, allowHalfOpen: true });
    let answer = '';
    sock.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    sock.write(GOLDEN);
    await poll(
      () => answer,
      (a) => a === 'ready:',
    );
    expect(await status()).toMatchObject({ connections: 1, pumped: 1 });
    const body = randomBytes(1 << 20);
    sock.end(body);
    await event(sock, 'end');
    sock.destroy();
    expect(answer).toBe(`ready:${createHash('sha256').update(GOLDEN).update(body).digest('hex')}`);
    expect(child.exitCode).toBeNull();
  }, 60_000);

  // Out of fds, the pump cannot take a pipe for a direction that starts moving bytes: it moves them
  // through its thread's buffer instead, and what a destination does not take waits in a copy of the
  // direction's own (native/pump.c, park). Nothing is cut short; the TypeScript path needs no fd either.
  it('pumped connections that start moving bytes again while the process is out of fds carry on once fds are free', async () => {
    // An upstream that answers and does not read until told: each direction's bytes wait in the pump.
    const accepted: net.Socket[] = [];
    const upstream = await listen(
      net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => {
        s.on('error', () => {});
        s.write('ok');
        accepted.push(s);
      }),
    );
    const { ask, settled, started, lines } = await gatewayChild(upstream);
    const clients: net.Socket[] = [];
    for (let i = 0; i < 20; i++) {
      const c = net.connect({ host: HOST, port: started.port, allowHalfOpen: true });
      c.on('error', () => {});
      const answered = event(c, 'data');
      c.write(GOLDEN);
      await answered;
      clients.push(c);
    }
    expect(
      await poll(
        () => accepted.length,
        (n) => n === 20,
      ),
    ).toBe(20);
    // Idle and the pump's: two fds each there, no pipe.
    expect((await ask('status', 'status')).pumped).toBe(20);
    // Out of fds; then every client sends more than the upstream's socket buffers take, so that each
    // direction keeps bytes in a pipe of its own (what one spare pipe cannot serve in turn).
    await ask('fill 0', 'filled');
    const body = randomBytes(16 * MiB);
    for (const c of clients) c.write(body);
    await sleep(500);
    await ask('unfill', 'filled');
    // Once fds are free, the upstreams read: each gets its hello and the body, and the flows are clean.
    const got = accepted.map((s) => {
      const h = createHash('sha256');
      s.on('data', (d: Buffer) => h.update(d));
      const done = event(s, 'end').then(() => h.digest('hex'));
      s.resume();
      return done;
    });
    for (const c of clients) c.end();
    const want = createHash('sha256').update(GOLDEN).update(body).digest('hex');
    const flowsBefore = lines.filter((l) => l.flow).length;
    const shas = await Promise.race([Promise.all(got), sleep(2000).then(() => [] as string[])]);
    for (const s of accepted) s.end();
    const flows = (
      await poll(
        () => lines.filter((l) => l.flow),
        (f) => f.length >= flowsBefore + 20,
        5000,
      )
    ).map((l) => l.flow!);
    expect(flows.filter((f) => f.verdict !== 'allowed').map((f) => f.reason)).toEqual([]);
    expect(shas).toEqual(accepted.map(() => want));
    expect(await settled()).toMatchObject({ connections: 0, pumped: 0 });
  }, 30_000);
});
