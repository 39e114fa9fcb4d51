// The mesh gateway: one TCP listener; per connection it reads only the TLS ClientHello (bounded in
// time and bytes), routes it by SNI, connects upstream (the next target when one refuses or hangs up
// unanswered), replays the hello and splices bytes both ways. It never holds a key, never decrypts.
import { randomUUID } from 'node:crypto';
import diagnosticsChannel from 'node:diagnostics_channel';
import type net from 'node:net';
import type { Registry } from 'prom-client';
import type { Component } from '../core/lifecycle.js';
import { isIsthmusError } from '../core/errors.js';
import type { FlowIdentity, FlowRecord, FlowVerdict } from '../dataflow/index.js';
import { chooseDataPath, closeAccepted, logDataPath, Written, type Accepted, type DataPath, type TcpConn } from '../netio/index.js';
import { silentLogger, type Logger } from '../telemetry/index.js';
import { DEFAULT_MAX_HELLO_BYTES, parseClientHello, type ClientHello } from './client-hello.js';
import { gatewayMetrics, type GatewayErrorReason, type GatewayMetrics, type RouteCounts } from './metrics.js';
import { RouteTable, type GatewayRoutes, type RouteFound, type RouteTarget } from './routes.js';
import type { SniName } from '../core/names.js';

export const GATEWAY_CONNECTION_CHANNEL = 'isthmus:gateway:connection';

export interface GatewayOptions {
  /** Names this gateway in flow records (`reporter`) and logs. */
  id: string;
  /** This gateway's DC (its names route locally). */
  dc: string;
  host: string;
  port: number;
  /** The first routing table (default: routes nothing until update()). */
  routes?: GatewayRoutes | RouteTable;
  registry?: Registry;
  logger?: Logger;
  /** Every connection's flow record, when it ends (or is refused). */
  onFlow?: (record: FlowRecord) => void;
  /** Time a client gets to send its whole ClientHello (default 10 s): slow senders hold no slot longer. */
  helloTimeoutMs?: number;
  /** Largest handshake message read (default 16 KiB). */
  maxHelloBytes?: number;
  /**
   * A connection with no bytes either way for this long is closed (default 1 h, as Envoy's tcp_proxy),
   * found by a sweep every quarter of it: so after between 1 and 1.25 times this.
   */
  idleTimeoutMs?: number;
  /** Time to connect to one upstream target before trying the next (default 5 s). */
  connectTimeoutMs?: number;
  /** Upstream targets tried per connection (default 3). */
  maxAttempts?: number;
  /** Connections open at once; past it new ones are reset and recorded (default 8192). */
  maxConnections?: number;
  /**
   * A connection that has read buffers of its own (after moving bulk) and reads nothing for between
   * one and two of these gives them back and reads through the shared one again (default 2 s): an
   * idle connection holds no read buffer, whatever it moved before.
   */
  bufferSweepMs?: number;
  /**
   * Offered each connection as it is accepted, before a byte is read, with the number open here:
   * true when it took the connection elsewhere (a GatewayCluster worker passing it to a less loaded
   * one, see balance.ts), and this gateway forgets it. Only where the data path can pass connections
   * to another process (the fast path).
   */
  passOn?: (handle: Accepted, open: number) => boolean;
  /**
   * Drive connections on the fast data path where it passes its self-test (true), or on plain
   * net.Sockets (false); unset: as ISTHMUS_FAST_PATH says (see netio/).
   */
  fastPath?: boolean;
}

const ZERO_TRACE = '0'.repeat(32);
const noop = (): void => {};
/** Clears a timer and lets go of it (a connection lives for hours; a cleared Timeout need not). */
const clear = (t: NodeJS.Timeout | undefined): undefined => {
  clearTimeout(t);
  return undefined;
};
const NOBODY: FlowIdentity = { spiffeId: '', service: '', namespace: '', dc: '' };
/**
 * Reads land in one buffer shared by every connection of the gateway, and what is read is copied out
 * before it is written on (it may wait in a write queue while the next read reuses the buffer). A
 * connection that keeps moving bytes (many reads, or a big one) gets buffers of its own, written on
 * without a copy: so a connection that stays idle after its handshake holds no read buffer at all.
 */
const READ_BUFFER = 64 * 1024;
/** A read at least this big moves that direction of a connection to a buffer of its own... */
const BULK_READ = 16 * 1024;
/** ...and so do this many reads through the shared buffer. */
const SHARED_READS = 32;
/** Read buffers kept for reuse, gateway-wide (2 MiB). */
const MAX_SPARE_BUFFERS = 32;
/** Idle sweeps per idle timeout: a connection is closed after this many sweeps saw no byte. */
const IDLE_SWEEPS = 4;
/**
 * `buf`'s first `n` bytes as a Buffer: `last` again when it is that very view (a connection's
 * requests and answers tend to repeat their sizes), so a steady stream allocates no view per read.
 */
function viewOf(last: Buffer | undefined, buf: Buffer, n: number): Buffer {
  if (last !== undefined && last.length === n && last.buffer === buf.buffer && last.byteOffset === buf.byteOffset) return last;
  return buf.subarray(0, n);
}

/** Bytes read before a hello must have completed: its largest size, plus a header per record. */
const helloWindow = (max: number) => max + 4 + 256 * 5;

export class Gateway implements Component {
  readonly name = 'gateway';
  private server: net.Server | undefined;
  private routesTable: RouteTable;
  private readonly conns = new Set<GatewayConnection>();
  /** The read buffer shared by connections (see READ_BUFFER). */
  readonly sharedReadBuffer = Buffer.allocUnsafe(READ_BUFFER);
  /** Connections' own read buffers, back from the writes that held them (see takeReadBuffer). */
  private readonly spareBuffers: Buffer[] = [];
  private readonly log: Logger;
  readonly metrics: GatewayMetrics | undefined;
  /** What is counted of connections with no route (yet): the hello still being read, or refused. */
  readonly unrouted: RouteCounts | undefined;
  readonly channel = diagnosticsChannel.channel(GATEWAY_CONNECTION_CHANNEL);
  readonly helloTimeoutMs: number;
  readonly maxHelloBytes: number;
  readonly idleTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly maxAttempts: number;
  readonly maxConnections: number;
  /** Names the gateway in flow records; settable until the first connection (a default ID may need the bound port). */
  id: string;
  private limitLoggedAt = 0;
  private closedCount = 0;
  private idleSweep: NodeJS.Timeout | undefined;
  /** Connections holding read buffers of their own, and the sweep that takes back idle ones' (see bufferSweepMs). */
  private readonly buffered = new Set<GatewayConnection>();
  private bufferSweep: NodeJS.Timeout | undefined;
  /** False once this Node turned out not to let a socket's read buffer be swapped. */
  private canSwapBuffers = true;
  /** How connections are accepted and driven: chosen at start (see netio/). */
  dataPath!: DataPath;

  constructor(private readonly opts: GatewayOptions) {
    this.id = opts.id;
    this.log = (opts.logger ?? silentLogger).child({ component: 'gateway' });
    this.routesTable = opts.routes instanceof RouteTable ? opts.routes : opts.routes ? new RouteTable(opts.routes) : RouteTable.empty(opts.dc);
    this.metrics = opts.registry ? gatewayMetrics(opts.registry) : undefined;
    this.unrouted = this.metrics?.route('', '');
    this.helloTimeoutMs = opts.helloTimeoutMs ?? 10_000;
    this.maxHelloBytes = opts.maxHelloBytes ?? DEFAULT_MAX_HELLO_BYTES;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 3_600_000;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 5_000;
    this.maxAttempts = opts.maxAttempts ?? 3;
    this.maxConnections = opts.maxConnections ?? 8192;
  }

  get dc(): string {
    return this.opts.dc;
  }

  get logger(): Logger {
    return this.log;
  }

  /** The bound port (port 0 resolved). */
  get port(): number {
    return (this.server?.address() as net.AddressInfo | null)?.port ?? 0;
  }

  get address(): string {
    const host = this.opts.host.includes(':') ? `[${this.opts.host}]` : this.opts.host;
    return `${host}:${this.port}`;
  }

  /** Connections open now (reading a hello, connecting or spliced). */
  get connections(): number {
    return this.conns.size;
  }

  /** Connections closed since the start. */
  get closed(): number {
    return this.closedCount;
  }

  get routes(): RouteTable {
    return this.routesTable;
  }

  /** Swaps the routing table; open connections keep their upstream, new ones use the new table. */
  update(routes: GatewayRoutes | RouteTable): void {
    this.routesTable = routes instanceof RouteTable ? routes : new RouteTable(routes, this.routesTable);
  }

  async start(): Promise<void> {
    const choice = await chooseDataPath({ fastPath: this.opts.fastPath });
    this.dataPath = choice.path;
    logDataPath(this.log, choice);
    // Accepted connections are read into the gateway's own buffers.
    const passOn = choice.path.passesAccepted ? this.opts.passOn : undefined;
    const server = choice.path.createServer((handle) => {
      if (!passOn?.(handle, this.conns.size)) this.accept(handle);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.opts.host, port: this.opts.port, backlog: 1024 }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // Accept errors (EMFILE and the like) are logged; the listener stays up.
    server.on('error', (err) => this.log.error('listener error', { error: err }));
    this.server = server;
    // One timer for all connections rather than one per socket, re-armed on every read.
    this.idleSweep = setInterval(() => {
      for (const c of this.conns) c.sweepIdle();
    }, Math.max(1, Math.floor(this.idleTimeoutMs / IDLE_SWEEPS))).unref();
    this.bufferSweep = setInterval(() => {
      for (const c of this.buffered) {
        const released = c.releaseIdleBuffers();
        if (released === undefined) {
          this.canSwapBuffers = false;
          this.buffered.clear();
          return;
        }
        if (released) this.buffered.delete(c);
      }
    }, this.opts.bufferSweepMs ?? 2000).unref();
    this.log.info('gateway listening', { address: this.address });
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    clearInterval(this.idleSweep);
    clearInterval(this.bufferSweep);
    const closed = server ? new Promise<void>((r) => server.close(() => r())) : Promise.resolve();
    for (const c of [...this.conns]) c.abort();
    await closed;
  }

  /** A connection accepted by another process and passed to this gateway (see passOn). */
  adopt(handle: Accepted): void {
    if (!this.server || !this.dataPath.passesAccepted) return closeAccepted(handle);
    this.accept(handle);
  }

  private accept(handle: Accepted): void {
    if (this.conns.size >= this.maxConnections) {
      const peer = this.dataPath.peerOf(handle);
      this.dataPath.reset(handle);
      this.error('', 'connection_limit');
      // Under overload this fires per connection: one line a second says enough (flows have the rest).
      const now = Date.now();
      if (now - this.limitLoggedAt >= 1000) {
        this.limitLoggedAt = now;
        this.log.warn('connection refused: connection limit reached', { limit: this.maxConnections, peer });
      }
      this.record({
        traceId: ZERO_TRACE, hop: 'gateway-ingress', destination: NOBODY, sni: '', verdict: 'error',
        reason: `connection limit of ${this.maxConnections} reached`, startTime: Date.now(), durationMs: 0, bytesIn: 0, bytesOut: 0,
      });
      return;
    }
    const c = new GatewayConnection(this, handle);
    this.conns.add(c);
    if (this.unrouted) this.unrouted.active++;
  }

  /**
   * A read buffer of a connection's own: a spare one when there is, so a bulk transfer does not take
   * fresh memory (and its page faults) for every 64 KiB that waits in a write queue.
   */
  takeReadBuffer(): Buffer {
    return this.spareBuffers.pop() ?? Buffer.allocUnsafe(READ_BUFFER);
  }

  /** Connections holding read buffers of their own now. */
  get connectionsWithOwnBuffers(): number {
    return this.buffered.size;
  }

  /** A connection that took read buffers of its own: its idle ones will be taken back. */
  holdsBuffers(c: GatewayConnection): boolean {
    if (!this.canSwapBuffers) return false;
    this.buffered.add(c);
    return true;
  }

  /** A read buffer no read or write uses any more. */
  giveReadBuffer(b: Buffer): void {
    if (this.spareBuffers.length < MAX_SPARE_BUFFERS) this.spareBuffers.push(b);
  }

  /** Called by a connection once both of its sockets are gone. */
  released(c: GatewayConnection, counts: RouteCounts | undefined): void {
    if (!this.conns.delete(c)) return;
    this.closedCount++;
    this.buffered.delete(c);
    const r = counts ?? this.unrouted;
    if (r) r.active--;
  }

  error(route: string, reason: GatewayErrorReason): void {
    this.metrics?.errors.inc({ route, reason });
  }

  /** Whether anyone takes flow records (a listener, the channel, trace logging): otherwise none is built. */
  get recording(): boolean {
    return this.opts.onFlow !== undefined || this.channel.hasSubscribers || this.log.tracing;
  }

  record(r: Pick<FlowRecord, 'traceId' | 'hop' | 'destination' | 'sni' | 'verdict' | 'reason' | 'startTime' | 'durationMs' | 'bytesIn' | 'bytesOut'>): void {
    const record: FlowRecord = {
      id: randomUUID(), requestIndex: 0, dc: this.opts.dc, reporter: this.id, source: NOBODY,
      intentionId: '', intentionDc: '', intentionIndex: 0, ...r,
    };
    if (this.channel.hasSubscribers) this.channel.publish(record);
    if (this.log.tracing) this.log.debug('connection', { traceId: record.traceId, hop: record.hop, sni: record.sni, verdict: record.verdict, reason: record.reason, bytesIn: record.bytesIn, bytesOut: record.bytesOut, durationMs: record.durationMs });
    if (!this.opts.onFlow) return;
    try {
      this.opts.onFlow(record);
    } catch (err) {
      this.log.warn('flow record listener failed', { error: err });
    }
  }
}

type State = 'hello' | 'connecting' | 'open' | 'done';

/** One client connection through the gateway, from its first byte to both sockets closed. */
class GatewayConnection {
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
  private clientClosed = false;
  private upstreamClosed = true;
  private routeLabel(): string {
    return this.route?.route ?? '';
  }

  readonly client: TcpConn;

  constructor(private readonly gw: Gateway, handle: Accepted) {
    this.client = gw.dataPath.accept(handle, {
      buffer: this.nextClientBuffer,
      read: this.onClientRead,
      end: this.onClientEnd,
      error: this.onClientError,
      close: this.onClientClose,
    });
    this.helloTimer = setTimeout(this.onHelloTimeout, gw.helloTimeoutMs);
  }

  /** Gateway stopping: close both sides now. */
  abort(): void {
    this.failure ??= 'gateway stopped';
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
      return !this.waiting;
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
    this.gw.logger.warn('ClientHello not complete in time; connection reset', { timeoutMs: this.gw.helloTimeoutMs, bytes: got, peer: this.client.remoteAddress() });
    this.failure = `ClientHello not complete within ${this.gw.helloTimeoutMs} ms (${got} bytes received)`;
    this.resetClient('error');
  };

  private refuseHello(err: unknown): void {
    if (this.state !== 'hello') return;
    this.state = 'done';
    this.helloTimer = clear(this.helloTimer);
    const message = (err as Error).message;
    this.gw.error('', 'bad_client_hello');
    this.gw.logger.warn('bad ClientHello; connection reset', { error: message, code: isIsthmusError(err) ? err.code : undefined, peer: this.client.remoteAddress() });
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
    up.write(this.helloBytes!, noop);
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
      this.client.end();
    }
  }

  /** The upstream's first bytes: from here on both directions flow. */
  private answered(): void {
    this.connectTimer = clear(this.connectTimer);
    this.state = 'open';
    this.helloBytes = undefined;
    this.client.resume();
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
    if (this.state === 'connecting') this.answered();
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
    return true;
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
    const bytesIn = client.bytesRead;
    const bytesOut = client.bytesWritten;
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
      reason: verdict === 'allowed' ? `routed to ${t!.host}:${t!.port}${this.failures ? ` after ${this.failures.join('; ')}` : ''}` : this.failure ?? 'error',
      startTime: this.start,
      durationMs: Date.now() - this.start,
      bytesIn,
      bytesOut,
    });
  }
}
