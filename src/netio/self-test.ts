// A data path's behaviour checked before anything is served on it (choose.ts runs it once per
// process for the fast path): over loopback, a connection through the path's own listener, accept
// and connect; bytes both ways, landing in the buffers given; a read buffer switched; a write the
// kernel cannot take at once, completed in order; a half-close each way and the close; and an
// accepted connection made a socket reading through `onread` (the sidecar's use). A few
// milliseconds; anything that misbehaves, throws or does not happen in time is a failure.
import net from 'node:net';
import { Written, type Accepted, type DataPath, type TcpConn, type TcpEvents } from './data-path.js';

/** What one side of the test connection saw. */
class Side {
  readonly events: string[] = [];
  text = '';
  received = 0;
  /** The buffer reads must land in. */
  buf = Buffer.alloc(64 * 1024);
  /** Only bytes are counted (the bulk write), and the last 32 kept. */
  counting = false;
  tail = '';
  /** Something seen in a callback that should not be (thrown from check(), not from the event loop). */
  problem: string | undefined;
  constructor(
    private readonly name: string,
    private readonly wake: () => void,
  ) {}

  readonly ev: TcpEvents = {
    buffer: () => this.buf,
    read: (n, buf) => {
      if (buf !== this.buf) this.problem ??= 'read into a buffer it was not given';
      this.received += n;
      if (this.counting) this.tail = (this.tail + buf.toString('latin1', Math.max(0, n - 32), n)).slice(-32);
      else this.text += buf.toString('latin1', 0, n);
      this.wake();
      return true;
    },
    connect: () => this.push('connect'),
    end: () => this.push('end'),
    error: (code) => this.push(`error ${code}`),
    close: () => this.push('close'),
  };

  private push(e: string): void {
    this.events.push(e);
    this.wake();
  }

  /** Throws on an error event or a problem: nothing in the test should fail. */
  check(): void {
    const e = this.problem ?? this.events.find((x) => x.startsWith('error'));
    if (e) throw new Error(`${this.name}: ${e}`);
  }
}

const BULK = 4 << 20;

/** Resolves when `path` behaves as the gateway and the sidecar need; rejects with what went wrong. */
export async function selfTest(path: DataPath, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let wakeUp: (() => void) | undefined;
  const wake = () => {
    const w = wakeUp;
    wakeUp = undefined;
    w?.();
  };
  let failure: Error | undefined;
  const client = new Side('client', wake);
  const server = new Side('server', wake);
  const sides = [client, server];
  const until = async (what: string, cond: () => boolean): Promise<void> => {
    for (;;) {
      if (failure) throw failure;
      for (const s of sides) s.check();
      if (cond()) return;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`waited ${timeoutMs} ms for ${what}`);
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((r) => {
        wakeUp = r;
        timer = setTimeout(r, left);
      });
      clearTimeout(timer);
    }
  };

  const accepted: Accepted[] = [];
  const listener = path.createServer((c) => {
    accepted.push(c);
    wake();
  });
  const conns: TcpConn[] = [];
  const sockets: net.Socket[] = [];
  /** Accepted connections made a TcpConn or a socket (the rest are closed at the end). */
  let taken = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      // Its own port even in a cluster worker (whose listeners are otherwise shared with the other workers').
      listener.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => {
        listener.off('error', reject);
        resolve();
      });
    });
    listener.on('error', (err) => {
      failure = err;
      wake();
    });
    const port = (listener.address() as net.AddressInfo).port;

    const c = path.connect('127.0.0.1', port, client.ev);
    conns.push(c);
    await until('connect and accept', () => client.events.includes('connect') && accepted.length === 1);
    const s = path.accept(accepted[0], server.ev);
    taken++;
    conns.push(s);
    if (s.remoteAddress() !== '127.0.0.1') throw new Error(`accepted connection's peer is ${s.remoteAddress()}, not 127.0.0.1`);

    const ping = 'ping from the client';
    c.write(Buffer.from(ping), () => {});
    await until('bytes from the client', () => server.text.length >= ping.length);
    if (server.text !== ping) throw new Error(`server read "${server.text}", not "${ping}"`);

    // The next read goes into another buffer: the bytes must land there, not in the first.
    const other = Buffer.alloc(64 * 1024);
    if (s.readInto(other)) server.buf = other;
    const pong = 'pong from the server';
    s.write(Buffer.from(pong), () => {});
    c.write(Buffer.from('again'), () => {});
    await until('bytes both ways', () => client.text.length >= pong.length && server.text.length >= ping.length + 5);
    if (client.text !== pong) throw new Error(`client read "${client.text}", not "${pong}"`);
    const again = server.text.slice(ping.length);
    if (again !== 'again') throw new Error(`server read "${again}" into a switched buffer, not "again"`);

    // More than the kernel takes while the server does not read, then a tail that must come after it.
    s.pause();
    const completed: (Error | null)[] = [];
    const bulk = Buffer.alloc(BULK);
    const tail = 'the tail, written last';
    const waiting = [c.write(bulk, (err) => completed.push(err)), c.write(Buffer.from(tail), (err) => completed.push(err))].filter(
      (w) => w === Written.Pending,
    ).length;
    server.counting = true;
    server.received = 0;
    s.resume();
    await until('the bulk write', () => server.received >= BULK + tail.length);
    if (server.received !== BULK + tail.length || !server.tail.endsWith(tail))
      throw new Error(`the bulk write arrived as ${server.received} bytes ending "${server.tail}"`);
    // The writes that waited are done once the server read them.
    await until('the waiting writes to complete', () => completed.length >= waiting);
    if (completed.some((e) => e !== null)) throw new Error(`a waiting write failed: ${completed.find((e) => e)?.message}`);
    server.counting = false;
    server.text = '';

    // Half-close: the client ends, the server still writes, then ends; both close, cleanly.
    c.end();
    await until("the client's end", () => server.events.includes('end'));
    if (s.destroyed || s.ended) throw new Error('the server side closed when the client ended its own');
    const last = 'after your end';
    s.write(Buffer.from(last), () => {});
    s.end();
    await until('both sides closed', () => client.events.includes('close') && server.events.includes('close'));
    if (client.text !== pong + last) throw new Error(`client read "${client.text.slice(pong.length)}" after its end, not "${last}"`);
    if (client.events.join() !== 'connect,end,close' || server.events.join() !== 'end,close')
      throw new Error(`events client ${client.events.join()} and server ${server.events.join()}`);
    if (c.bytesWritten !== ping.length + 5 + BULK + tail.length || s.bytesRead !== c.bytesWritten)
      throw new Error(`counted ${c.bytesWritten} bytes written and ${s.bytesRead} read`);

    // An accepted connection as a net.Socket reading into the caller's buffer.
    const peer = net.connect({ port, host: '127.0.0.1' });
    sockets.push(peer);
    peer.on('error', (err) => {
      failure = err;
      wake();
    });
    let answer = '';
    peer.on('data', (d: Buffer) => {
      answer += d.toString('latin1');
      wake();
    });
    await until('a second accept', () => accepted.length === 2);
    const given = Buffer.alloc(64 * 1024);
    let got = '';
    const sock = path.socketOf(accepted[1], {
      buffer: given,
      callback: (n, buf) => {
        if (buf !== given) failure ??= new Error('socket read into a buffer it was not given');
        got += (buf as Buffer).toString('latin1', 0, n);
        wake();
        return true;
      },
    });
    taken++;
    sockets.push(sock);
    sock.on('error', (err) => {
      failure = err;
      wake();
    });
    peer.write('hello, socket');
    sock.write('hello, peer');
    await until('bytes through the socket', () => got.length >= 13 && answer.length >= 11);
    if (got !== 'hello, socket' || answer !== 'hello, peer') throw new Error(`socket read "${got}", its peer "${answer}"`);
  } finally {
    for (const x of [...conns, ...sockets]) {
      try {
        x.destroy();
      } catch {
        // Already failing: what went wrong is reported, not this.
      }
    }
    for (const a of accepted.slice(taken)) {
      try {
        path.close(a);
      } catch {
        // As above.
      }
    }
    listener.close();
  }
}
