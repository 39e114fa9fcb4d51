// The one suite every data path passes (run from fast-path.test.ts and plain-path.test.ts): what the
// gateway and the sidecar rely on of their connections, whatever drives them.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Written, type Accepted, type DataPath, type TcpConn, type TcpEvents } from './data-path.js';

/** What a connection told its owner, in order, and the bytes it read. */
interface Log {
  events: string[];
  data: Buffer[];
  closed: Promise<void>;
  connected: Promise<void>;
  /** Whether read() answers false (stop reading). */
  stop: boolean;
  buffer: Buffer;
  /** Reads that did not land in `buffer`. */
  misplaced: number;
}

function recorder(): { log: Log; ev: TcpEvents } {
  let closed!: () => void;
  let connected!: () => void;
  const log: Log = {
    events: [],
    data: [],
    stop: false,
    buffer: Buffer.alloc(64 * 1024),
    misplaced: 0,
    closed: new Promise<void>((r) => (closed = r)),
    connected: new Promise<void>((r) => (connected = r)),
  };
  const ev: TcpEvents = {
    buffer: () => log.buffer,
    read: (n, buf) => {
      if (buf !== log.buffer) log.misplaced++;
      log.data.push(Buffer.from(buf.subarray(0, n)));
      return !log.stop;
    },
    connect: () => {
      log.events.push('connect');
      connected();
    },
    end: () => log.events.push('end'),
    error: (code) => log.events.push(`error ${code}`),
    close: () => {
      log.events.push('close');
      closed();
    },
  };
  return { log, ev };
}

const text = (log: Log) => Buffer.concat(log.data).toString();
const until = async (cond: () => boolean, ms = 3000): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
};

const cleanups: Array<() => void> = [];

/** A listener of `path` whose accepted connections come out as TcpConns (as the gateway takes them). */
async function acceptor(path: DataPath): Promise<{ port: number; next: () => Promise<{ conn: TcpConn; log: Log }> }> {
  const waiting: Array<(h: Accepted) => void> = [];
  const queued: Accepted[] = [];
  const server = path.createServer((h) => {
    const w = waiting.shift();
    if (w) w(h);
    else queued.push(h);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => server.close());
  return {
    port: (server.address() as net.AddressInfo).port,
    next: async () => {
      const handle = queued.shift() ?? (await new Promise<Accepted>((r) => waiting.push(r)));
      const { log, ev } = recorder();
      const conn = path.accept(handle, ev);
      cleanups.push(() => conn.destroy());
      return { conn, log };
    },
  };
}

/** A plain peer socket, collecting what it reads. */
function peer(port: number): { sock: net.Socket; got: Buffer[]; ended: Promise<void>; closed: Promise<boolean> } {
  const sock = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  const got: Buffer[] = [];
  sock.on('data', (d: Buffer) => got.push(d));
  sock.on('error', () => {});
  cleanups.push(() => sock.destroy());
  return {
    sock,
    got,
    ended: new Promise((r) => sock.once('end', r)),
    closed: new Promise((r) => sock.once('close', (hadError) => r(hadError))),
  };
}

export function runDataPathSuite(name: string, path: DataPath): void {
  describe(`data path conformance: ${name}`, () => {
    afterEach(() => {
      for (const c of cleanups.splice(0)) c();
    });

    it("reads into the owner's buffer, writes, and closes once both sides have ended (half-close kept)", async () => {
      const acc = await acceptor(path);
      const p = peer(acc.port);
      const { conn, log } = await acc.next();
      p.sock.write('ping');
      await until(() => text(log) === 'ping');
      expect(conn.bytesRead).toBe(4);
      expect(conn.remoteAddress()).toBe('127.0.0.1');
      // The peer ends its side; ours stays writable.
      p.sock.end();
      await until(() => log.events.includes('end'));
      expect(conn.destroyed).toBe(false);
      expect(conn.write(Buffer.from('pong'), () => {})).toBe(Written.Done);
      expect(conn.bytesWritten).toBe(4);
      conn.end();
      await p.ended;
      await log.closed;
      expect(Buffer.concat(p.got).toString()).toBe('pong');
      expect(log.events).toEqual(['end', 'close']);
      expect(await p.closed).toBe(false);
    });

    it('fd() hands the connection to a copy of its fd; detach() lets go of it with no event, and the copy carries on', async () => {
      const acc = await acceptor(path);
      const p = peer(acc.port);
      const { conn, log } = await acc.next();
      p.sock.write('before');
      await until(() => text(log) === 'before');
      conn.pause();
      const fd = conn.fd();
      expect(fd).toBeGreaterThan(2);
      // A child process given the fd holds a copy of it, as the byte pump's dup(2) does.
      const child = spawn(process.execPath, ['-e', "require('fs').writeSync(3, 'from the copy')"], { stdio: ['ignore', 'ignore', 'inherit', fd] });
      await once(child, 'spawn');
      conn.detach();
      expect(conn.destroyed).toBe(true);
      expect(conn.fd()).toBe(-1);
      await once(child, 'exit');
      // The last copy gone: the connection ends, its bytes all there; nothing was told here.
      await p.ended;
      expect(Buffer.concat(p.got).toString()).toBe('from the copy');
      await new Promise((r) => setTimeout(r, 20));
      expect(log.events).toEqual([]);
    });

    it('fd() is -1 while a write waits here', async () => {
      const acc = await acceptor(path);
      const p = peer(acc.port);
      p.sock.pause();
      const { conn } = await acc.next();
      expect(conn.fd()).toBeGreaterThan(2);
      expect(conn.write(Buffer.alloc(16 << 20), () => {})).toBe(Written.Pending);
      expect(conn.fd()).toBe(-1);
    });

    it('keeps a write the peer cannot take yet, in order, and calls back when it is out; pause stops reading', async () => {
      const acc = await acceptor(path);
      const p = peer(acc.port);
      p.sock.pause();
      const { conn, log } = await acc.next();
      const big = Buffer.alloc(16 << 20, 7);
      for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff;
      const after: Array<Error | null> = [];
      expect(conn.write(big, (err) => after.push(err))).toBe(Written.Pending);
      // Queued after the waiting one, never before it.
      expect(conn.write(Buffer.from('tail'), (err) => after.push(err))).toBe(Written.Pending);
      expect(after).toEqual([]);
      p.sock.resume();
      await until(() => after.length === 2, 10_000);
      expect(after).toEqual([null, null]);
      conn.end();
      await p.ended;
      const got = Buffer.concat(p.got);
      expect(got.length).toBe(big.length + 4);
      expect(createHash('sha256').update(got.subarray(0, big.length)).digest('hex')).toBe(createHash('sha256').update(big).digest('hex'));
      expect(got.subarray(big.length).toString()).toBe('tail');
      // Reading stops on false, and starts again on resume().
      log.stop = true;
      p.sock.write('a');
      await until(() => log.data.length === 1);
      log.stop = false;
      p.sock.write('b');
      await new Promise((r) => setTimeout(r, 50));
      expect(text(log)).toBe('a');
      conn.resume();
      await until(() => text(log) === 'ab');
    });

    it("resets: the peer sees ECONNRESET, not a clean end; a peer's reset comes as an error, then close", async () => {
      const acc = await acceptor(path);
      const p = peer(acc.port);
      const { conn, log } = await acc.next();
      const peerError = new Promise<string | undefined>((r) => p.sock.once('error', (e: NodeJS.ErrnoException) => r(e.code)));
      conn.reset();
      expect(conn.destroyed).toBe(true);
      expect(await peerError).toBe('ECONNRESET');
      await log.closed;
      expect(log.events).toEqual(['close']);

      const p2 = peer(acc.port);
      const second = await acc.next();
      p2.sock.write('x');
      await until(() => second.log.data.length === 1);
      p2.sock.resetAndDestroy();
      await second.log.closed;
      expect(second.log.events).toEqual(['error ECONNRESET', 'close']);
    });

    it('connects (to an address or a name), reads after connect, and reports a refused connect by its code', async () => {
      const server = net.createServer((s) => s.end('hello from the server'));
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      cleanups.push(() => server.close());
      const port = (server.address() as net.AddressInfo).port;
      for (const host of ['127.0.0.1', 'localhost']) {
        const { log, ev } = recorder();
        const conn = path.connect(host, port, ev);
        cleanups.push(() => conn.destroy());
        await log.connected;
        await until(() => log.events.includes('end'));
        expect(text(log)).toBe('hello from the server');
        conn.end();
        await log.closed;
        expect(log.events).toEqual(['connect', 'end', 'close']);
      }
      // A port nobody listens on.
      const free = await new Promise<number>((r) => {
        const s = net.createServer().listen(0, '127.0.0.1', () => {
          const p = (s.address() as net.AddressInfo).port;
          s.close(() => r(p));
        });
      });
      const { log, ev } = recorder();
      path.connect('127.0.0.1', free, ev);
      await log.closed;
      expect(log.events).toEqual(['error ECONNREFUSED', 'close']);
    });

    it('frees a buffer the kernel took at once, and reports a waiting write that fails as an error, then close', async () => {
      const acc = await acceptor(path);
      const p = peer(acc.port);
      p.sock.pause();
      const { conn, log } = await acc.next();
      const buf = Buffer.from('hello, direct');
      expect(conn.write(buf, () => {})).toBe(Written.Done);
      buf.fill(0); // free again: overwriting it changes nothing sent
      p.sock.resume();
      await until(() => Buffer.concat(p.got).toString() === 'hello, direct');
      // Far more than the loopback socket buffers hold while the peer does not read, and the peer gone.
      p.sock.pause();
      let failed: Error | null | undefined;
      expect(conn.write(Buffer.alloc(32 << 20), (err) => (failed = err))).toBe(Written.Pending);
      p.sock.resetAndDestroy();
      await log.closed;
      expect(failed).toBeInstanceOf(Error);
      expect(conn.destroyed).toBe(true);
      expect(log.events[0]).toMatch(/^error E(CONNRESET|PIPE)$/);
      expect(log.events.at(-1)).toBe('close');
      // Dropped, not thrown, once destroyed.
      expect(conn.write(Buffer.from('x'), () => {})).toBe(Written.Done);
    });

    it("reads into the buffer it is given, at most that buffer's worth at a time, and into another after readInto", async () => {
      const acc = await acceptor(path);
      const p = peer(acc.port);
      const { conn, log } = await acc.next();
      const small = Buffer.alloc(16);
      expect(conn.readInto(small)).toBe(true);
      log.buffer = small;
      log.stop = true;
      const payload = '0123456789abcdefghijklmnopqrstuvwxyz'.repeat(3);
      p.sock.write(payload);
      await until(() => log.data.length >= 1);
      await new Promise((r) => setTimeout(r, 30));
      // Stopped after the first read until resumed; the rest follows in order.
      expect(log.data.length).toBe(1);
      log.stop = false;
      conn.resume();
      await until(() => text(log).length === payload.length);
      expect(text(log)).toBe(payload);
      expect(log.data.every((d) => d.length <= 16)).toBe(true);
      expect(log.misplaced).toBe(0);
      // Another buffer from now on.
      const other = Buffer.alloc(64 * 1024);
      expect(conn.readInto(other)).toBe(true);
      log.buffer = other;
      log.data = [];
      p.sock.write('into the other one');
      await until(() => text(log) === 'into the other one');
      expect(log.misplaced).toBe(0);
    });

    it("makes an accepted connection a net.Socket reading into the caller's buffer, half-open kept (the sidecar's use)", async () => {
      const waiting: Array<(c: Accepted) => void> = [];
      const server = path.createServer((c) => waiting.shift()?.(c));
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      cleanups.push(() => server.close());
      const accepted = new Promise<Accepted>((r) => waiting.push(r));
      const p = peer((server.address() as net.AddressInfo).port);
      const given = Buffer.alloc(8);
      const got: Buffer[] = [];
      let stop = true;
      const sock: net.Socket = path.socketOf(await accepted, {
        buffer: given,
        callback: (n, buf) => {
          expect(buf).toBe(given);
          got.push(Buffer.from(buf.subarray(0, n)));
          return !stop;
        },
      });
      cleanups.push(() => sock.destroy());
      const ended = new Promise((r) => sock.once('end', r));
      p.sock.end('twenty bytes, please');
      await until(() => got.length === 1);
      await new Promise((r) => setTimeout(r, 30));
      expect(got.length).toBe(1);
      stop = false;
      sock.resume();
      await ended;
      expect(Buffer.concat(got).toString()).toBe('twenty bytes, please');
      sock.end('and back');
      await p.ended;
      expect(Buffer.concat(p.got).toString()).toBe('and back');
    });
  });
}
