// The plain path: net.Socket and Node's public API only, for when the fast path is switched off or
// fails its self-test (choose.ts). The same behaviour at a higher cost per connection and per read:
// a stream and its events around every connection, and every read a fresh buffer of Node's, copied
// into the owner's (so the owner's buffer rules, see TcpEvents.buffer, hold as on the fast path).
// Accepted connections stay in the process that accepted them.
import net from 'node:net';
import { Written, type Accepted, type DataPath, type TcpConn, type TcpEvents } from './data-path.js';

interface Reader {
  buffer(): Uint8Array;
  callback(n: number, buf: Uint8Array): boolean | void;
}

/**
 * A 'data' listener that copies each chunk into the buffers `reader` gives and hands them on, as
 * `onread` does for the sockets Node lets have one. A false from the callback pauses the socket; what
 * is left of the chunk is put back, to come first when it resumes.
 */
function feed(socket: net.Socket, reader: Reader): (chunk: Buffer) => void {
  return (chunk) => {
    let off = 0;
    while (off < chunk.length && !socket.destroyed) {
      const buf = reader.buffer();
      const n = Math.min(buf.length, chunk.length - off);
      buf.set(chunk.subarray(off, off + n));
      off += n;
      if (reader.callback(n, buf) === false) {
        socket.pause();
        if (off < chunk.length && !socket.destroyed) socket.unshift(chunk.subarray(off));
        return;
      }
    }
  };
}

class SocketConn implements TcpConn {
  private closed = false;

  /** `socket`: TCP_NODELAY set, half-open allowed. */
  constructor(
    private readonly socket: net.Socket,
    ev: TcpEvents,
    connecting: boolean,
  ) {
    socket.on('data', feed(socket, { buffer: () => ev.buffer(), callback: (n, buf) => ev.read(n, buf as Buffer) }));
    socket.on('end', () => ev.end());
    socket.on('error', (err: NodeJS.ErrnoException) => ev.error(err.code ?? err.message));
    socket.on('close', () => ev.close());
    if (connecting) socket.once('connect', () => ev.connect?.());
  }

  get bytesRead(): number {
    return this.socket.bytesRead;
  }

  get bytesWritten(): number {
    return this.socket.bytesWritten;
  }

  get destroyed(): boolean {
    return this.socket.destroyed || this.closed;
  }

  get ended(): boolean {
    return this.socket.writableEnded;
  }

  remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    if (!this.destroyed) this.socket.resume();
  }

  /** Every read is copied into the buffer its owner gives at that moment: nothing to point anywhere. */
  readInto(): boolean {
    return true;
  }

  write(data: Buffer, after: (err: Error | null) => void): Written {
    const socket = this.socket;
    if (this.destroyed || socket.writableEnded) return Written.Done;
    let pending = false;
    socket.write(data, (err) => {
      // A socket destroyed meanwhile calls back without an error: the write did not complete.
      if (pending) after(err ?? (socket.destroyed ? new Error('connection closed before the write completed') : null));
    });
    // Nothing queued: the handle's write completed at once and holds no reference to `data`.
    if (socket.writableLength === 0) return Written.Done;
    pending = true;
    return Written.Pending;
  }

  end(): void {
    if (!this.destroyed) this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  reset(): void {
    if (this.destroyed) return;
    this.closed = true;
    this.socket.resetAndDestroy();
  }

  fd(): number {
    const s = this.socket;
    const fd = (s as unknown as { _handle?: { fd?: number } | null })._handle?.fd;
    // A chunk Node read is at most 64 KiB and so is the owner's buffer (feed() hands it over whole):
    // what the owner was not given waits in the stream's buffer, counted in readableLength.
    if (this.destroyed || s.connecting || s.readableLength > 0 || s.writableLength > 0 || typeof fd !== 'number') return -1;
    return fd;
  }

  detach(): void {
    if (this.destroyed) return;
    this.closed = true;
    const s = this.socket;
    s.removeAllListeners();
    s.on('error', () => {});
    // On a socket neither ending nor writing, destroy() is a plain close of its handle.
    s.destroy();
  }
}

/** On this path an Accepted is the paused net.Socket Node accepted. */
const socketOf = (c: Accepted): net.Socket => c as unknown as net.Socket;

export const plainPath: DataPath = {
  name: 'plain',
  passesAccepted: false,
  createServer(onAccept) {
    return net.createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (s) => onAccept(s as unknown as Accepted));
  },
  accept(c, ev) {
    const conn = new SocketConn(socketOf(c), ev, false);
    conn.resume();
    return conn;
  },
  connect(host, port, ev) {
    return new SocketConn(net.connect({ host, port, allowHalfOpen: true, noDelay: true }), ev, true);
  },
  socketOf(c, onread) {
    const s = socketOf(c);
    const buffer = onread.buffer;
    s.on('data', feed(s, { buffer: typeof buffer === 'function' ? buffer : () => buffer, callback: onread.callback }));
    s.resume();
    return s;
  },
  close(c) {
    socketOf(c).destroy();
  },
  reset(c) {
    socketOf(c).resetAndDestroy();
  },
  peerOf(c) {
    return socketOf(c).remoteAddress;
  },
};
