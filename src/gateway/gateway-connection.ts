// One client connection through the mesh gateway, from its first byte to both sockets closed: it
// reads the ClientHello into a bounded window, routes it by SNI, connects upstream (the next target
// when one refuses or hangs up unanswered), replays the hello and moves bytes both ways with the
// gateway's read-buffer rules (see gateway.ts), or, where the gateway has a native byte pump, hands
// both sockets to it once the upstream has answered and is told by its report how the connection went.
// One class over 400 lines on purpose: it is the hot path (every read and write of every
// connection), one state machine that reads best, and that V8 inlines best, from hello to close.
import { isIsthmusError } from '../core/errors.js';
import type { SniName } from '../core/names.js';
import type { FlowIdentity, FlowRecord, FlowVerdict } from '../dataflow/index.js';
import { Written, type Accepted, type DataPath, type TcpConn } from '../netio/index.js';
import { getSystemErrorName } from 'node:util';
import type { Logger } from '../telemetry/index.js';
import { parseClientHello, type ClientHello } from './client-hello.js';
import type { GatewayErrorReason, GatewayMetrics, RouteCounts } from './metrics.js';
import type { NativePump, PumpReport } from './pump/index.js';
import type { RouteFound, RouteTable, RouteTarget } from './routes.js';

/** What a connection asks of the gateway that accepted it. */
export interface ConnectionHost {
  readonly dc: string;
  readonly logger: Logger;
  readonly dataPath: DataPath;
  /** The native byte pump connections are handed to once routed and answered; undefined: none. */
  readonly pump: NativePump | undefined;
  readonly routes: RouteTable;
  readonly metrics: GatewayMetrics | undefined;
  readonly unrouted: RouteCounts | undefined;
  readonly sharedReadBuffer: Buffer;
  readonly helloTimeoutMs: number;
  /** Time on the data path before the hand-off to the pump (0: at the upstream's first bytes). */
  readonly pumpAfterMs: number;
  readonly maxHelloBytes: number;
  readonly idleTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly maxAttempts: number;
  readonly recording: boolean;
  takeReadBuffer(): Buffer;
  giveReadBuffer(b: Buffer): void;
  holdsBuffers(c: GatewayConnection): boolean;
  released(c: GatewayConnection, counts: RouteCounts | undefined): void;
  error(route: string, reason: GatewayErrorReason): void;
  record(r: Pick<FlowRecord, 'traceId' | 'hop' | 'destination' | 'sni' | 'verdict' | 'reason' | 'startTime' | 'durationMs' | 'bytesIn' | 'bytesOut'>): void;
}

export const ZERO_TRACE = '0'.repeat(32);
export const NOBODY: FlowIdentity = { spiffeId: '', service: '', namespace: '', dc: '' };
/** Clears a timer and lets go of it (a connection lives for hours; a cleared Timeout need not). */
const clear = (t: NodeJS.Timeout | undefined): undefined => {
  clearTimeout(t);
  return undefined;
};
/** A read at least this big moves that direction of a connection to a buffer of its own... */
const BULK_READ = 16 * 1024;
/** ...and so do this many reads through the shared buffer. */
const SHARED_READS = 32;
/** Bytes moved on the data path (once open) after which a connection goes to the pump at once. */
const PUMP_AFTER_BYTES = 64 * 1024;
/** Idle sweeps per idle timeout: a connection is closed after this many sweeps saw no byte. */
export const IDLE_SWEEPS = 4;
/**
 * `buf`'s first `n` bytes as a Buffer: `last` again when it is that very view (a connection's
 * requests and answers tend to repeat their sizes), so a steady stream allocates no view per read.
 */
function viewOf(last: Buffer | undefined, buf: Buffer, n: number): Buffer {
  if (last !== undefined && last.length === n && last.buffer === buf.buffer && last.byteOffset === buf.byteOffset) return last;
  return buf.subarray(0, n);
}
const errnoName = (errno: number): string => {
  try {
    return getSystemErrorName(-Math.abs(errno));
  } catch {
    return `errno ${errno}`;
  }
};
/** Bytes read before a hello must have completed: its largest size, plus a header per record. */
const helloWindow = (max: number) => max + 4 + 256 * 5;

/** open: bytes moved here; pumped: by the byte pump, until its report. */
type State = 'hello' | 'connecting' | 'open' | 'pumped' | 'done';

/** One client connection through the gateway, from its first byte to both sockets closed. */
export class GatewayConnection {
  state: State = 'hello';
  private readonly start = Date.now();
  private helloTimer: NodeJS.Timeout | undefined;
  private acc: Buffer | undefined;
  private accLen = 0;
  private helloBytes: Buffer | undefined;
  /** Of the hello, what the flow record needs (the rest is let go once routed). */
  private sni: string | undefined;
  private traceId: string | undefined;
  private route: RouteFound | undefined;
  /** The route's counts for the metrics, once routed. */
  private counts: RouteCounts | undefined;
  private sniName: SniName | undefined;
  private upstream: TcpConn | undefined;
  private target: RouteTarget | undefined;
  private attempt = 0;
  /** Targets that failed, and why (made on the first failure). */
  private failures: string[] | undefined;
  private connectTimer: NodeJS.Timeout | undefined;
  /** Buffers of this connection's own, upstream and client side (undefined: the shared one). */
  private upstreamBuf: Buffer | undefined;
  private clientBuf: Buffer | undefined;
  private upstreamPaused = false;
  /** Set by forward(): its write waits for the destination to drain. */
  private waiting = false;
  /** A read buffer of this connection's that a waiting write holds, per direction. */
  private heldByClientWrite: Buffer | undefined;
  private heldByUpstreamWrite: Buffer | undefined;
  /**
   * The last view of a read into this connection's own buffer, per direction: the next read of the
   * same size into the same buffer reuses it. (Reads into the shared buffer, as an idle connection's
   * few are, keep no view.)
   */
  private clientView: Buffer | undefined;
  private upstreamView: Buffer | undefined;
  /** Bytes moved since the last idle sweep; sweeps in a row that saw none. */
  private active = false;
  private idleSweeps = 0;
  /** Reads through the shared buffer, both directions. */
  private sharedReads = 0;
  /** Read anything since the last buffer sweep; in the gateway's set of connections with own buffers. */
  private readSinceSweep = false;
  private inBuffered = false;
  private failure: string | undefined;
  /** Bytes the byte pump moved from and to the client (the head it was given included). */
  private pumpedIn = 0;
  private pumpedOut = 0;
  /** The hello's write to the upstream waits for it to drain: no hand-off to the pump meanwhile. */
  private helloPending = false;
  private clientClosed = false;
  private upstreamClosed = true;
  /** A FIN passed on, either way: the pump could not know that direction is over, so no hand-off. */
  private endPassed = false;
  /** Bytes moved on the data path since the upstream answered; the pump's time has come. */
  private openBytes = 0;
  private pumpDue = false;
  /** The pump refused this connection once (stopped, out of fds): it stays here to its end. */
  private pumpRefused = false;
  private pumpTimer: NodeJS.Timeout | undefined;
  private routeLabel(): string {
    return this.route?.route ?? '';
  }

  readonly client: TcpConn;

  constructor(
    private readonly gw: ConnectionHost,
    handle: Accepted,
  ) {
    this.client = gw.dataPath.accept(handle, {
      buffer: this.nextClientBuffer,
      read: this.onClientRead,
      end: this.onClientEnd,
      error: this.onClientError,
      close: this.onClientClose,
    });
    this.helloTimer = setTimeout(this.onHelloTimeout, gw.helloTimeoutMs);
  }

  /** Gateway stopping: close both sides now (a pumped connection: the gateway asks its pump). */
  abort(): void {
    this.failure ??= 'gateway stopped';
    if (this.state === 'pumped') return;
    this.client.destroy();
    this.upstream?.destroy();
  }

  // ---- reading the hello ----

  /** Bytes from the client: the hello first, then the stream. False stops reading (until resume()). */
  private readonly onClientRead = (n: number, buf: Buffer): boolean => {
    const chunk = buf === this.clientBuf ? (this.clientView = viewOf(this.clientView, buf, n)) : buf.subarray(0, n);
    this.active = true;
    if (this.state === 'open') {
      const up = this.upstream!;
      this.readSinceSweep = true;
      this.clientBuf = this.forward(up, chunk, buf, this.clientBuf);
      if (this.clientBuf !== undefined && !this.inBuffered) this.inBuffered = this.gw.holdsBuffers(this);
      if (this.waiting) return false;
      if (!this.gw.pump) return true;
      return !this.handedOffAfter(n);
    }
    if (this.state === 'hello') return this.onHelloData(chunk);
    return false;
  };

  private readonly nextClientBuffer = (): Buffer => this.clientBuf ?? this.gw.sharedReadBuffer;

  /**
   * Writes `chunk` (read into `buf`) to `dest`; returns the buffer for this direction's next read
   * (undefined: the shared one). Sets `waiting` when the write has to wait for `dest` to drain: the
   * caller stops reading this direction until the write is done (afterClientWrite/afterUpstreamWrite).
   */
  private forward(dest: TcpConn, chunk: Buffer, buf: Buffer, own: Buffer | undefined): Buffer | undefined {
    this.waiting = false;
    if (buf !== own) {
      // The shared buffer is the next read target of every connection: what is written is a copy.
      this.send(dest, Buffer.from(chunk), undefined);
      return chunk.length >= BULK_READ || ++this.sharedReads > 2 * SHARED_READS ? this.gw.takeReadBuffer() : undefined;
    }
    // The connection's own buffer, written from without a copy: the next read goes into another one
    // while a write still holds it, and it is given back once that write is done.
    return this.send(dest, chunk, own) ? own : this.gw.takeReadBuffer();
  }

  /**
   * True when `data` is free again at once; `own` (a read buffer) is given back when a write that
   * held it is done.
   */
  private send(dest: TcpConn, data: Buffer, own: Buffer | undefined): boolean {
    const toClient = dest === this.client;
    if (dest.write(data, toClient ? this.afterClientWrite : this.afterUpstreamWrite) === Written.Done) return true;
    // One write at most waits per direction (reading stops meanwhile): its buffer is kept here and
    // given back when it is done.
    if (toClient) this.heldByClientWrite = own;
    else this.heldByUpstreamWrite = own;
    this.waiting = true;
    return false;
  }

  /**
   * A segment of the hello (a view into the read buffer, overwritten by the next read). Reading stops
   * once the hello is complete and resumes when the upstream answers, so a client that goes away
   * meanwhile is noticed then.
   */
  private onHelloData(chunk: Buffer): boolean {
    // The usual case: the whole hello in the first segment, parsed where it lies. Otherwise the
    // segments are gathered in one growing buffer (copied once each), never past the hello window.
    const view = this.acc || this.accLen ? this.append(chunk) : chunk;
    let hello: ClientHello | undefined;
    try {
      hello = parseClientHello(view, { maxHandshakeBytes: this.gw.maxHelloBytes });
    } catch (err) {
      this.refuseHello(err);
      return false;
    }
    if (!hello) {
      if (view === chunk) this.append(chunk);
      // The parser refuses an oversized hello from its headers; this only bounds what it cannot see.
      if (this.accLen > helloWindow(this.gw.maxHelloBytes)) {
        this.refuseHello(new Error(`no complete ClientHello in the first ${this.accLen} bytes`));
        return false;
      }
      return true;
    }
    // Kept until an upstream answers (replayed to the next target otherwise): a copy when it lies in
    // the read buffer.
    this.helloBytes = view === chunk ? Buffer.from(chunk) : view;
    this.sni = hello.sni;
    this.traceId = hello.traceId;
    this.acc = undefined;
    this.helloTimer = clear(this.helloTimer);
    this.routeHello(hello);
    return false;
  }

  private append(chunk: Buffer): Buffer {
    const need = this.accLen + chunk.length;
    if (!this.acc || need > this.acc.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, Math.min(2 * (this.acc?.length ?? 0), helloWindow(this.gw.maxHelloBytes)), 2048));
      if (this.acc) this.acc.copy(grown, 0, 0, this.accLen);
      this.acc = grown;
    }
    this.acc.set(chunk, this.accLen);
    this.accLen = need;
    return this.acc.subarray(0, this.accLen);
  }

  /** The client ended its side: while the hello is read a refusal, once spliced passed on. */
  private readonly onClientEnd = (): void => {
    if (this.state === 'open') {
      this.endPassed = true;
      this.upstream?.end();
      return;
    }
    if (this.state !== 'hello') return;
    const view = this.acc ? this.acc.subarray(0, this.accLen) : Buffer.alloc(0);
    // A connect-and-close (a TCP health check, a port scan) is no flow: nothing was asked for.
    if (view.length === 0) return this.finishQuietly();
    try {
      parseClientHello(view, { maxHandshakeBytes: this.gw.maxHelloBytes, final: true });
      this.refuseHello(new Error('connection closed before the ClientHello was read'));
    } catch (err) {
      this.refuseHello(err);
    }
  };

  private readonly onHelloTimeout = (): void => {
    if (this.state !== 'hello') return;
    this.state = 'done';
    const got = this.accLen;
    this.gw.error('', 'hello_timeout');
    this.gw.logger.warn('ClientHello not complete in time; connection reset', {
      timeoutMs: this.gw.helloTimeoutMs,
      bytes: got,
      peer: this.client.remoteAddress(),
    });
    this.failure = `ClientHello not complete within ${this.gw.helloTimeoutMs} ms (${got} bytes received)`;
    this.resetClient('error');
  };

  private refuseHello(err: unknown): void {
    if (this.state !== 'hello') return;
    this.state = 'done';
    this.helloTimer = clear(this.helloTimer);
    const message = (err as Error).message;
    this.gw.error('', 'bad_client_hello');
    this.gw.logger.warn('bad ClientHello; connection reset', {
      error: message,
      code: isIsthmusError(err) ? err.code : undefined,
      peer: this.client.remoteAddress(),
    });
    this.failure = `bad ClientHello: ${message}`;
    this.resetClient('error');
  }

  private finishQuietly(): void {
    this.state = 'done';
    this.helloTimer = clear(this.helloTimer);
    this.client.destroy();
  }

  // ---- routing and connecting ----

  private routeHello(hello: ClientHello): void {
    const decision = this.gw.routes.resolve(hello.sni);
    this.sniName = decision.name;
    if (!decision.ok) {
      this.state = 'done';
      this.gw.error('', 'no_route');
      this.gw.logger.warn('no route for SNI; connection reset', { sni: hello.sni, reason: decision.reason, traceId: hello.traceId });
      this.failure = decision.reason;
      this.resetClient('no_route');
      return;
    }
    this.route = decision;
    const metrics = this.gw.metrics;
    if (metrics) {
      this.gw.unrouted!.active--;
      const counts = (this.counts = metrics.route(decision.route, decision.hop));
      counts.active++;
      counts.connections++;
    }
    this.state = 'connecting';
    this.connectNext();
  }

  private connectNext(): void {
    const route = this.route!;
    const limit = Math.min(route.targets.length, this.gw.maxAttempts);
    if (this.clientClosed) {
      this.state = 'done';
      this.emit('error');
      this.maybeDone();
      return;
    }
    if (this.attempt >= limit) {
      this.state = 'done';
      this.gw.error(route.route, 'upstream_unreachable');
      this.failure = `no upstream reachable for ${route.route}: ${this.failures?.join('; ') || 'client went away'}`;
      this.gw.logger.warn('no upstream reachable; connection reset', { route: route.route, tried: this.failures });
      this.resetClient('error');
      return;
    }
    const target = route.targets[this.attempt++];
    this.target = target;
    this.upstreamClosed = false;
    const up: TcpConn = this.gw.dataPath.connect(target.host, target.port, {
      buffer: this.nextUpstreamBuffer,
      read: this.onUpstreamRead,
      connect: () => this.onUpstreamConnect(up),
      end: () => this.onUpstreamEnd(up),
      error: (code) => {
        if (this.upstream !== up) return;
        if (this.state === 'connecting') (this.failures ??= []).push(`${target.host}:${target.port} ${code}`);
        else this.onSpliceError(`upstream ${target.host}:${target.port}: ${code}`, code === 'ECONNRESET');
      },
      close: () => this.onUpstreamClose(up),
    });
    this.upstream = up;
    this.connectTimer = setTimeout(() => {
      if (this.upstream !== up || this.state !== 'connecting') return;
      (this.failures ??= []).push(`${target.host}:${target.port} timed out after ${this.gw.connectTimeoutMs} ms`);
      up.destroy();
    }, this.gw.connectTimeoutMs);
  }

  private onUpstreamConnect(up: TcpConn): void {
    if (this.upstream !== up || this.state !== 'connecting') return;
    this.connectTimer = clear(this.connectTimer);
    // The client stays paused until the upstream answers: one that accepts and then closes without
    // a word (a dead gateway behind a load balancer) is passed over, the hello replayed to the next.
    if (up.write(this.helloBytes!, this.afterHelloWrite) === Written.Pending) this.helloPending = true;
    const target = this.target!;
    this.connectTimer = setTimeout(() => {
      if (this.upstream !== up || this.state !== 'connecting') return;
      (this.failures ??= []).push(`${target.host}:${target.port} did not answer the ClientHello within ${this.gw.connectTimeoutMs} ms`);
      up.destroy();
    }, this.gw.connectTimeoutMs);
  }

  private onUpstreamEnd(up: TcpConn): void {
    if (this.upstream !== up) return;
    if (this.state === 'connecting') {
      (this.failures ??= []).push(`${this.target!.host}:${this.target!.port} closed without answering`);
      up.destroy();
    } else {
      this.endPassed = true;
      this.client.end();
    }
  }

  private readonly afterHelloWrite = (): void => {
    this.helloPending = false;
  };

  /**
   * The upstream's first bytes (`head`, in the read buffer): both sockets go to the byte pump, which
   * writes `head` to the client first. False when they cannot (bytes still held on this side, the
   * pump stopped or out of fds): the connection goes on here.
   */
  private handOff(pump: NativePump, head: Buffer | undefined): boolean {
    const up = this.upstream!;
    const client = this.client;
    const fdUp = up.fd();
    const fdClient = client.fd();
    if (this.helloPending || fdUp < 0 || fdClient < 0) return false;
    try {
      // The upstream is the pump's A and the client its B: the head it writes to B before anything
      // read from A is the upstream's answer, read here (the hello went to the upstream already).
      pump.startFds(fdUp, fdClient, head, this.onPumped);
    } catch (err) {
      this.gw.logger.warn('byte pump refused a connection; it is moved here', { error: err, route: this.routeLabel() });
      this.pumpRefused = true;
      return false;
    }
    this.connectTimer = clear(this.connectTimer);
    this.pumpTimer = clear(this.pumpTimer);
    this.state = 'pumped';
    this.helloBytes = undefined;
    up.detach();
    client.detach();
    // Let go of what no event will use again (a pumped connection may idle for hours).
    this.upstream = undefined;
    return true;
  }

  /** The byte pump's report: the connection is over (A is the upstream, B the client). */
  private readonly onPumped = (r: PumpReport): void => {
    this.pumpedIn = r.bytesBtoA;
    this.pumpedOut = r.bytesAtoB;
    const code = r.errno ? errnoName(r.errno) : 'error';
    if (r.how === 'reset' || r.how === 'error') {
      if (r.closedBy === 'a') {
        this.failure ??= `upstream ${this.target!.host}:${this.target!.port}: ${code}`;
        this.gw.error(this.routeLabel(), 'upstream_reset');
      } else if (r.closedBy === 'b') this.failure ??= `client: ${code}`;
      else this.failure ??= `byte pump: ${code}`;
    } else if (r.how === 'idle') {
      this.gw.error(this.routeLabel(), 'idle_timeout');
      this.failure ??= `idle for ${this.gw.idleTimeoutMs} ms`;
    }
    // 'closed': closed by abort() (the gateway stopping), whose failure says so.
    this.clientClosed = this.upstreamClosed = true;
    this.state = 'done';
    this.emit(this.failure ? 'error' : 'allowed');
    this.gw.released(this, this.counts);
  };

  /** The upstream's first bytes: from here on both directions flow. */
  private answered(): void {
    this.connectTimer = clear(this.connectTimer);
    this.state = 'open';
    this.helloBytes = undefined;
    if (this.gw.pump && !this.pumpRefused) this.pumpTimer = setTimeout(this.onPumpDue, this.gw.pumpAfterMs);
    this.client.resume();
  }

  private readonly onPumpDue = (): void => {
    this.pumpTimer = undefined;
    if (this.state !== 'open') return;
    // Now if nothing is held here; else after the next read that leaves nothing held.
    this.pumpDue = true;
    this.lateHandOff();
  };

  /** After `n` more bytes moved here: to the pump, when its time came or 64 KiB have moved. True once handed off. */
  private handedOffAfter(n: number): boolean {
    return (this.pumpDue || (this.openBytes += n) >= PUMP_AFTER_BYTES) && this.lateHandOff();
  }

  /**
   * An open connection to the pump, when nothing of it is held here (no write waiting either way, no
   * FIN passed on): with no head (every byte read so far is written). True once handed off.
   */
  private lateHandOff(): boolean {
    if (this.state !== 'open' || this.pumpRefused || this.failure || this.endPassed || this.waiting || this.upstreamPaused) return false;
    if (this.heldByClientWrite || this.heldByUpstreamWrite) return false;
    if (!this.handOff(this.gw.pump!, undefined)) return false;
    if (this.clientBuf) this.gw.giveReadBuffer(this.clientBuf);
    if (this.upstreamBuf) this.gw.giveReadBuffer(this.upstreamBuf);
    this.clientBuf = this.upstreamBuf = this.clientView = this.upstreamView = undefined;
    return true;
  }

  private onUpstreamClose(up: TcpConn): void {
    if (this.upstream !== up) return;
    this.connectTimer = clear(this.connectTimer);
    if (this.state === 'connecting') {
      this.upstream = undefined;
      this.upstreamClosed = true;
      this.connectNext();
      return;
    }
    this.upstreamClosed = true;
    if (!this.clientClosed && this.failure) this.client.destroy();
    this.maybeDone();
  }

  // ---- splicing ----

  /** A write to the upstream that had to wait is done (on failure the upstream is destroyed by then). */
  private readonly afterUpstreamWrite = (err: Error | null): void => {
    if (this.heldByUpstreamWrite) this.gw.giveReadBuffer(this.heldByUpstreamWrite);
    this.heldByUpstreamWrite = undefined;
    if (!err && !this.client.destroyed) this.client.resume();
  };

  /** A write to the client that had to wait is done. */
  private readonly afterClientWrite = (err: Error | null): void => {
    if (this.heldByClientWrite) this.gw.giveReadBuffer(this.heldByClientWrite);
    this.heldByClientWrite = undefined;
    if (!err) this.onClientDrain();
  };

  private readonly nextUpstreamBuffer = (): Buffer => this.upstreamBuf ?? this.gw.sharedReadBuffer;

  private readonly onUpstreamRead = (n: number, buf: Buffer): boolean => {
    if (this.state === 'connecting') {
      if (this.gw.pump && this.gw.pumpAfterMs === 0 && this.handOff(this.gw.pump, buf.subarray(0, n))) return false;
      this.answered();
    }
    this.active = true;
    const client = this.client;
    if (client.destroyed || client.ended) return false;
    const chunk = buf === this.upstreamBuf ? (this.upstreamView = viewOf(this.upstreamView, buf, n)) : buf.subarray(0, n);
    this.readSinceSweep = true;
    this.upstreamBuf = this.forward(client, chunk, buf, this.upstreamBuf);
    if (this.upstreamBuf !== undefined && !this.inBuffered) this.inBuffered = this.gw.holdsBuffers(this);
    if (this.waiting) {
      this.upstreamPaused = true;
      return false;
    }
    if (!this.gw.pump || this.state !== 'open') return true;
    return !this.handedOffAfter(n);
  };

  private readonly onClientDrain = (): void => {
    if (this.upstreamPaused) {
      this.upstreamPaused = false;
      this.upstream?.resume();
    }
  };

  /**
   * Called by the gateway's buffer sweep: a connection that read nothing since the last one goes back
   * to the shared read buffer and gives its own back. True when it holds none any more; undefined when
   * this Node cannot swap a socket's read buffer (it keeps them).
   */
  releaseIdleBuffers(): boolean | undefined {
    if (this.readSinceSweep) {
      this.readSinceSweep = false;
      return false;
    }
    const shared = this.gw.sharedReadBuffer;
    const client = this.client;
    if (this.clientBuf && !client.destroyed) {
      if (!client.readInto(shared)) return undefined;
      this.gw.giveReadBuffer(this.clientBuf);
      this.clientBuf = this.clientView = undefined;
    }
    const up = this.upstream;
    if (this.upstreamBuf && up && !up.destroyed) {
      if (!up.readInto(shared)) return undefined;
      this.gw.giveReadBuffer(this.upstreamBuf);
      this.upstreamBuf = this.upstreamView = undefined;
    }
    // Back to the start: it takes buffers of its own again only after moving bulk again.
    this.sharedReads = 0;
    this.inBuffered = false;
    return true;
  }

  /** Called by the gateway's idle sweep. */
  sweepIdle(): void {
    if (this.state !== 'open') return;
    if (this.active) {
      this.active = false;
      this.idleSweeps = 0;
    } else if (++this.idleSweeps >= IDLE_SWEEPS) {
      this.onIdle();
    }
  }

  private onIdle(): void {
    this.gw.error(this.routeLabel(), 'idle_timeout');
    this.failure ??= `idle for ${this.gw.idleTimeoutMs} ms`;
    this.client.destroy();
    this.upstream?.destroy();
  }

  private onSpliceError(reason: string, reset: boolean): void {
    if (this.failure) return;
    this.failure = reason;
    this.gw.error(this.routeLabel(), 'upstream_reset');
    // An upstream reset is passed on as a reset, so the client does not take it for a clean end.
    if (reset) this.client.reset();
    else this.client.destroy();
  }

  private readonly onClientError = (code: string): void => {
    if (this.state === 'open' && !this.failure) this.failure = `client: ${code}`;
    if (this.state === 'open' && this.upstream) {
      if (code === 'ECONNRESET') this.upstream.reset();
      else this.upstream.destroy();
    }
  };

  private readonly onClientClose = (): void => {
    this.clientClosed = true;
    this.helloTimer = clear(this.helloTimer);
    if (this.state === 'hello') {
      this.state = 'done';
      if (this.accLen > 0) {
        this.failure = `client closed the connection during the ClientHello (${this.accLen} bytes received)`;
        this.emit('error');
      }
    }
    if (this.state === 'connecting') {
      // Gave up while we were connecting: stop trying.
      this.failure ??= 'client closed while connecting upstream';
      this.upstream?.destroy();
    }
    this.maybeDone();
  };

  private resetClient(verdict: FlowVerdict): void {
    this.client.reset();
    this.emit(verdict);
  }

  private maybeDone(): void {
    if (!this.clientClosed || !this.upstreamClosed) return;
    this.pumpTimer = clear(this.pumpTimer);
    if (this.route && this.state !== 'done') {
      this.state = 'done';
      this.emit(this.failure ? 'error' : 'allowed');
    }
    this.gw.released(this, this.counts);
  }

  private emitted = false;

  private emit(verdict: FlowVerdict): void {
    if (this.emitted) return;
    this.emitted = true;
    const route = this.route;
    const name = this.sniName;
    const client = this.client;
    const bytesIn = client.bytesRead + this.pumpedIn;
    const bytesOut = client.bytesWritten + this.pumpedOut;
    if (this.counts) {
      this.counts.bytesIn += bytesIn;
      this.counts.bytesOut += bytesOut;
    }
    if (!this.gw.recording) return;
    const t = this.target;
    this.gw.record({
      traceId: this.traceId ?? ZERO_TRACE,
      hop: route?.hop ?? (name && name.dc !== this.gw.dc ? 'gateway-egress' : 'gateway-ingress'),
      destination: name
        ? name.kind === 'server'
          ? { spiffeId: '', service: 'server', namespace: '', dc: name.dc }
          : { spiffeId: '', service: name.service, namespace: name.namespace, dc: name.dc }
        : NOBODY,
      sni: this.sni ?? '',
      verdict,
      reason: verdict === 'allowed' ? `routed to ${t!.host}:${t!.port}${this.failures ? ` after ${this.failures.join('; ')}` : ''}` : (this.failure ?? 'error'),
      startTime: this.start,
      durationMs: Date.now() - this.start,
      bytesIn,
      bytesOut,
    });
  }
}
