// The mesh gateway: one TCP listener; per connection it reads only the TLS ClientHello (bounded in
// time and bytes), routes it by SNI, connects upstream (the next target when one refuses or hangs up
// unanswered), replays the hello and splices bytes both ways. It never holds a key, never decrypts.
// This file is the listener and what connections share; each connection is a GatewayConnection.
import { randomUUID } from 'node:crypto';
import diagnosticsChannel from 'node:diagnostics_channel';
import type net from 'node:net';
import type { Registry } from 'prom-client';
import { ErrorCodes, IsthmusError } from '../core/errors.js';
import type { Component } from '../core/lifecycle.js';
import type { FlowRecord } from '../dataflow/index.js';
import { chooseDataPath, closeAccepted, logDataPath, type Accepted, type DataPath } from '../netio/index.js';
import { silentLogger, type Logger } from '../telemetry/index.js';
import { DEFAULT_MAX_HELLO_BYTES } from './client-hello.js';
import { gatewayMetrics, type GatewayErrorReason, type GatewayMetrics, type RouteCounts } from './metrics.js';
import { GatewayConnection, IDLE_SWEEPS, NOBODY, ZERO_TRACE, type ConnectionHost } from './gateway-connection.js';
import { chooseNativePump, pumpSetting, type NativePump, type PumpSetting } from './pump/index.js';
import { reusePortAvailable } from './reuse-port.js';
import { RouteTable, type GatewayRoutes } from './routes.js';

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
  /**
   * Who moves a routed connection's bytes: `on` the native byte pump (a start-up error where it does
   * not load), `auto` the pump where it loads, `off` the data path above. Unset: as ISTHMUS_PUMP says,
   * else DEFAULT_PUMP.
   */
  pump?: PumpSetting;
  /**
   * How long a routed connection's bytes stay on the data path before it goes to the byte pump
   * (default DEFAULT_PUMP_AFTER_MS); one that moves 64 KiB goes sooner. 0: at the upstream's first
   * bytes. A short connection (a request and its answer, then a close) costs less carried to its
   * end here than handed over: see docs/decisions.md ("The byte pump").
   */
  pumpAfterMs?: number;
  /** Where `pump` came from, named in its start-up error and log line (a flag, a config key; default `pump`). */
  pumpSetBy?: string;
  /**
   * Listen on a socket of this process's own with SO_REUSEPORT, which other processes may bind to the
   * same port, the kernel spreading new connections over them (where reusePortAvailable(): Node
   * 22.12+ on Linux; elsewhere a start-up error). In a cluster worker the listener is then the
   * worker's own, not the one the cluster shares between its workers.
   */
  reusePort?: boolean;
}

export const DEFAULT_PUMP_AFTER_MS = 100;

/** ISTHMUS_PUMP unset: see docs/decisions.md ("The byte pump") for why. */
export const DEFAULT_PUMP: PumpSetting = 'auto';

/**
 * Reads land in one buffer shared by every connection of the gateway, and what is read is copied out
 * before it is written on (it may wait in a write queue while the next read reuses the buffer). A
 * connection that keeps moving bytes (many reads, or a big one) gets buffers of its own, written on
 * without a copy: so a connection that stays idle after its handshake holds no read buffer at all.
 */
const READ_BUFFER = 64 * 1024;
/** The longest stop() waits for the connections it closed to be gone (and recorded). */
const DRAIN_MS = 5000;
/** Read buffers kept for reuse, gateway-wide (2 MiB). */
const MAX_SPARE_BUFFERS = 32;

export class Gateway implements Component, ConnectionHost {
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
  readonly pumpAfterMs: number;
  readonly maxHelloBytes: number;
  readonly idleTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly maxAttempts: number;
  readonly maxConnections: number;
  /** Names the gateway in flow records; settable until the first connection (a default ID may need the bound port). */
  id: string;
  private limitLoggedAt = 0;
  private closedCount = 0;
  private acceptedCount = 0;
  private idleSweep: NodeJS.Timeout | undefined;
  /** Connections holding read buffers of their own, and the sweep that takes back idle ones' (see bufferSweepMs). */
  private readonly buffered = new Set<GatewayConnection>();
  private bufferSweep: NodeJS.Timeout | undefined;
  /** False once this Node turned out not to let a socket's read buffer be swapped. */
  private canSwapBuffers = true;
  /** How connections are accepted and driven: chosen at start (see netio/). */
  dataPath!: DataPath;
  /** What moves the bytes of routed connections, when not the data path: chosen at start. */
  pump: NativePump | undefined;
  /** While stopping: called once the last connection is released. */
  private onDrained: (() => void) | undefined;

  constructor(private readonly opts: GatewayOptions) {
    this.id = opts.id;
    this.log = (opts.logger ?? silentLogger).child({ component: 'gateway' });
    this.routesTable = opts.routes instanceof RouteTable ? opts.routes : opts.routes ? new RouteTable(opts.routes) : RouteTable.empty(opts.dc);
    this.metrics = opts.registry ? gatewayMetrics(opts.registry) : undefined;
    this.unrouted = this.metrics?.route('', '');
    this.helloTimeoutMs = opts.helloTimeoutMs ?? 10_000;
    this.pumpAfterMs = opts.pumpAfterMs ?? DEFAULT_PUMP_AFTER_MS;
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

  /**
   * Connections this gateway took since the start: from its listener, or adopted from another
   * process (refused at the connection limit included; not those it passed on).
   */
  get accepted(): number {
    return this.acceptedCount;
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
    if (this.opts.reusePort && !reusePortAvailable())
      throw new IsthmusError(
        ErrorCodes.BAD_CONFIG,
        `reusePort needs server.listen({ reusePort }) (Node 22.12 or later, on Linux); this is Node ${process.versions.node} on ${process.platform}`,
      );
    // First: ISTHMUS_PUMP=on without the addon is a start-up error, before anything is bound.
    const setting = this.opts.pump ?? pumpSetting();
    const setBy = this.opts.pump === undefined ? 'ISTHMUS_PUMP' : (this.opts.pumpSetBy ?? 'pump');
    const pumpChoice = chooseNativePump(setting ?? DEFAULT_PUMP, undefined, setBy);
    if (setting === undefined && !pumpChoice.pump) pumpChoice.reason = `ISTHMUS_PUMP unset: ${DEFAULT_PUMP} by default`;
    const choice = await chooseDataPath({ fastPath: this.opts.fastPath });
    this.dataPath = choice.path;
    logDataPath(this.log, choice);
    this.pump = pumpChoice.pump;
    this.log.info('byte pump', {
      pump: this.pump ? 'native' : 'off',
      movesBytes: this.pump ? 'native pump' : `${choice.path.name} data path`,
      reason: pumpChoice.reason,
    });
    // Accepted connections are read into the gateway's own buffers.
    const passOn = choice.path.passesAccepted ? this.opts.passOn : undefined;
    const server = choice.path.createServer((handle) => {
      if (!passOn?.(handle, this.conns.size)) this.accept(handle);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // exclusive: a cluster worker binds a socket of its own rather than asking the primary for the shared one.
      const reuse = this.opts.reusePort ? { reusePort: true, exclusive: true } : {};
      server.listen({ host: this.opts.host, port: this.opts.port, backlog: 1024, ...reuse }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // Accept errors (EMFILE and the like) are logged; the listener stays up.
    server.on('error', (err) => this.log.error('listener error', { error: err }));
    this.server = server;
    // One timer for all connections rather than one per socket, re-armed on every read.
    this.idleSweep = setInterval(
      () => {
        for (const c of this.conns) c.sweepIdle();
        // The pump knows when each of its connections last moved a byte: one ask for all of them.
        this.pump?.closeIdle(this.idleTimeoutMs);
      },
      Math.max(1, Math.floor(this.idleTimeoutMs / IDLE_SWEEPS)),
    ).unref();
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
    this.pump?.stop();
    for (const c of [...this.conns]) c.abort();
    this.pump?.closeIdle(0);
    await closed;
    // Every connection was told to close; each is released once both its sides are gone (a pumped
    // one when the pump's report comes), its flow record and metrics written by then.
    if (this.conns.size > 0) {
      const drained = new Promise<void>((r) => (this.onDrained = r));
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<boolean>((r) => (timer = setTimeout(r, DRAIN_MS, true)));
      if (await Promise.race([drained.then(() => false), late]))
        this.log.warn('gateway stopped with connections still closing', { open: this.conns.size, waitedMs: DRAIN_MS });
      clearTimeout(timer);
      this.onDrained = undefined;
    }
  }

  /** A connection accepted by another process and passed to this gateway (see passOn). */
  adopt(handle: Accepted): void {
    if (!this.server || !this.dataPath.passesAccepted) return closeAccepted(handle);
    this.accept(handle);
  }

  private accept(handle: Accepted): void {
    this.acceptedCount++;
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
        traceId: ZERO_TRACE,
        hop: 'gateway-ingress',
        destination: NOBODY,
        sni: '',
        verdict: 'error',
        reason: `connection limit of ${this.maxConnections} reached`,
        startTime: Date.now(),
        durationMs: 0,
        bytesIn: 0,
        bytesOut: 0,
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
    if (this.conns.size === 0) this.onDrained?.();
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
      id: randomUUID(),
      requestIndex: 0,
      dc: this.opts.dc,
      reporter: this.id,
      source: NOBODY,
      intentionId: '',
      intentionDc: '',
      intentionIndex: 0,
      ...r,
    };
    if (this.channel.hasSubscribers) this.channel.publish(record);
    if (this.log.tracing)
      this.log.debug('connection', {
        traceId: record.traceId,
        hop: record.hop,
        sni: record.sni,
        verdict: record.verdict,
        reason: record.reason,
        bytesIn: record.bytesIn,
        bytesOut: record.bytesOut,
        durationMs: record.durationMs,
      });
    if (!this.opts.onFlow) return;
    try {
      this.opts.onFlow(record);
    } catch (err) {
      this.log.warn('flow record listener failed', { error: err });
    }
  }
}
