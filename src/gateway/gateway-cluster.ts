// The mesh gateway on several cores: N worker processes (node:cluster), each a Gateway on the same
// port. Where Node offers reusePort (reuse-port.ts) each worker listens on a SO_REUSEPORT socket of
// its own and the kernel spreads new connections over them; elsewhere they all accept from the one
// listener the cluster shares, and balance the connections they got by passing new ones on. This
// process keeps what is shared: it pushes routes to the workers, passes their flow records to
// onFlow, gathers their metrics and counts, restarts a worker that dies, and on the shared listener
// tells the workers each other's loads and carries a connection one of them passes to another
// (balance.ts). A worker that falls silent is stuck: on the shared listener it is passed nothing; on
// listeners of their own, where the kernel would keep giving it its share, it is killed and replaced.
import cluster, { type Worker } from 'node:cluster';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { AggregatorRegistry } from 'prom-client';
import { ErrorCodes, IsthmusError } from '../core/errors.js';
import type { Component } from '../core/lifecycle.js';
import type { FlowRecord } from '../dataflow/index.js';
import { closeAccepted, type Accepted } from '../netio/index.js';
import { silentLogger, type Logger, type LogLevel } from '../telemetry/index.js';
import type { GatewayOptions } from './gateway.js';
import { reusePortAvailable } from './reuse-port.js';
import type { GatewayRoutes } from './routes.js';

export interface GatewayClusterOptions extends Omit<GatewayOptions, 'routes' | 'registry' | 'logger' | 'passOn' | 'reusePort'> {
  /** Worker processes (at least 2; one core needs no cluster). */
  workers: number;
  /**
   * Each worker on a SO_REUSEPORT listener of its own, the kernel spreading new connections (true),
   * or all on the cluster's shared listener, balancing by passing connections on (false). Default:
   * true where reusePortAvailable() (Node 22.12+ on Linux); true elsewhere is an error.
   */
  reusePort?: boolean;
  routes?: GatewayRoutes;
  logger?: Logger;
  /** The workers' log level (their lines go to this process's stderr). */
  logLevel?: LogLevel;
}

/** What a worker is started with (in ISTHMUS_GATEWAY_WORKER, as JSON): the gateway's own settings. */
export type GatewayWorkerConfig = Pick<
  GatewayOptions,
  | 'id'
  | 'dc'
  | 'host'
  | 'port'
  | 'helloTimeoutMs'
  | 'maxHelloBytes'
  | 'idleTimeoutMs'
  | 'connectTimeoutMs'
  | 'maxAttempts'
  | 'maxConnections'
  | 'bufferSweepMs'
  | 'fastPath'
  | 'pump'
  | 'pumpAfterMs'
  | 'pumpSetBy'
  | 'reusePort'
> & {
  routes?: GatewayRoutes;
  logLevel?: LogLevel;
  /** Send flow records to the primary (only when someone there wants them). */
  flows: boolean;
};

export type GatewayWorkerMessage =
  | { type: 'isthmus:gateway:listening'; port: number }
  | { type: 'isthmus:gateway:failed'; code?: string; message: string }
  | { type: 'isthmus:gateway:flow'; record: FlowRecord }
  /** Connections open now, and taken since the start (Gateway.accepted). */
  | { type: 'isthmus:gateway:connections'; count: number; accepted: number }
  /** With the connection's handle: for worker `to` (a process ID), from one holding `open`. */
  | { type: 'isthmus:gateway:pass'; to: number; open: number };

export type GatewayPrimaryMessage =
  | { type: 'isthmus:gateway:routes'; routes: GatewayRoutes }
  | { type: 'isthmus:gateway:id'; id: string }
  | { type: 'isthmus:gateway:stop' }
  /** Every worker's open connections: [process ID, count]. */
  | { type: 'isthmus:gateway:loads'; loads: [number, number][] }
  /** With a connection's handle, passed on by worker `from` holding `open`: this one takes it. */
  | { type: 'isthmus:gateway:adopt'; from: number; open: number };

/**
 * V8's young generation for a worker, per semi-space, unless set on the command line or in
 * NODE_OPTIONS. A gateway's garbage is small and short-lived; at the default (16 MiB) the burst of
 * setting up thousands of connections grows the young generation to ~48 MiB that it keeps while they
 * idle: 8.6 MB per 1,000 idle connections over two workers, 7.0 MB with 4 MiB, at the same speed.
 */
const WORKER_SEMI_SPACE = '--max-semi-space-size=4';
/** A worker that has not reported for this long is taken for stuck (it reports at least every second). */
const STUCK_AFTER_MS = 3000;

/**
 * The worker's entry file, beside this one: the build's .js, or when running from source (tests,
 * benchmarks) the .ts, loaded through tsx as this process is.
 */
function workerEntry(): { exec: string; execArgv: string[] } {
  const here = fileURLToPath(import.meta.url);
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(' ')].some((a) => a.startsWith('--max-semi-space-size'));
  const execArgv = given ? process.execArgv : [...process.execArgv, WORKER_SEMI_SPACE];
  const ts = here.replace(/gateway-cluster\.ts$/, 'gateway-worker.ts');
  if (here.endsWith('.ts') && existsSync(ts)) {
    const loaded = process.execArgv.some((a) => a.includes('tsx'));
    return { exec: ts, execArgv: loaded ? execArgv : [...execArgv, '--import', 'tsx'] };
  }
  return { exec: here.replace(/gateway-cluster\.js$/, 'gateway-worker.js'), execArgv };
}

/**
 * Binds `host:port` with a plain socket and closes it again: the port it got (port 0 resolved), or
 * the bind error. A plain socket cannot bind where anything listens, a SO_REUSEPORT socket included,
 * which the workers' own sockets would otherwise join without a word (two gateways on one port
 * sharing its connections).
 */
async function probePort(host: string, port: number): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => resolve());
  });
  const bound = (server.address() as net.AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return bound;
}

export class GatewayCluster implements Component {
  readonly name = 'gateway';
  private readonly workers = new Set<Worker>();
  /**
   * Each worker's last report: its open connections, those it took since it started, and when (it
   * reports at least every second; one silent for longer than STUCK_AFTER_MS is stuck).
   */
  private readonly reports = new Map<Worker, { open: number; accepted: number; at: number }>();
  /** The workers named in the last loads broadcast, and the check that drops stuck ones from it. */
  private broadcastKey = '';
  private staleCheck: NodeJS.Timeout | undefined;
  /** Workers killed for being stuck, so that each is warned of and killed once. */
  private readonly killed = new WeakSet<Worker>();
  private routesNow: GatewayRoutes | undefined;
  private boundPort = 0;
  private stopping = false;
  private readonly log: Logger;
  private readonly aggregator = new AggregatorRegistry();
  private idNow: string;
  /** Each worker on a listener of its own (SO_REUSEPORT), rather than the shared one. */
  readonly reusePort: boolean;

  constructor(private readonly opts: GatewayClusterOptions) {
    if (!cluster.isPrimary) throw new Error('GatewayCluster runs in the primary process');
    if (!Number.isInteger(opts.workers) || opts.workers < 2) throw new Error(`workers must be an integer of at least 2, got ${opts.workers}`);
    if (opts.reusePort && !reusePortAvailable())
      throw new IsthmusError(
        ErrorCodes.BAD_CONFIG,
        `reusePort needs server.listen({ reusePort }) (Node 22.12 or later, on Linux); this is Node ${process.versions.node} on ${process.platform}`,
      );
    this.reusePort = opts.reusePort ?? reusePortAvailable();
    this.idNow = opts.id;
    this.routesNow = opts.routes;
    this.log = (opts.logger ?? silentLogger).child({ component: 'gateway' });
  }

  /** Names the gateway in flow records (the workers' too); settable until the first connection. */
  get id(): string {
    return this.idNow;
  }

  set id(id: string) {
    this.idNow = id;
    this.broadcast({ type: 'isthmus:gateway:id', id });
  }

  get port(): number {
    return this.boundPort;
  }

  get address(): string {
    const host = this.opts.host.includes(':') ? `[${this.opts.host}]` : this.opts.host;
    return `${host}:${this.port}`;
  }

  /** Connections open now, as last reported by the workers. */
  get connections(): number {
    let n = 0;
    for (const r of this.reports.values()) n += r.open;
    return n;
  }

  update(routes: GatewayRoutes): void {
    this.routesNow = routes;
    this.broadcast({ type: 'isthmus:gateway:routes', routes });
  }

  /**
   * Each worker's open connections and those it took since it started (accepted and kept, or passed
   * to it by another; the sum is the cluster's), as last reported (every 100 ms while they change).
   */
  get workerConnections(): { pid: number; connections: number; accepted: number }[] {
    return [...this.reports].map(([w, r]) => ({ pid: w.process.pid!, connections: r.open, accepted: r.accepted }));
  }

  /** Every worker's metrics, summed (Prometheus text). */
  metrics(): Promise<string> {
    return this.aggregator.clusterMetrics();
  }

  async start(): Promise<void> {
    // Workers accept from the shared socket themselves: handing each connection over from this
    // process (SCHED_RR) costs a message with a descriptor per connection.
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    cluster.setupPrimary({ ...workerEntry(), silent: false });
    try {
      if (this.reusePort) {
        // The port free and known first (port 0: any free one); the first worker binds it, the
        // others bind to the port it got.
        this.boundPort = await this.fork(await probePort(this.opts.host, this.opts.port));
        await Promise.all(Array.from({ length: this.opts.workers - 1 }, () => this.fork(this.boundPort)));
      } else {
        // All listen on the configured address, port 0 included: the cluster binds it once for all.
        const ports = await Promise.all(Array.from({ length: this.opts.workers }, () => this.fork(this.opts.port)));
        this.boundPort = ports[0];
      }
    } catch (err) {
      await this.stop();
      throw err;
    }
    this.log.info('gateway listening', { address: this.address, workers: this.opts.workers, reusePort: this.reusePort });
    this.staleCheck = setInterval(() => {
      // With a listener each, the kernel spreads connections and no worker passes any on: a stuck
      // one would keep its share of new connections, waiting unaccepted, until it is gone.
      if (this.reusePort) return this.killStuck();
      if (
        this.freshWorkers()
          .map((w) => w.process.pid)
          .join() !== this.broadcastKey
      )
        this.broadcastLoads();
    }, 1000).unref();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.staleCheck);
    await Promise.all(
      [...this.workers].map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.isDead()) return resolve();
            w.once('exit', () => resolve());
            w.send({ type: 'isthmus:gateway:stop' } satisfies GatewayPrimaryMessage);
            // A worker that does not finish in time is killed.
            setTimeout(() => w.process.kill('SIGKILL'), 5000).unref();
          }),
      ),
    );
  }

  /** A worker listening on `port`, and the port it is bound to once it is (port 0 resolved). */
  private fork(port: number): Promise<number> {
    const config: GatewayWorkerConfig = {
      id: this.idNow,
      dc: this.opts.dc,
      host: this.opts.host,
      port,
      routes: this.routesNow,
      helloTimeoutMs: this.opts.helloTimeoutMs,
      maxHelloBytes: this.opts.maxHelloBytes,
      idleTimeoutMs: this.opts.idleTimeoutMs,
      connectTimeoutMs: this.opts.connectTimeoutMs,
      maxAttempts: this.opts.maxAttempts,
      bufferSweepMs: this.opts.bufferSweepMs,
      fastPath: this.opts.fastPath,
      pump: this.opts.pump,
      pumpAfterMs: this.opts.pumpAfterMs,
      pumpSetBy: this.opts.pumpSetBy,
      reusePort: this.reusePort,
      // The limit is the gateway's: each worker takes its share.
      maxConnections: this.opts.maxConnections === undefined ? undefined : Math.ceil(this.opts.maxConnections / this.opts.workers),
      logLevel: this.opts.logLevel,
      flows: this.opts.onFlow !== undefined,
    };
    const w = cluster.fork({ ISTHMUS_GATEWAY_WORKER: JSON.stringify(config) });
    this.workers.add(w);
    return new Promise<number>((resolve, reject) => {
      let listening = false;
      let failed: Error | undefined;
      w.on('message', (m: GatewayWorkerMessage, handle?: Accepted) => {
        if (m.type === 'isthmus:gateway:listening') {
          listening = true;
          // The others learn of it at once: it balances and is balanced on from its first accept.
          this.reports.set(w, { open: 0, accepted: 0, at: Date.now() });
          if (!this.reusePort) this.broadcastLoads();
          resolve(m.port);
        } else if (m.type === 'isthmus:gateway:failed') {
          // A typed error stays one (a setting refused in the worker is the same mistake here).
          const typed = Object.values(ErrorCodes).find((c) => c === m.code);
          failed = typed ? new IsthmusError(typed, m.message) : Object.assign(new Error(m.message), { code: m.code });
        } else if (m.type === 'isthmus:gateway:flow') {
          this.flow(m.record);
        } else if (m.type === 'isthmus:gateway:connections') {
          this.reports.set(w, { open: m.count, accepted: m.accepted, at: Date.now() });
          if (!this.reusePort) this.broadcastLoads();
        } else if (m.type === 'isthmus:gateway:pass' && handle) {
          this.pass(w, m, handle);
        }
      });
      w.once('exit', (code, signal) => {
        this.workers.delete(w);
        this.reports.delete(w);
        if (!listening) return reject(failed ?? new Error(`gateway worker exited before listening (${signal ?? code})`));
        if (this.stopping) return;
        // A second apart: a worker that dies at once does not spin.
        this.log.error('gateway worker died; starting another', { pid: w.process.pid, code, signal });
        setTimeout(() => {
          // The port bound at start: a new worker's own socket joins the others' on it.
          if (!this.stopping)
            this.fork(this.reusePort ? this.boundPort : this.opts.port).catch((err) => this.log.error('gateway worker did not start', { error: err }));
        }, 1000).unref();
      });
    });
  }

  /** Workers alive and reporting: the ones connections may be passed to. */
  private freshWorkers(): Worker[] {
    const now = Date.now();
    return [...this.workers].filter((w) => !w.isDead() && w.isConnected() && now - (this.reports.get(w)?.at ?? 0) < STUCK_AFTER_MS);
  }

  /**
   * Kills (SIGKILL: a stopped process runs no SIGTERM handler) each worker silent for longer than
   * STUCK_AFTER_MS; the exit handler starts another on the same port. The connections it held or had
   * queued on its socket go with it.
   */
  private killStuck(): void {
    const now = Date.now();
    for (const [w, r] of this.reports) {
      const silentMs = now - r.at;
      if (silentMs <= STUCK_AFTER_MS || this.killed.has(w) || w.isDead()) continue;
      this.killed.add(w);
      this.log.warn('gateway worker stuck; killing it', { pid: w.process.pid, silentMs });
      w.process.kill('SIGKILL');
    }
  }

  /**
   * A connection `from` passed on, to worker `m.to`: to another reporting one if that one is gone or
   * stuck, back to `from` if none is. This process's copy of the descriptor is closed once it is on
   * its way.
   */
  private pass(from: Worker, m: { to: number; open: number }, handle: Accepted): void {
    const fresh = this.freshWorkers();
    const target = fresh.find((w) => w.process.pid === m.to) ?? fresh.find((w) => w !== from) ?? (from.isConnected() ? from : undefined);
    if (!target) return closeAccepted(handle);
    const adopt: GatewayPrimaryMessage = { type: 'isthmus:gateway:adopt', from: from.process.pid!, open: m.open };
    target.send(adopt, handle as never, undefined, () => closeAccepted(handle));
  }

  private flow(record: FlowRecord): void {
    if (!this.opts.onFlow) return;
    try {
      this.opts.onFlow(record);
    } catch (err) {
      this.log.warn('flow record listener failed', { error: err });
    }
  }

  /** Every reporting worker's load, to all: a stuck one is left out, so no connection is passed to it. */
  private broadcastLoads(): void {
    const fresh = this.freshWorkers();
    this.broadcastKey = fresh.map((w) => w.process.pid).join();
    this.broadcast({ type: 'isthmus:gateway:loads', loads: fresh.map((w) => [w.process.pid!, this.reports.get(w)?.open ?? 0]) });
  }

  private broadcast(m: GatewayPrimaryMessage): void {
    for (const w of this.workers) if (!w.isDead()) w.send(m);
  }
}
