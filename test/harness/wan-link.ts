// A TCP proxy that stands in for the wide-area link between two datacenters on loopback: it adds
// latency, jitter and a bandwidth cap, and partitions fast (cut) or slowly (blackhole).
import net from 'node:net';

export interface WanLinkOptions {
  /** Where the link listens; port 0 (the default) picks a free port. */
  listen: { host: string; port?: number };
  /** Where every accepted connection is forwarded. */
  target: { host: string; port: number };
  /**
   * Bytes one direction of one connection may hold in its delay queue before the link stops reading
   * from the sender. Like a TCP window it caps throughput at queueBytes / latency. Default 1 MiB.
   */
  queueBytes?: number;
}

export interface WanLinkStats {
  /** Connections let in (forwarded, or held silent by a blackhole). */
  accepted: number;
  /** Connections reset on arrival because the link was cut. */
  refused: number;
  /** Connections open right now. */
  active: number;
  /** Bytes delivered from clients to the target. */
  bytesToTarget: number;
  /** Bytes delivered from the target back to clients. */
  bytesToClient: number;
  /** Bytes read but not yet delivered, in both directions. */
  bytesQueued: number;
  /** Chunks held back by latency, jitter or the bandwidth cap before delivery. */
  chunksDelayed: number;
}

type Mode = 'forward' | 'cut' | 'blackhole';
type Direction = 'toTarget' | 'toClient';

interface Chunk {
  /** null stands for the sender's FIN, queued so it cannot overtake data. */
  data: Buffer | null;
  arrivedAt: number;
  /** Uniform in [-1, 1]; scaled by the jitter in force when the chunk is due, so changes apply at once. */
  spread: number;
  throttled: boolean;
}

const DEFAULT_QUEUE_BYTES = 1024 * 1024;

/** Settings and counters shared by the link and every connection through it. */
class LinkState {
  mode: Mode = 'forward';
  latencyMs = 0;
  jitterMs = 0;
  bytesPerSecond: number | null = null;
  bytesQueued = 0;
  readonly counters = { accepted: 0, refused: 0, bytesToTarget: 0, bytesToClient: 0, chunksDelayed: 0 };
  readonly connections = new Set<Connection>();
  /** When each direction's bandwidth is next free, on the performance.now() clock. */
  private readonly freeAt: Record<Direction, number> = { toTarget: 0, toClient: 0 };

  constructor(
    readonly target: { host: string; port: number },
    readonly queueBytes: number,
  ) {}

  delayFor(chunk: Chunk): number {
    return Math.max(0, this.latencyMs + chunk.spread * this.jitterMs);
  }

  /** Earliest time `bytes` may leave in `dir`; when that is `now`, the bandwidth is taken. */
  claimBandwidth(dir: Direction, bytes: number, now: number): number {
    if (this.bytesPerSecond === null) return now;
    if (this.freeAt[dir] > now) return this.freeAt[dir];
    this.freeAt[dir] = now + (bytes * 1000) / this.bytesPerSecond;
    return now;
  }

  delivered(dir: Direction, chunk: Chunk, bytes: number): void {
    if (dir === 'toTarget') this.counters.bytesToTarget += bytes;
    else this.counters.bytesToClient += bytes;
    if (chunk.throttled || this.delayFor(chunk) > 0) this.counters.chunksDelayed++;
  }
}

export class WanLink {
  private readonly state: LinkState;
  private readonly listenAt: { host: string; port: number };
  private server: net.Server | null = null;

  constructor(options: WanLinkOptions) {
    const problems: string[] = [];
    if (typeof options?.listen?.host !== 'string') problems.push('listen.host must be a string');
    if (options?.listen?.port !== undefined && !isPort(options.listen.port, true)) problems.push('listen.port must be an integer from 0 to 65535');
    if (typeof options?.target?.host !== 'string') problems.push('target.host must be a string');
    if (!isPort(options?.target?.port, false)) problems.push('target.port must be an integer from 1 to 65535');
    if (options?.queueBytes !== undefined && !(Number.isInteger(options.queueBytes) && options.queueBytes > 0))
      problems.push('queueBytes must be a positive integer');
    if (problems.length > 0) throw new TypeError(`invalid WanLink options: ${problems.join('; ')}`);
    this.listenAt = { host: options.listen.host, port: options.listen.port ?? 0 };
    this.state = new LinkState({ host: options.target.host, port: options.target.port }, options.queueBytes ?? DEFAULT_QUEUE_BYTES);
  }

  async start(): Promise<void> {
    if (this.server) throw new Error('WanLink already started');
    // pauseOnConnect: nothing is read from a client before the link knows what to do with it.
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => this.accept(socket));
    this.server = server;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.listenAt.port, this.listenAt.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      this.server = null;
      throw err;
    }
  }

  /** Resets every open connection and closes the listener; resolves once the port is released. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    for (const c of [...this.state.connections]) c.reset();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** host:port the link listens on (an IPv6 host in brackets). */
  get address(): string {
    const { address, port } = this.listening();
    return `${address.includes(':') ? `[${address}]` : address}:${port}`;
  }

  get port(): number {
    return this.listening().port;
  }

  /**
   * One-way delay added to every chunk in both directions: latencyMs ± jitterMs (uniform, never below
   * zero), as netem reads `delay 100ms 10ms`. Order is kept: a chunk never leaves before the one ahead
   * of it, so jitter can stretch a delay but never reorder bytes. Applies to chunks already queued too.
   */
  setLatency(latencyMs: number, jitterMs = 0): void {
    if (!(Number.isFinite(latencyMs) && latencyMs >= 0)) throw new RangeError('latencyMs must be a finite number >= 0');
    if (!(Number.isFinite(jitterMs) && jitterMs >= 0)) throw new RangeError('jitterMs must be a finite number >= 0');
    this.state.latencyMs = latencyMs;
    this.state.jitterMs = jitterMs;
    this.pumpAll();
  }

  /**
   * Caps each direction at bytesPerSecond, shared by every connection through the link as one WAN pipe
   * would be; null lifts the cap. Chunks leave whole, so delivery comes in bursts of one read (≤ 64 KiB).
   */
  setBandwidth(bytesPerSecond: number | null): void {
    if (bytesPerSecond !== null && !(Number.isFinite(bytesPerSecond) && bytesPerSecond > 0))
      throw new RangeError('bytesPerSecond must be a finite number > 0, or null');
    this.state.bytesPerSecond = bytesPerSecond;
    this.pumpAll();
  }

  /** A partition that fails fast: resets every open connection (both sides) and resets new ones on arrival. */
  cut(): void {
    this.state.mode = 'cut';
    for (const c of [...this.state.connections]) c.reset();
  }

  /**
   * A partition that fails slowly. Open connections stop in both directions; new ones are accepted (a
   * userspace proxy cannot withhold the handshake) but never reach the target. Nothing is sent back, so
   * peers see silence until their own timeouts; the link stops reading, so senders' buffers fill up as
   * they would without acknowledgements.
   */
  blackhole(): void {
    this.state.mode = 'blackhole';
    for (const c of this.state.connections) c.hold();
  }

  /** Back to forwarding. Connections that lived through a blackhole are reset now; new ones forward. */
  heal(): void {
    this.state.mode = 'forward';
    for (const c of [...this.state.connections]) if (c.held) c.reset();
  }

  stats(): WanLinkStats {
    return { ...this.state.counters, active: this.state.connections.size, bytesQueued: this.state.bytesQueued };
  }

  private accept(client: net.Socket): void {
    client.on('error', () => {});
    if (this.state.mode === 'cut' || !this.server) {
      this.state.counters.refused++;
      resetSocket(client);
      return;
    }
    this.state.counters.accepted++;
    const c = new Connection(this.state, client);
    this.state.connections.add(c);
    if (this.state.mode === 'blackhole') c.hold();
    else c.open();
  }

  private pumpAll(): void {
    for (const c of this.state.connections) c.pump();
  }

  private listening(): net.AddressInfo {
    const addr = this.server?.address();
    if (!addr || typeof addr === 'string') throw new Error('WanLink is not listening; call start() first');
    return addr;
  }
}

/** One client connection and its upstream, with a delay queue per direction. */
class Connection {
  held = false;
  private upstream: net.Socket | null = null;
  private done = false;
  private readonly pipes: Pipe[] = [];

  constructor(
    private readonly state: LinkState,
    private readonly client: net.Socket,
  ) {
    client.setNoDelay(true);
    // A clean 'close' only follows our own end() or destroy(); a peer's RST arrives as an error.
    client.on('error', () => this.reset());
  }

  open(): void {
    const { host, port } = this.state.target;
    const upstream = net.connect({ host, port, allowHalfOpen: true, noDelay: true });
    this.upstream = upstream;
    // A refused or failed upstream reaches the client as a reset.
    upstream.on('error', () => this.reset());
    const onFinished = () => this.closeIfFinished();
    this.pipes.push(new Pipe(this.state, 'toTarget', this.client, upstream, onFinished), new Pipe(this.state, 'toClient', upstream, this.client, onFinished));
    for (const p of this.pipes) p.flow();
  }

  /** Stops both directions without a word to either side. */
  hold(): void {
    this.held = true;
    this.client.pause();
    for (const p of this.pipes) p.stop();
  }

  pump(): void {
    for (const p of this.pipes) p.pump();
  }

  reset(): void {
    if (this.done) return;
    this.done = true;
    for (const p of this.pipes) p.dispose();
    resetSocket(this.client);
    if (this.upstream) resetSocket(this.upstream);
    this.state.connections.delete(this);
  }

  /** Both FINs delivered and flushed: close quietly rather than with a reset. */
  private closeIfFinished(): void {
    if (this.done || !this.pipes.every((p) => p.finished)) return;
    this.done = true;
    this.client.destroy();
    this.upstream?.destroy();
    this.state.connections.delete(this);
  }
}

/** One direction: reads from src into an ordered queue and writes each chunk to dst once it is due. */
class Pipe {
  finished = false;
  private readonly queue: Chunk[] = [];
  private queuedBytes = 0;
  private timer: NodeJS.Timeout | null = null;
  private disposed = false;

  constructor(
    private readonly state: LinkState,
    private readonly dir: Direction,
    private readonly src: net.Socket,
    private readonly dst: net.Socket,
    private readonly onFinished: () => void,
  ) {
    src.on('data', (data: Buffer) => this.enqueue(data));
    src.on('end', () => this.enqueue(null));
    dst.on('drain', () => this.pump());
  }

  /** Backpressure: read only while forwarding, with room in the queue and dst not asking to wait. */
  flow(): void {
    if (this.disposed) return;
    if (this.state.mode === 'forward' && this.queuedBytes < this.state.queueBytes && !this.dst.writableNeedDrain) this.src.resume();
    else this.src.pause();
  }

  stop(): void {
    this.clearTimer();
    this.src.pause();
  }

  pump(): void {
    this.clearTimer();
    if (this.disposed || this.state.mode !== 'forward') return;
    while (this.queue.length > 0 && !this.dst.writableNeedDrain) {
      const head = this.queue[0];
      const now = performance.now();
      let due = head.arrivedAt + this.state.delayFor(head);
      if (due <= now && head.data) {
        due = this.state.claimBandwidth(this.dir, head.data.length, now);
        if (due > now) head.throttled = true;
      }
      if (due > now) {
        this.timer = setTimeout(() => this.pump(), Math.max(1, Math.ceil(due - now)));
        break;
      }
      this.queue.shift();
      if (head.data === null) {
        this.dst.end(() => {
          this.finished = true;
          this.onFinished();
        });
        break;
      }
      this.take(head.data.length);
      this.state.delivered(this.dir, head, head.data.length);
      this.dst.write(head.data);
    }
    this.flow();
  }

  dispose(): void {
    this.disposed = true;
    this.clearTimer();
    this.take(this.queuedBytes);
    this.queue.length = 0;
  }

  private enqueue(data: Buffer | null): void {
    if (this.disposed) return;
    this.queue.push({ data, arrivedAt: performance.now(), spread: Math.random() * 2 - 1, throttled: false });
    if (data) {
      this.queuedBytes += data.length;
      this.state.bytesQueued += data.length;
    }
    // A chunk behind the head waits for the head's timer: nothing overtakes it.
    if (this.queue.length === 1) this.pump();
    else this.flow();
  }

  private take(bytes: number): void {
    this.queuedBytes -= bytes;
    this.state.bytesQueued -= bytes;
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

function isPort(value: unknown, allowZero: boolean): boolean {
  return typeof value === 'number' && Number.isInteger(value) && value >= (allowZero ? 0 : 1) && value <= 65535;
}

/** RST rather than FIN. A socket still connecting has nothing to reset and is dropped at once. */
function resetSocket(socket: net.Socket): void {
  if (socket.destroyed) return;
  if (socket.connecting) socket.destroy();
  else socket.resetAndDestroy();
}
