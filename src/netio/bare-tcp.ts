// A TCP connection driven through its libuv handle, without a net.Socket around it. A relay that
// reads into its own buffers and writes straight to the handle (see direct-write.ts) uses none of
// what a net.Socket adds, yet pays for it on every connection: the Duplex and its state machines,
// the 'end' / 'finish' / 'close' events each deferred to a tick of its own, the lookup and connect
// machinery. Per new connection through the gateway that was a third of its CPU time.
//
// The fast path's TcpConn (fast-path.ts). It rests on Node internals (the `tcp_wrap` and
// `stream_wrap` bindings, a handle's `onread`, `useUserBuffer`, `writeBuffer`, `shutdown`,
// `reset`), looked up once at load; the self-test (self-test.ts) checks that they behave.
import dns from 'node:dns';
import net from 'node:net';
import { constants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import { Written, type Accepted, type TcpConn, type TcpEvents } from './data-path.js';
import { directWrites, writeHandle, type StreamHandle } from './direct-write.js';

// ---- the bare handle ----

interface Req {
  handle: unknown;
  oncomplete: (this: Req, status: number) => void;
  conn?: BareConn;
  [k: string]: unknown;
}

interface TcpHandle extends StreamHandle {
  readonly fd: number;
  readonly writeQueueSize: number;
  onread: (this: TcpHandle) => Buffer | undefined;
  owner: BareConn | undefined;
  useUserBuffer(buf: Uint8Array): void;
  readStart(): number;
  readStop(): number;
  shutdown(req: Req): number;
  close(cb?: () => void): void;
  reset?(cb?: () => void): number;
  setNoDelay(on: boolean): number;
  getpeername(out: { address?: string }): number;
  connect(req: Req, address: string, port: number): number;
  connect6(req: Req, address: string, port: number): number;
}

interface Bindings {
  TCP: new (type: number) => TcpHandle;
  TCPConnectWrap: new () => Req;
  ShutdownWrap: new () => Req;
  SOCKET: number;
  state: Int32Array;
  kReadBytesOrError: number;
}

/** The bindings, or what is missing of them. */
function loadBindings(): Bindings | string {
  try {
    const get = (process as unknown as { binding?: (name: string) => Record<string, unknown> }).binding;
    if (!get) return 'no process.binding';
    if (!directWrites) return 'no WriteWrap in the stream_wrap binding';
    const tcp = get.call(process, 'tcp_wrap');
    const stream = get.call(process, 'stream_wrap');
    const TCP = tcp.TCP as Bindings['TCP'] | undefined;
    const constants = tcp.constants as { SOCKET?: number } | undefined;
    if (typeof TCP !== 'function' || typeof tcp.TCPConnectWrap !== 'function' || typeof stream.ShutdownWrap !== 'function')
      return 'no TCP, TCPConnectWrap or ShutdownWrap in the tcp_wrap and stream_wrap bindings';
    if (!(stream.streamBaseState instanceof Int32Array) || typeof stream.kReadBytesOrError !== 'number' || typeof constants?.SOCKET !== 'number')
      return 'no streamBaseState, kReadBytesOrError or SOCKET in the bindings';
    const proto = TCP.prototype as unknown as Record<string, unknown>;
    for (const m of ['useUserBuffer', 'readStart', 'readStop', 'shutdown', 'close', 'setNoDelay', 'getpeername', 'connect', 'connect6', 'writeBuffer']) {
      if (typeof proto[m] !== 'function') return `no TCP handle method ${m}`;
    }
    return {
      TCP,
      TCPConnectWrap: tcp.TCPConnectWrap as Bindings['TCPConnectWrap'],
      ShutdownWrap: stream.ShutdownWrap as Bindings['ShutdownWrap'],
      SOCKET: constants.SOCKET,
      state: stream.streamBaseState,
      kReadBytesOrError: stream.kReadBytesOrError,
    };
  } catch (err) {
    return `the bindings could not be loaded (${(err as Error).message})`;
  }
}

const loaded = loadBindings();
const B = typeof loaded === 'string' ? undefined : loaded;

/** What this Node lacks of the internals connections on their handles need; undefined: nothing. */
export const bareTcpMissing = typeof loaded === 'string' ? loaded : undefined;

const UV_EOF = -4095;
const { ENOTCONN, EPIPE } = constants.errno;
const codeOf = (status: number): string => {
  try {
    return getSystemErrorName(status);
  } catch {
    return `E${-status}`;
  }
};

/** The handle's onread (`this` is the handle): hands the read to its connection. */
function onHandleRead(this: TcpHandle): Buffer | undefined {
  return this.owner?.onRead(B!.state[B!.kReadBytesOrError]);
}

function onShutdown(this: Req, status: number): void {
  const conn = this.conn;
  this.conn = undefined;
  conn?.onShutdown(status);
}

function onConnect(this: Req, status: number): void {
  const conn = this.conn;
  this.conn = undefined;
  conn?.onConnect(status);
}

class BareConn implements TcpConn {
  bytesRead = 0;
  bytesWritten = 0;
  destroyed = false;
  ended = false;
  private readEnded = false;
  private shutDown = false;
  private reading = false;
  private connecting = false;
  private buf: Buffer;

  constructor(
    private handle: TcpHandle,
    private readonly ev: TcpEvents,
  ) {
    handle.owner = this;
    handle.onread = onHandleRead;
    this.buf = ev.buffer();
    handle.useUserBuffer(this.buf);
    handle.setNoDelay(true);
  }

  remoteAddress(): string | undefined {
    if (this.destroyed) return undefined;
    const out: { address?: string } = {};
    return this.handle.getpeername(out) === 0 ? out.address : undefined;
  }

  pause(): void {
    if (!this.reading || this.destroyed) return;
    this.reading = false;
    this.handle.readStop();
  }

  resume(): void {
    if (this.reading || this.destroyed || this.connecting || this.readEnded) return;
    this.reading = true;
    const err = this.handle.readStart();
    if (err < 0) this.fail(codeOf(err));
  }

  readInto(buf: Buffer): boolean {
    if (this.destroyed) return true;
    this.buf = buf;
    this.handle.useUserBuffer(buf);
    return true;
  }

  /** From the handle: a read of `n` bytes into this.buf, or EOF / an error when n < 0. */
  onRead(n: number): Buffer | undefined {
    if (this.destroyed) return undefined;
    if (n > 0) {
      this.bytesRead += n;
      const buf = this.buf;
      if (!this.ev.read(n, buf)) this.pause();
      if (this.destroyed) return undefined;
      const next = this.ev.buffer();
      if (next === buf) return undefined;
      this.buf = next;
      return next;
    }
    if (n === 0) return undefined;
    this.reading = false;
    if (n !== UV_EOF) {
      this.fail(codeOf(n));
      return undefined;
    }
    this.readEnded = true;
    this.ev.end();
    if (this.shutDown && !this.destroyed) this.close();
    return undefined;
  }

  write(data: Buffer, after: (err: Error | null) => void): Written {
    if (this.destroyed || this.ended) return Written.Done;
    this.bytesWritten += data.length;
    return writeHandle(this.handle, data, after, this.onWriteFailed);
  }

  private readonly onWriteFailed = (err: Error): void => {
    this.fail(codeOf((err as NodeJS.ErrnoException).errno ?? -EPIPE));
  };

  end(): void {
    if (this.destroyed || this.ended) return;
    this.ended = true;
    const req = new B!.ShutdownWrap();
    req.handle = this.handle;
    req.oncomplete = onShutdown;
    req.conn = this;
    const err = this.handle.shutdown(req);
    if (err < 0) {
      req.conn = undefined;
      // Nothing can be sent any more (ENOTCONN: the peer is gone): a close is all that is left.
      this.close();
    }
  }

  onShutdown(status: number): void {
    if (this.destroyed) return;
    this.shutDown = true;
    if (status < 0 && status !== -ENOTCONN) return this.fail(codeOf(status));
    if (this.readEnded) this.close();
  }

  /** For connect(): the handle's connect is done. */
  onConnect(status: number): void {
    if (this.destroyed) return;
    this.connecting = false;
    if (status < 0) return this.fail(codeOf(status));
    this.ev.connect?.();
    if (!this.destroyed) this.resume();
  }

  /** Connects to `host` (an address, or a name looked up first). */
  connect(host: string, port: number): void {
    this.connecting = true;
    const family = net.isIP(host);
    if (family !== 0) return this.connectTo(host, port, family);
    dns.lookup(host, (err, address, fam) => {
      if (this.destroyed) return;
      if (err) return this.fail((err as NodeJS.ErrnoException).code ?? 'ENOTFOUND');
      this.connectTo(address, port, fam);
    });
  }

  private connectTo(host: string, port: number, family: number): void {
    const req = new B!.TCPConnectWrap();
    req.oncomplete = onConnect;
    req.conn = this;
    req.address = host;
    req.port = port;
    const err = family === 6 ? this.handle.connect6(req, host, port) : this.handle.connect(req, host, port);
    if (err < 0) {
      req.conn = undefined;
      // Reported from the next tick, as a refused connect would be: the caller has its handlers set.
      process.nextTick(() => this.fail(codeOf(err)));
    }
  }

  destroy(): void {
    this.close();
  }

  reset(): void {
    if (this.destroyed) return;
    // After end() a reset is refused (a shutdown may be under way) and the handle is closed instead.
    if (this.ended) return this.close();
    this.markClosed();
    const handle = this.handle;
    if (typeof handle.reset !== 'function' || handle.reset(this.onClosed) !== 0) handle.close(this.onClosed);
  }

  fd(): number {
    // Reads are handed to the owner as they come: only a queued write is held here.
    if (this.destroyed || this.connecting || this.handle.writeQueueSize > 0) return -1;
    return this.handle.fd;
  }

  detach(): void {
    if (this.destroyed) return;
    this.markClosed();
    this.handle.close();
  }

  private fail(code: string): void {
    if (this.destroyed) return;
    this.ev.error(code);
    this.close();
  }

  private close(): void {
    if (this.destroyed) return;
    this.markClosed();
    this.handle.close(this.onClosed);
  }

  private markClosed(): void {
    this.destroyed = true;
    this.reading = false;
    this.connecting = false;
    this.handle.owner = undefined;
  }

  private readonly onClosed = (): void => {
    this.ev.close();
  };
}

/** A connection on an accepted handle, reading (TCP_NODELAY set). Only where !bareTcpMissing. */
export function acceptBare(handle: Accepted, ev: TcpEvents): TcpConn {
  const c = new BareConn(handle as unknown as TcpHandle, ev);
  c.resume();
  return c;
}

/** A connection to `host`:`port` (TCP_NODELAY set); ev.connect, then reads, once connected. Only where !bareTcpMissing. */
export function connectBare(host: string, port: number, ev: TcpEvents): TcpConn {
  const c = new BareConn(new B!.TCP(B!.SOCKET), ev);
  c.connect(host, port);
  return c;
}
