import { createHash } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { directWrites, writeDirect, Written } from './direct-write.js';

/** A connected pair on loopback: `a` is ours, `b` the peer's (paused until read). */
async function pair(): Promise<{ a: net.Socket; b: net.Socket; close: () => void }> {
  const server = net.createServer({ pauseOnConnect: true });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const a = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await new Promise((r) => a.once('connect', r));
  const b = await accepted;
  return {
    a,
    b,
    close: () => {
      a.destroy();
      b.destroy();
      server.close();
    },
  };
}

const readAll = (s: net.Socket, bytes: number): Promise<Buffer> =>
  new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let got = 0;
    s.on('data', (d: Buffer) => {
      chunks.push(d);
      got += d.length;
      if (got >= bytes) resolve(Buffer.concat(chunks));
    });
    s.resume();
  });

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

describe.runIf(directWrites)('writeDirect', () => {
  it('hands a small write to the kernel at once: the buffer is free again and the peer gets the bytes', async () => {
    const { a, b, close } = await pair();
    cleanups.push(close);
    const buf = Buffer.from('hello, direct');
    let after = 0;
    expect(writeDirect(a, buf, () => after++)).toBe(Written.Done);
    buf.fill(0); // free again: overwriting it changes nothing sent
    expect(a.bytesWritten).toBe(13); // counted by the handle, as Node's own writes are
    expect((await readAll(b, 13)).toString()).toBe('hello, direct');
    expect(after).toBe(0);
  });

  it('keeps a write the kernel cannot take whole, and calls back once the peer has read it', async () => {
    const { a, b, close } = await pair();
    cleanups.push(close);
    // Far more than the loopback socket buffers hold while the peer does not read.
    const big = Buffer.alloc(32 << 20);
    for (let i = 0; i < big.length; i += 4096) big.writeUInt32BE(i, i);
    const want = createHash('sha256').update(big).digest('hex');
    let done: (err: Error | null) => void = () => {};
    const finished = new Promise<Error | null>((r) => (done = r));
    expect(writeDirect(a, big, done)).toBe(Written.Pending);
    // While it waits, the socket refuses nothing of its own but a later write must queue behind it:
    // socket.write() keeps the order.
    a.write('tail');
    const got = await readAll(b, big.length + 4);
    expect(await finished).toBeNull();
    expect(createHash('sha256').update(got.subarray(0, big.length)).digest('hex')).toBe(want);
    expect(got.subarray(big.length).toString()).toBe('tail');
  });

  it('refuses while the socket\'s own queue holds bytes, and once it is ended or destroyed', async () => {
    const { a, b, close } = await pair();
    cleanups.push(close);
    a.write(Buffer.alloc(32 << 20)); // waits in the stream's queue
    expect(a.writableLength).toBeGreaterThan(0);
    expect(writeDirect(a, Buffer.from('x'), () => {})).toBe(Written.Refused);
    b.resume();
    await new Promise((r) => a.once('drain', r));
    expect(writeDirect(a, Buffer.from('x'), () => {})).toBe(Written.Done);
    a.end();
    expect(writeDirect(a, Buffer.from('x'), () => {})).toBe(Written.Refused);
    a.destroy();
    expect(writeDirect(a, Buffer.from('x'), () => {})).toBe(Written.Refused);
  });

  it('refuses a socket still connecting and a TLS socket', async () => {
    const server = net.createServer(() => {});
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const connecting = net.connect(port, '127.0.0.1');
    const secure = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false });
    secure.on('error', () => {});
    cleanups.push(() => {
      connecting.destroy();
      secure.destroy();
      server.close();
    });
    expect(writeDirect(connecting, Buffer.from('x'), () => {})).toBe(Written.Refused);
    await new Promise((r) => connecting.once('connect', r));
    expect(writeDirect(secure, Buffer.from('x'), () => {})).toBe(Written.Refused);
  });

  it('destroys the socket with the error when the peer is gone and reports the pending write failed', async () => {
    const { a, b, close } = await pair();
    cleanups.push(close);
    const errors: Error[] = [];
    a.on('error', (e) => errors.push(e));
    let done: (err: Error | null) => void = () => {};
    const finished = new Promise<Error | null>((r) => (done = r));
    expect(writeDirect(a, Buffer.alloc(32 << 20), done)).toBe(Written.Pending);
    b.resetAndDestroy();
    const err = await finished;
    expect(err).toBeInstanceOf(Error);
    await new Promise((r) => setImmediate(r));
    expect(a.destroyed).toBe(true);
  });
});
