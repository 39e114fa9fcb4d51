// The proxy's end of a data-plane stream (sidecar or gateway): one stream to the local server,
// configuration pushes in, flow records out in batches; reconnects with backoff, keeps the last
// configuration while the server is away, and resends nothing twice.
import * as grpc from '@grpc/grpc-js';
import { Backoff } from '../core/backoff.js';
import { ErrorCodes, IsthmusError, type ErrorCode } from '../core/errors.js';
import type { FlowRecord } from '../dataflow/index.js';
import type { Logger } from '../telemetry/index.js';
import { toWire } from './flow-wire.js';
import { dataPlaneService, MAX_FLOW_BATCH } from './proto.js';

export interface ChannelOptions<C> {
  /** host:port of the server's gRPC listener. */
  serverAddr: string;
  /** The DataPlane RPC: "stream" (sidecars) or "gateway". */
  method: 'stream' | 'gateway';
  /** The hello message, sent first on every (re)connect. */
  hello: () => Record<string, unknown>;
  /** "sidecar" or "gateway", in log lines. */
  kind: string;
  log: Logger;
  onConfig: (config: C) => void;
  /** A refusal the server says is final (unknown service, permission denied). */
  onFatal?: (code: string, message: string) => void;
  /** Flush flows at least this often (ms). */
  flushMs?: number;
  /** Records kept while disconnected; beyond it the oldest are dropped (and counted). */
  maxBuffered?: number;
}

const KNOWN_CODES = new Set<string>(Object.values(ErrorCodes));

/** A refusal the server said is final, as the typed error it named (an unknown code is an internal one). */
export function refusal(code: string, message: string): IsthmusError {
  return new IsthmusError(KNOWN_CODES.has(code) ? (code as ErrorCode) : ErrorCodes.INTERNAL, message);
}

interface Pushed {
  version: number;
  error: string;
  errorCode: string;
}

export class ChannelClient<C extends Pushed> {
  private client: grpc.Client | undefined;
  private call: grpc.ClientDuplexStream<unknown, C> | undefined;
  private buffer: FlowRecord[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly backoff = new Backoff({ initialMs: 200, maxMs: 5000 });
  dropped = 0;
  connected = false;

  constructor(private readonly channel: ChannelOptions<C>) {}

  start(): void {
    const Service = dataPlaneService();
    this.client = new Service(this.channel.serverAddr, grpc.credentials.createInsecure(), {
      'grpc.keepalive_time_ms': 30_000,
      'grpc.max_receive_message_length': 16 << 20,
    });
    this.open();
    this.flushTimer = setInterval(() => this.flush(), this.channel.flushMs ?? 250);
    this.flushTimer.unref();
  }

  report(record: FlowRecord): void {
    this.buffer.push(record);
    const max = this.channel.maxBuffered ?? 10_000;
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
    // The server takes at most MAX_FLOW_BATCH records per message; a backlog goes in several.
    for (let i = 0; i < batch.length; i += MAX_FLOW_BATCH) this.call.write({ flows: { records: batch.slice(i, i + MAX_FLOW_BATCH).map(toWire) } });
  }

  stop(): void {
    this.stopped = true;
    this.flush();
    if (this.flushTimer) clearInterval(this.flushTimer);
    clearTimeout(this.retryTimer);
    this.call?.end();
    this.call?.cancel();
    this.client?.close();
  }

  private open(): void {
    if (this.stopped || !this.client) return;
    const method = (this.client as unknown as Record<string, () => grpc.ClientDuplexStream<unknown, C>>)[this.channel.method];
    const call = method.call(this.client);
    this.call = call;
    call.write({ hello: this.channel.hello() });
    call.on('data', (cfg: C) => {
      if (cfg.error) {
        this.channel.log.error(`server refused the ${this.channel.kind}`, { code: cfg.errorCode, error: cfg.error });
        this.stopped = true;
        this.channel.onFatal?.(cfg.errorCode, cfg.error);
        call.cancel();
        return;
      }
      if (!this.connected) this.channel.log.info('connected to server', { server: this.channel.serverAddr });
      this.connected = true;
      this.backoff.reset();
      this.channel.onConfig(cfg);
      call.write({ ack: { version: cfg.version } });
      this.flush();
    });
    const retry = (why: string) => {
      if (this.call !== call) return;
      this.connected = false;
      this.call = undefined;
      if (this.stopped) return;
      const wait = this.backoff.next();
      this.channel.log.warn('stream to server lost; keeping the last configuration and retrying', { reason: why, retryInMs: wait });
      this.retryTimer = setTimeout(() => this.open(), wait);
      this.retryTimer.unref();
    };
    call.on('error', (err: grpc.ServiceError) => retry(err.details || err.message));
    call.on('end', () => retry('stream ended'));
  }
}
