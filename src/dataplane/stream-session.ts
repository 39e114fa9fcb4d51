// One data-plane stream's life on the server, the same for sidecars and gateways: a hello first
// (within 10 s, once), refusals as a final error message, the proxy's whole configuration pushed
// again (debounced, deduplicated, versioned) whenever something it depends on changes, and the
// flow records it reports checked and stored.
import * as grpc from '@grpc/grpc-js';
import { ErrorCodes, isIsthmusError, type ErrorCode } from '../core/errors.js';
import { grpcStatusOf, MalformedMessage } from '../core/proto.js';
import type { FlowRecord, FlowStore } from '../dataflow/index.js';
import type { Logger } from '../telemetry/index.js';
import { fromWire, MAX_FLOW_BATCH, type WireFlow } from '../dataplane-client/index.js';

export interface SessionMessage<H> {
  hello?: H;
  flows?: { records: WireFlow[] };
}

export interface SessionConfig {
  version: number;
  error: string;
  errorCode: string;
}

/** Calls its listener on every change of something; returns the unsubscribe. */
export type ChangeSource = (listener: () => void) => () => void;

export interface SessionDeps {
  flows: FlowStore;
  log: Logger;
  /** Change sources every session follows besides its spec's (the federation view): each returns its unsubscribe. */
  sources: ChangeSource[];
  /** Counts a reported record refused as malformed. */
  rejected: () => void;
  helloTimeoutMs?: number;
}

/** What differs between a sidecar's stream and a gateway's. */
export interface SessionSpec<H, T, C extends SessionConfig> {
  /** "sidecar" or "gateway", in log lines. */
  kind: string;
  /** The domains' change callbacks (catalog, intentions, CA) whose changes may change the configuration. */
  sources: ChangeSource[];
  /** Who the hello says the proxy is, or an IsthmusError saying why not. */
  resolve(hello: H): T;
  /** The whole configuration, from the current state (version filled in by the session). */
  build(target: T): Promise<C>;
  /** Log fields naming the target. */
  describe(target: T): Record<string, unknown>;
  /** After a good hello: start what the session needs; returns what to undo when it ends. */
  opened?(target: T, session: Session): (() => Promise<void> | void) | void;
}

export interface Session {
  /** Push again soon (changes come in bursts: one push per burst). */
  schedule(): void;
  readonly closed: boolean;
}

export class StreamSession<H, T, C extends SessionConfig> implements Session {
  private target: T | undefined;
  private version = 0;
  private lastSent = '';
  private pending: NodeJS.Timeout | undefined;
  private readonly helloTimer: NodeJS.Timeout;
  private readonly undo: (() => Promise<void> | void)[] = [];
  private ended: Promise<void> | undefined;
  /** Messages received so far (refusals name the one at fault). */
  private received = 0;
  closed = false;

  constructor(
    private readonly call: grpc.ServerDuplexStream<SessionMessage<H>, C>,
    private readonly deps: SessionDeps,
    private readonly spec: SessionSpec<H, T, C>,
    private readonly onEnd: (s: StreamSession<H, T, C>) => void,
  ) {
    this.helloTimer = setTimeout(
      () => this.refuse(ErrorCodes.INVALID, `the first message of a stream must be hello (within ${(deps.helloTimeoutMs ?? 10_000) / 1000} s)`),
      deps.helloTimeoutMs ?? 10_000,
    );
    call.on('data', (msg: SessionMessage<H> | MalformedMessage) => this.onMessage(msg));
    call.on('error', () => void this.close());
    call.on('end', () => {
      void this.close();
      call.end();
    });
    call.on('cancelled', () => void this.close());
  }

  /** Ends the session (stream gone, server stopping); resolves once its undo steps ran. */
  close(): Promise<void> {
    if (this.ended) return this.ended;
    this.closed = true;
    clearTimeout(this.helloTimer);
    clearTimeout(this.pending);
    this.ended = (async () => {
      for (const u of this.undo.reverse()) {
        try {
          await u();
        } catch (err) {
          this.deps.log.warn(`${this.spec.kind} stream cleanup failed`, { error: err });
        }
      }
      // Only now: a server stopping waits for sessions whose cleanup is still writing.
      this.onEnd(this);
    })();
    return this.ended;
  }

  /** Server stopping: end the stream from this side. */
  async shutdown(): Promise<void> {
    const done = this.close();
    try {
      this.call.end();
    } catch {
      // Already gone.
    }
    await done;
  }

  schedule(): void {
    if (this.pending || this.closed) return;
    this.pending = setTimeout(() => {
      this.pending = undefined;
      void this.push();
    }, 20);
  }

  /**
   * Ends the stream for good: a last message with the error (what proxies act on) and then a gRPC
   * status that says the same (what any other client sees), never a plain OK.
   */
  private refuse(code: ErrorCode, message: string): void {
    if (this.closed) return;
    this.deps.log.warn(`${this.spec.kind} stream refused`, { code, error: message });
    try {
      this.call.write({ version: 0, error: message, errorCode: code } as C);
      this.call.emit('error', grpcStatusOf(code, message));
    } catch {
      // The stream is gone already.
    }
    void this.close();
  }

  private async push(): Promise<void> {
    if (this.closed || this.target === undefined) return;
    try {
      const cfg = await this.spec.build(this.target);
      if (this.closed) return;
      const body = JSON.stringify(cfg);
      if (body === this.lastSent) return;
      this.lastSent = body;
      this.call.write({ ...cfg, version: ++this.version });
    } catch (err) {
      this.deps.log.warn(`cannot build ${this.spec.kind} configuration; will retry on the next change`, { ...this.spec.describe(this.target), error: err });
    }
  }

  private onMessage(msg: SessionMessage<H> | MalformedMessage): void {
    if (this.closed) return;
    this.received++;
    if (msg instanceof MalformedMessage) {
      return this.refuse(
        ErrorCodes.INVALID,
        `message ${this.received} is not a valid ${this.spec.kind === 'gateway' ? 'GatewayMessage' : 'SidecarMessage'}: ${msg.reason}`,
      );
    }
    if (msg.hello) {
      if (this.target !== undefined) return this.refuse(ErrorCodes.INVALID, 'hello was sent twice');
      clearTimeout(this.helloTimer);
      let target: T;
      try {
        target = this.spec.resolve(msg.hello);
      } catch (err) {
        if (isIsthmusError(err)) return this.refuse(err.code, err.message);
        this.deps.log.error(`cannot resolve a ${this.spec.kind} hello`, { error: err });
        return this.refuse(ErrorCodes.INTERNAL, 'internal error');
      }
      this.target = target;
      this.deps.log.info(`${this.spec.kind} connected`, this.spec.describe(target));
      for (const source of [...this.spec.sources, ...this.deps.sources]) this.undo.push(source(() => this.schedule()));
      const undo = this.spec.opened?.(target, this);
      if (undo) this.undo.push(undo);
      void this.push();
      return;
    }
    if (this.target === undefined) return this.refuse(ErrorCodes.INVALID, 'the first message of a stream must be hello');
    if (msg.flows) {
      const records = msg.flows.records ?? [];
      if (records.length > MAX_FLOW_BATCH)
        return this.refuse(
          ErrorCodes.PAYLOAD_TOO_LARGE,
          `a flow batch holds at most ${MAX_FLOW_BATCH} records, message ${this.received} has ${records.length}`,
        );
      this.storeFlows(records);
    }
  }

  /** Stores the good records of a batch; a malformed one is refused alone (counted, and named in one log line per batch). */
  private storeFlows(records: WireFlow[]): void {
    const good: FlowRecord[] = [];
    let refused = 0;
    let first = '';
    for (const [i, rec] of records.entries()) {
      try {
        good.push(fromWire(rec, `records[${i}]`));
      } catch (err) {
        this.deps.rejected();
        if (refused++ === 0) first = (err as Error).message;
      }
    }
    if (refused) this.deps.log.warn('flow records refused', { ...this.spec.describe(this.target!), refused, of: records.length, error: first });
    if (good.length) this.deps.flows.append(good);
  }
}
