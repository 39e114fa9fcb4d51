// The sidecar's end of the data-plane channel: one stream to the local server, config pushes in,
// flow records out in batches; reconnects with backoff and resends nothing twice.
import * as grpc from '@grpc/grpc-js';
import { Backoff } from '../core/backoff.js';
import type { FlowRecord } from '../dataflow/index.js';
import { silentLogger, type Logger } from '../telemetry/index.js';
import { toWire } from './flow-wire.js';
import { dataPlaneService, type SidecarConfigMessage, type SidecarMessage } from './proto.js';

export interface DataPlaneClientOptions {
  /** host:port of the server's gRPC listener. */
  serverAddr: string;
  serviceId?: string;
  service?: string;
  namespace?: string;
  token?: string;
  version?: string;
  logger?: Logger;
  onConfig: (config: SidecarConfigMessage) => void;
  /** A refusal the server says is final (unknown service, permission denied). */
  onFatal?: (code: string, message: string) => void;
  /** Flush flows at least this often (ms). */
  flushMs?: number;
  /** Records kept while disconnected; beyond it the oldest are dropped (and counted). */
  maxBuffered?: number;
}

export class DataPlaneClient {
  private client: grpc.Client | undefined;
  private call: grpc.ClientDuplexStream<SidecarMessage, SidecarConfigMessage> | undefined;
  private buffer: FlowRecord[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly backoff = new Backoff({ initialMs: 200, maxMs: 5000 });
  private readonly log: Logger;
  dropped = 0;
  connected = false;

  constructor(private readonly opts: DataPlaneClientOptions) {
    this.log = (opts.logger ?? silentLogger).child({ component: 'dataplane' });
  }

  start(): void {
    const Service = dataPlaneService();
    this.client = new Service(this.opts.serverAddr, grpc.credentials.createInsecure(), {
      'grpc.keepalive_time_ms': 30_000,
      'grpc.max_receive_message_length': 16 << 20,
    });
    this.open();
    this.flushTimer = setInterval(() => this.flush(), this.opts.flushMs ?? 250);
    this.flushTimer.unref();
  }

  report(record: FlowRecord): void {
    this.buffer.push(record);
    const max = this.opts.maxBuffered ?? 10_000;
    if (this.buffer.length > max) {
      this.dropped += this.buffer.length - max;
      this.buffer.splice(0, this.buffer.length - max);
    }
    if (this.buffer.length >= 200) this.flush();
  }

  flush(): void {
    if (!this.call || !this.connected || this.buffer.length === 0) return;
    const batch = this.buffer;
    this.buffer = [];
    this.call.write({ flows: { records: batch.map(toWire) } });
  }

  stop(): void {
    this.stopped = true;
    this.flush();
    if (this.flushTimer) clearInterval(this.flushTimer);
    this.call?.end();
    this.call?.cancel();
    this.client?.close();
  }

  private open(): void {
    if (this.stopped || !this.client) return;
    const call = (this.client as unknown as { stream(): grpc.ClientDuplexStream<SidecarMessage, SidecarConfigMessage> }).stream();
    this.call = call;
    call.write({
      hello: {
        serviceId: this.opts.serviceId ?? '',
        service: this.opts.service ?? '',
        namespace: this.opts.namespace ?? 'default',
        token: this.opts.token ?? '',
        version: this.opts.version ?? '',
      },
    });
    call.on('data', (cfg: SidecarConfigMessage) => {
      if (cfg.error) {
        this.log.error('server refused the sidecar', { code: cfg.errorCode, error: cfg.error });
        this.stopped = true;
        this.opts.onFatal?.(cfg.errorCode, cfg.error);
        call.cancel();
        return;
      }
      if (!this.connected) this.log.info('connected to server', { server: this.opts.serverAddr });
      this.connected = true;
      this.backoff.reset();
      this.opts.onConfig(cfg);
      call.write({ ack: { version: cfg.version } });
      this.flush();
    });
    const retry = (why: string) => {
      if (this.call !== call) return;
      this.connected = false;
      this.call = undefined;
      if (this.stopped) return;
      const wait = this.backoff.next();
      this.log.warn('stream to server lost; keeping the last configuration and retrying', { reason: why, retryInMs: wait });
      setTimeout(() => this.open(), wait).unref();
    };
    call.on('error', (err: grpc.ServiceError) => retry(err.details || err.message));
    call.on('end', () => retry('stream ended'));
  }
}
