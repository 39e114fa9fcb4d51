// Both byte pumps against real TCP sockets on loopback: a client connects to a front listener (A,
// as the gateway accepts it), the test connects to a back listener (B, as the gateway connects
// upstream), and the pump moves bytes between A and B; the test drives the client and the peer.
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import net from 'node:net';
import { constants } from 'node:os';
import { Worker } from 'node:worker_threads';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { BytePump, PumpReport } from './byte-pump.js';
import { chooseNativePump, choosePump, pumpSetting } from './choose-pump.js';
import { JsPump } from './js-pump.js';
import { ADDON_PATH, loadAddon, loadNativePump } from './native-pump.js';

const HOST = '127.0.0.1';
const MiB = 1024 * 1024;
const native = loadNativePump();

/** Sockets accepted by a listener, handed out by the connecting side's local port. */
class Listener {
  readonly server: net.Server;
  private readonly accepted = new Map<number, net.Socket>();
  private readonly waiting = new Map<number, (s: net.Socket) => void>();

  constructor(pauseOnConnect: boolean) {
    this.server = net.createServer({ allowHalfOpen: true, pauseOnConnect, noDelay: true }, (s) => {
      const port = s.remotePort!;
      const w = this.waiting.get(port);
      this.waiting.delete(port);
      if (w) w(s);
      else this.accepted.set(port, s);
    });
  }

  async listen(): Promise<number> {
    this.server.listen(0, HOST);
    await once(this.server, 'listening');
    return (this.server.address() as net.AddressInfo).port;
  }

  take(port: number): Promise<net.Socket> {
    const s = this.accepted.get(port);
    this.accepted.delete(port);
    return s ? Promise.resolve(s) : new Promise((resolve) => this.waiting.set(port, resolve));
  }
}

const front = new Listener(true);
const back = new Listener(false);
let frontPort = 0;
let backPort = 0;
/** Every test socket, destroyed after each test. */
const sockets = new Set<net.Socket>();

beforeAll(async () => {
  frontPort = await front.listen();
  backPort = await back.listen();
});
afterEach(() => {
  for (const s of sockets) s.destroy();
  sockets.clear();
});
afterAll(() => {
  front.server.close();
  back.server.close();
});

async function connect(port: number): Promise<net.Socket> {
  const s = net.connect({ port, host: HOST, allowHalfOpen: true, noDelay: true });
  sockets.add(s);
  await once(s, 'connect');
  return s;
}

interface Pair {
  /** The client's end (the peer of A) and the upstream's end (the peer of B). */
  client: net.Socket;
  peer: net.Socket;
  report: Promise<PumpReport>;
}

/** A client and a peer with `pump` between them; `before` runs once both are connected. */
async function pair(pump: BytePump, head?: Buffer, before?: (client: net.Socket) => Promise<void>): Promise<Pair> {
  const client = await connect(frontPort);
  const a = await front.take(client.localPort!);
  const b = net.connect({ port: backPort, host: HOST, allowHalfOpen: true, noDelay: true });
  b.pause();
  await once(b, 'connect');
  const peer = await back.take(b.localPort!);
  sockets.add(a).add(b).add(peer);
  await before?.(client);
  const report = new Promise<PumpReport>((resolve) => pump.start(a, b, head, resolve));
  return { client, peer, report };
}

/** Sends `mib` MiB of random bytes, then FIN; the sha256 of what was sent. */
async function send(s: net.Socket, mib: number): Promise<string> {
  const h = createHash('sha256');
  for (let i = 0; i < mib; i++) {
    const chunk = randomBytes(MiB);
    h.update(chunk);
    if (!s.write(chunk)) await once(s, 'drain');
  }
  s.end();
  return h.digest('hex');
}

/** Everything read until FIN: its length and sha256. */
function receive(s: net.Socket): Promise<{ bytes: number; sha: string; text: string }> {
  const h = createHash('sha256');
  let bytes = 0;
  let text = '';
  s.on('data', (c: Buffer) => {
    h.update(c);
    bytes += c.length;
    if (text.length < 64) text += c.toString('latin1');
  });
  return new Promise((resolve) => s.once('end', () => resolve({ bytes, sha: h.digest('hex'), text })));
}

const closed = (s: net.Socket) => (s.destroyed ? Promise.resolve() : once(s, 'close').then(() => undefined));
const fdCount = () => readdirSync('/proc/self/fd').length;

async function settledFdCount(target: number): Promise<number> {
  // Closing is asynchronous (libuv, the pump thread): wait for the count to come down.
  let n = fdCount();
  for (let i = 0; i < 100 && n > target; i++) {
    await new Promise((r) => setTimeout(r, 20));
    n = fdCount();
  }
  return n;
}

const pumps: { name: string; create: (() => BytePump) | undefined }[] = [
  { name: 'native', create: native.available ? native.create : undefined },
  { name: 'js', create: () => new JsPump() },
];

describe.each(pumps)('$name pump', ({ name, create }) => {
  // Skipped only when the addon was not built; the test below it says it must be, on Linux x64.
  const run = create ? it : it.skip;
  const make = (): BytePump => create!();

  run('moves 64 MiB each way unchanged (sha256 both ways), then closes on both FINs', async () => {
    const pump = make();
    const { client, peer, report } = await pair(pump);
    const toPeer = receive(peer);
    const toClient = receive(client);
    const [sentUp, sentDown] = await Promise.all([send(client, 64), send(peer, 64)]);
    const [gotUp, gotDown] = await Promise.all([toPeer, toClient]);
    expect(gotUp).toMatchObject({ bytes: 64 * MiB, sha: sentUp });
    expect(gotDown).toMatchObject({ bytes: 64 * MiB, sha: sentDown });
    const r = await report;
    expect(r).toMatchObject({ bytesAtoB: 64 * MiB, bytesBtoA: 64 * MiB, how: 'fin', errno: 0 });
    expect(['a', 'b']).toContain(r.closedBy);
    expect(r.firstByteAtoBMs).toBeLessThanOrEqual(r.closedAtMs);
    expect(r.firstByteBtoAMs).toBeLessThanOrEqual(r.closedAtMs);
    expect(pump.open()).toBe(0);
  });

  run('passes a FIN from A on, and B can still send back', async () => {
    const { client, peer, report } = await pair(make());
    const fromClient = receive(peer);
    client.end('ping');
    expect((await fromClient).text).toBe('ping');
    const fromPeer = receive(client);
    peer.end('pong after your FIN');
    expect((await fromPeer).text).toBe('pong after your FIN');
    expect(await report).toMatchObject({ closedBy: 'a', how: 'fin', bytesAtoB: 4, bytesBtoA: 19, errno: 0 });
  });

  run('passes a FIN from B on, and A can still send back', async () => {
    const { client, peer, report } = await pair(make());
    const fromPeer = receive(client);
    peer.end('bye');
    expect((await fromPeer).text).toBe('bye');
    const fromClient = receive(peer);
    client.end('one more thing');
    expect((await fromClient).text).toBe('one more thing');
    const r = await report;
    expect(r).toMatchObject({ closedBy: 'b', how: 'fin', bytesAtoB: 14, bytesBtoA: 3 });
    expect(r.firstByteBtoAMs).toBeLessThanOrEqual(r.firstByteAtoBMs!);
  });

  for (const side of ['a', 'b'] as const) {
    run(`a reset from ${side.toUpperCase()} is reported and passed on as a reset`, async () => {
      const { client, peer, report } = await pair(make());
      const [resetter, other] = side === 'a' ? [client, peer] : [peer, client];
      // Bytes first, so the reset comes mid-stream.
      const got = new Promise((resolve) => other.once('data', resolve));
      resetter.write('some bytes');
      await got;
      const err = new Promise<NodeJS.ErrnoException>((resolve) => other.once('error', resolve));
      resetter.resetAndDestroy();
      expect((await err).code).toBe('ECONNRESET');
      await closed(other);
      expect(await report).toMatchObject({ closedBy: side, how: 'reset', errno: constants.errno.ECONNRESET });
    });
  }

  run('writes the head to B before any byte read from A', async () => {
    const { client, peer, report } = await pair(make(), Buffer.from('hello '), async (c) => {
      // Sent before the pump starts, so it waits in A's kernel buffer behind nothing.
      await new Promise<void>((resolve) => c.write('world', () => resolve()));
    });
    const got = receive(peer);
    client.end('!');
    expect((await got).text).toBe('hello world!');
    peer.end();
    const r = await report;
    expect(r.bytesAtoB).toBe(12);
    expect(r.firstByteAtoBMs).toBeDefined();
  });

  run('stops reading A while B does not read: the sender is held back, then every byte arrives', async () => {
    const { client, peer, report } = await pair(make());
    peer.pause();
    let sent = 0;
    let stalled = false;
    const chunk = Buffer.alloc(MiB, 7);
    // 512 MiB if nothing held the sender back; what the kernels' buffers take is far less.
    while (sent < 512 * MiB) {
      sent += chunk.length;
      if (client.write(chunk)) continue;
      const drained = await Promise.race([once(client, 'drain').then(() => true), new Promise((r) => setTimeout(r, 1000, false))]);
      if (!drained) {
        stalled = true;
        break;
      }
    }
    expect(stalled).toBe(true);
    expect(sent).toBeLessThan(64 * MiB);
    const got = receive(peer);
    peer.resume();
    client.end();
    expect((await got).bytes).toBe(sent);
    peer.end();
    expect(await report).toMatchObject({ bytesAtoB: sent, how: 'fin' });
  });

  run('small records toward a peer that does not read, and a FIN sent while it is held back: every byte in order, then the end', async () => {
    const { client, peer, report } = await pair(make());
    peer.pause();
    const hash = createHash('sha256');
    let sent = 0;
    // Records of a few hundred bytes, each different, written one by one until the sender is held back.
    for (let i = 0; ; i++) {
      const rec = Buffer.alloc(200 + (i % 300), i % 251);
      hash.update(rec);
      sent += rec.length;
      if (!client.write(rec)) break;
      await new Promise((r) => setImmediate(r));
    }
    // Let the pump fill the peer's kernel buffer and stop reading A, then end A behind those bytes.
    await new Promise((r) => setTimeout(r, 200));
    client.end();
    await new Promise((r) => setTimeout(r, 200));
    const got = receive(peer);
    peer.resume();
    expect(await got).toMatchObject({ bytes: sent, sha: hash.digest('hex') });
    peer.end();
    expect(await report).toMatchObject({ bytesAtoB: sent, closedBy: 'a', how: 'fin' });
  });

  run('2,000 short connections leave no fd behind', async () => {
    const pump = make();
    const short = async (): Promise<void> => {
      const { client, peer, report } = await pair(pump);
      peer.on('data', () => {});
      peer.once('end', () => peer.end('y'));
      client.on('data', () => {});
      client.end('x');
      await Promise.all([report, closed(client), closed(peer)]);
      sockets.delete(client);
      sockets.delete(peer);
    };
    await short(); // the first one opens what lives as long as the process (the pump's thread)
    const before = fdCount();
    for (let i = 0; i < 2000; i += 50) await Promise.all(Array.from({ length: 50 }, short));
    expect(pump.open()).toBe(0);
    expect(await settledFdCount(before)).toBeLessThanOrEqual(before);
  });

  run('closeIdle(ms) closes the connections that moved nothing for ms, and only those of its pump', async () => {
    const pump = make();
    const other = make();
    const idle = await pair(pump);
    const busy = await pair(pump);
    const elsewhere = await pair(other);
    // A plain close: the client sees its connection end.
    const idleGone = once(idle.client, 'end');
    await new Promise((r) => setTimeout(r, 300));
    const got = new Promise((resolve) => busy.peer.once('data', resolve));
    busy.client.write('still busy');
    await got;
    pump.closeIdle(200);
    await idleGone;
    expect(await idle.report).toMatchObject({ closedBy: 'local', how: 'idle', errno: 0, bytesAtoB: 0, bytesBtoA: 0 });
    expect(pump.open()).toBe(1);
    expect(other.open()).toBe(1);
    // 0: every connection of the pump, however busy.
    pump.closeIdle(0);
    expect(await busy.report).toMatchObject({ closedBy: 'local', how: 'closed', bytesAtoB: 10 });
    expect(pump.open()).toBe(0);
    expect(other.open()).toBe(1);
    const back = receive(elsewhere.peer);
    elsewhere.client.end('untouched');
    expect((await back).text).toBe('untouched');
    elsewhere.peer.end();
    expect(await elsewhere.report).toMatchObject({ how: 'fin' });
  });

  run('stop() refuses new connections and lets the open ones finish', async () => {
    const pump = make();
    const { client, peer, report } = await pair(pump);
    pump.stop();
    expect(pump.open()).toBe(1);
    const client2 = await connect(frontPort);
    const a2 = await front.take(client2.localPort!);
    sockets.add(a2);
    expect(() => pump.start(a2, client2, undefined, () => {})).toThrow(expect.objectContaining({ code: 'ISTHMUS_ERR_UNAVAILABLE' }));
    const got = receive(peer);
    client.end('still here');
    expect((await got).text).toBe('still here');
    peer.end();
    await report;
    expect(pump.open()).toBe(0);
    expect(name).toMatch(/native|js/);
  });
});

describe('native pump', () => {
  it.runIf(process.platform === 'linux' && process.arch === 'x64')('was built and loads on Linux x64 (so its tests above ran)', () => {
    expect(native.available ? 'loaded' : native.reason).toBe('loaded');
  });

  it.runIf(native.available)('reports connections that end together in fewer calls than connections', async () => {
    if (!native.available) return;
    const { create, reports } = native;
    const pump = create();
    const pairs = await Promise.all(Array.from({ length: 200 }, () => pair(pump)));
    for (const p of pairs) p.peer.on('error', () => {});
    const before = reports.batches;
    // Every connection ends within one turn of the event loop: the reports pile up meanwhile.
    for (const p of pairs) p.client.resetAndDestroy();
    const all = await Promise.all(pairs.map((p) => p.report));
    expect(all.every((r) => r.how === 'reset' && r.closedBy === 'a')).toBe(true);
    expect(reports.batches - before).toBeLessThan(200);
  });

  it.runIf(native.available)('an idle connection holds no pipe: its two dup(2)ed sockets are all it keeps open', async () => {
    if (!native.available) return;
    const pump = native.create();
    const before = fdCount();
    const pairs: Pair[] = [];
    for (let i = 0; i < 20; i++) {
      // One after the other: each moves bytes both ways, then idles (its pipes back to the pool).
      const p = await pair(pump);
      const up = new Promise((r) => p.peer.once('data', r));
      p.client.write('ping');
      await up;
      const down = new Promise((r) => p.client.once('data', r));
      p.peer.write('pong');
      await down;
      pairs.push(p);
    }
    // Per connection here: the client's and the peer's sockets, and the pump's two fds (a pipe per
    // direction would be four more); the pool keeps the pipes the last one gave back.
    expect(await settledFdCount(before + 20 * 4 + 4)).toBeLessThanOrEqual(before + 20 * 4 + 4);
    for (const p of pairs) {
      p.peer.on('error', () => {});
      p.client.resetAndDestroy();
    }
    await Promise.all(pairs.map((p) => p.report));
  });

  it.runIf(native.available)('a worker thread that exits with connections open closes their fds (the environment teardown)', async () => {
    // Each worker is an environment of its own: its own pump thread, stopped and joined at exit.
    const code = `
      const net = require('node:net');
      const pump = require(${JSON.stringify(ADDON_PATH)});
      pump.init(() => {});
      const up = net.createServer({ allowHalfOpen: true }, () => {}).listen(0, '127.0.0.1', () => {
        const front = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (a) => {
          const b = net.connect(up.address().port, '127.0.0.1', () => {
            pump.start(a._handle.fd, b._handle.fd, undefined, 1);
            a.destroy();
            b.destroy();
            setTimeout(() => process.exit(0), 50);
          });
        }).listen(0, '127.0.0.1', () => net.connect(front.address().port, '127.0.0.1'));
      });`;
    const before = fdCount();
    for (let i = 0; i < 3; i++) {
      const [exitCode] = (await once(new Worker(code, { eval: true }), 'exit')) as [number];
      expect(exitCode).toBe(0);
    }
    expect(await settledFdCount(before)).toBeLessThanOrEqual(before);
  });

  it.runIf(native.available)('out of fds, start() throws a clear error, leaks nothing and leaves the caller its sockets', () => {
    // In a process of its own, with 64 fds, filled up to leave the thread its two and start() one dup.
    const script = `
      const net = require('node:net');
      const fs = require('node:fs');
      const pump = require(${JSON.stringify(ADDON_PATH)});
      pump.init(() => {});
      const count = () => fs.readdirSync('/proc/self/fd').length;
      const attempt = (a, b) => { try { pump.start(a._handle.fd, b._handle.fd, undefined, 1); return 'started'; } catch (e) { return e.message; } };
      const srv = net.createServer({ pauseOnConnect: true }, (a) => {
        if (srv.taken) return;
        srv.taken = true;
        const b = net.connect(srv.address().port, '127.0.0.1', () => {
          const filler = [];
          try { for (;;) filler.push(fs.openSync('/dev/null', 'r')); } catch {}
          for (let i = 0; i < 3; i++) fs.closeSync(filler.pop());
          const first = attempt(a, b); // may start the pump thread (its epoll fd and eventfd)
          const before = count();
          const second = attempt(a, b);
          const after = count();
          for (const fd of filler) fs.closeSync(fd);
          const third = attempt(a, b);
          console.log(JSON.stringify({ first, second, before, after, third, open: pump.open() }));
          process.exit(0);
        });
      });
      srv.on('error', () => {});
      srv.listen(0, '127.0.0.1', () => net.connect(srv.address().port, '127.0.0.1').on('error', () => {}));`;
    const r = spawnSync('sh', ['-c', 'ulimit -n 64 && exec "$0" -e "$1"', process.execPath, script], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const got = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(got).toMatchObject({ first: 'pump: start: Too many open files', second: 'pump: start: Too many open files', third: 'started', open: 1 });
    expect(got.after).toBe(got.before);
  });

  it('a missing addon gives a reason, not a throw', () => {
    const got = loadAddon('/nonexistent/pump.node');
    expect('reason' in got && got.reason).toMatch(/native pump not loaded/);
  });

  it.runIf(native.available)("the addon's own stop() refuses start() for the rest of the process", () => {
    // In a process of its own: the addon's stop() is for the whole process.
    const script = `
      const pump = require(${JSON.stringify(ADDON_PATH)});
      pump.init(() => {});
      if (pump.stop() !== 0) process.exit(2);
      try { pump.start(0, 1, undefined, 1); process.exit(3); } catch (e) { process.exit(e.code === 'ISTHMUS_ERR_UNAVAILABLE' ? 0 : 4); }`;
    expect(spawnSync(process.execPath, ['-e', script]).status).toBe(0);
  });
});

describe('choosePump', () => {
  it('ISTHMUS_PUMP=off gives the TypeScript pump and says so', () => {
    expect(choosePump({ ISTHMUS_PUMP: 'off' })).toMatchObject({ pump: { name: 'js' }, reason: 'ISTHMUS_PUMP=off' });
  });

  it('ISTHMUS_PUMP=on where the addon does not load is an error naming the variable and the reason; auto gives the reason', () => {
    const missing = () => ({ available: false as const, reason: 'native pump not loaded (/x/pump.node): no such file' });
    expect(() => chooseNativePump('on', missing)).toThrow(
      expect.objectContaining({ code: 'ISTHMUS_ERR_BAD_CONFIG', message: expect.stringMatching(/ISTHMUS_PUMP=on.*no such file/) }),
    );
    expect(chooseNativePump('auto', missing)).toEqual({ reason: 'native pump not loaded (/x/pump.node): no such file' });
    expect(chooseNativePump('off', missing)).toEqual({ reason: 'ISTHMUS_PUMP=off' });
    // Set by a flag or a config key: that is what the error and the reason name.
    expect(() => chooseNativePump('on', missing, '--pump')).toThrow(
      expect.objectContaining({ message: expect.stringMatching(/^--pump=on, but .*no such file/), violations: [expect.objectContaining({ Field: '--pump' })] }),
    );
    expect(chooseNativePump('off', missing, '/etc/gw.json: pump')).toEqual({ reason: '/etc/gw.json: pump=off' });
    expect([pumpSetting({}), pumpSetting({ ISTHMUS_PUMP: ' On ' }), pumpSetting({ ISTHMUS_PUMP: 'auto' })]).toEqual([undefined, 'on', 'auto']);
  });

  it.runIf(native.available)('ISTHMUS_PUMP=on where the addon loads gives the native pump', () => {
    expect(choosePump({ ISTHMUS_PUMP: 'on' }).pump.name).toBe('native');
  });

  it('refuses a value it does not know, naming the variable', () => {
    expect(() => choosePump({ ISTHMUS_PUMP: 'fast' })).toThrow(
      expect.objectContaining({ code: 'ISTHMUS_ERR_BAD_CONFIG', message: expect.stringMatching(/ISTHMUS_PUMP/) }),
    );
  });

  it('unset: the native pump where it loads, else the TypeScript one with the reason', () => {
    const choice = choosePump({});
    if (!native.available) expect(choice).toMatchObject({ pump: { name: 'js' }, reason: native.reason });
    else {
      expect(choice.pump.name).toBe('native');
      expect(choice.reason).toBeUndefined();
    }
  });
});
