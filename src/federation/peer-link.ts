// One peer stream between this DC and another, whichever side dialed. Both sides say hello, send
// their exported catalog and heartbeats; the primary also sends the replicated tables from the
// index the other side last applied, and the other side acknowledges what it applied.
import * as grpc from '@grpc/grpc-js';
import { ErrorCodes, type ErrorCode } from '../core/errors.js';
import { isDatacenterRef } from '../core/names.js';
import { MalformedMessage } from '../core/proto.js';
import type { Logger } from '../telemetry/index.js';
import type { PeerMessage } from './proto.js';

type Duplex = grpc.ClientDuplexStream<PeerMessage, PeerMessage> | grpc.ServerDuplexStream<PeerMessage, PeerMessage>;

export interface PeerLinkHost {
  readonly dc: string;
  readonly primaryDc: string;
  readonly version: string;
  heartbeatMs: number;
  /** The primary index this DC has applied (sent in hello so the primary resumes from it). */
  appliedIndex(): number;
  /** Starts sending the replicated tables after `fromIndex`; returns the stop function. Primary only. */
  replicate(link: PeerLink, fromIndex: number): () => void;
  /** Starts sending this DC's export (full, then diffs); returns the stop function. */
  exportTo(link: PeerLink): () => void;
  applyChanges(link: PeerLink, msg: NonNullable<PeerMessage['changes']>): Promise<void>;
  applyExport(link: PeerLink, msg: NonNullable<PeerMessage['export']>): Promise<void>;
  acked(link: PeerLink, stream: string, index: number): void;
  storeIndex(): number;
  /** A heartbeat came in (peerIndex updated). */
  heard(link: PeerLink): void;
  closed(link: PeerLink, reason: string): void;
  log: Logger;
}

/** Bounds on one export message (a DC exports services, never instances). */
const MAX_EXPORT_SERVICES = 50_000;
const MAX_EXPORT_GATEWAYS = 64;

/** A refusal of what the peer sent: the status the accepting side ends the stream with. */
interface Refusal {
  status: grpc.status;
  code: ErrorCode;
}
const INVALID: Refusal = { status: grpc.status.INVALID_ARGUMENT, code: ErrorCodes.INVALID };

export class PeerLink {
  /** Set once the peer's hello arrived and checked out. */
  established = false;
  readonly openedAt = Date.now();
  lastMessageAt = Date.now();
  lastHeartbeatAt = 0;
  /** The peer's store index from its last heartbeat. */
  peerIndex = 0;
  private stops: (() => void)[] = [];
  private heartbeat: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private queue: Promise<void> = Promise.resolve();
  private done = false;

  constructor(
    private readonly host: PeerLinkHost,
    private readonly call: Duplex,
    /** The other DC, from its verified certificate (accepting side) or the dial target. */
    readonly peerDc: string,
    readonly direction: 'in' | 'out',
  ) {
    call.on('data', (m: PeerMessage | MalformedMessage) => this.onMessage(m));
    call.on('error', (err: Error) => this.close(`stream error: ${err.message}`));
    call.on('end', () => this.close('the peer ended the stream'));
    this.send({ hello: { datacenter: host.dc, resumeIndex: peerDc === host.primaryDc ? host.appliedIndex() : 0, version: host.version } });
    // A peer that says nothing for three heartbeats is gone, even if TCP has not noticed.
    this.watchdog = setInterval(() => {
      if (Date.now() - this.lastMessageAt > host.heartbeatMs * 3) this.close(`no heartbeat for ${Date.now() - this.lastMessageAt} ms`);
    }, host.heartbeatMs);
    this.watchdog.unref();
  }

  get open(): boolean {
    return !this.done;
  }

  send(m: PeerMessage): void {
    if (this.done) return;
    try {
      this.call.write(m);
    } catch (err) {
      this.close(`write failed: ${(err as Error).message}`);
    }
  }

  /** Ends the link; with `refusal`, the accepting side ends the stream with that status (the peer sent something wrong). */
  close(reason: string, refusal?: Refusal): void {
    if (this.done) return;
    this.done = true;
    clearInterval(this.heartbeat);
    clearInterval(this.watchdog);
    for (const s of this.stops) s();
    this.stops = [];
    try {
      if ('cancel' in this.call && typeof this.call.cancel === 'function' && this.direction === 'out') this.call.cancel();
      else if (refusal) this.call.emit('error', { code: refusal.status, details: `${refusal.code}: ${reason}` });
      else this.call.end();
    } catch {
      // already gone
    }
    this.host.closed(this, reason);
  }

  private onMessage(m: PeerMessage | MalformedMessage): void {
    if (this.done) return;
    this.lastMessageAt = Date.now();
    if (m instanceof MalformedMessage) return this.close(`a message is not a valid PeerMessage: ${m.reason}`, INVALID);
    if (m.hello) {
      if (this.established) return this.close('hello was sent twice', INVALID);
      if (m.hello.datacenter !== this.peerDc) {
        const said = isDatacenterRef(m.hello.datacenter) ? m.hello.datacenter : 'something that is not a datacenter name';
        return this.close(`the peer says it is ${said}, its certificate says ${this.peerDc}`, {
          status: grpc.status.PERMISSION_DENIED,
          code: ErrorCodes.PERMISSION_DENIED,
        });
      }
      this.established = true;
      if (this.host.dc === this.host.primaryDc) this.stops.push(this.host.replicate(this, m.hello.resumeIndex));
      this.stops.push(this.host.exportTo(this));
      this.heartbeat = setInterval(() => this.send({ heartbeat: { sentAtMs: Date.now(), index: this.host.storeIndex() } }), this.host.heartbeatMs);
      this.heartbeat.unref();
      this.send({ heartbeat: { sentAtMs: Date.now(), index: this.host.storeIndex() } });
      return;
    }
    if (!this.established) return this.close('the first message must be hello', INVALID);
    if (m.heartbeat) {
      this.lastHeartbeatAt = Date.now();
      this.peerIndex = m.heartbeat.index;
      this.host.heard(this);
      return;
    }
    if (m.ack) {
      this.host.acked(this, m.ack.stream, m.ack.index);
      return;
    }
    // Applies run one at a time, in the order they came.
    if (m.changes) {
      const c = m.changes;
      this.enqueue(async () => {
        await this.host.applyChanges(this, c);
        this.send({ ack: { stream: 'changes', index: c.index } });
      });
      return;
    }
    if (m.export) {
      const e = m.export;
      if (e.upserts.length > MAX_EXPORT_SERVICES || e.gateways.length > MAX_EXPORT_GATEWAYS) {
        return this.close(
          `an export holds at most ${MAX_EXPORT_SERVICES} services and ${MAX_EXPORT_GATEWAYS} gateways (got ${e.upserts.length} and ${e.gateways.length})`,
          { status: grpc.status.RESOURCE_EXHAUSTED, code: ErrorCodes.PAYLOAD_TOO_LARGE },
        );
      }
      this.enqueue(async () => {
        await this.host.applyExport(this, e);
        this.send({ ack: { stream: 'export', index: e.index } });
      });
    }
  }

  private enqueue(work: () => Promise<void>): void {
    this.queue = this.queue.then(async () => {
      if (this.done) return;
      try {
        await work();
      } catch (err) {
        // Transient (store down) or invalid: either way this link cannot go on in order; a new one resumes.
        this.host.log.warn('peer update not applied; reconnecting to resume', { peer: this.peerDc, error: err });
        this.close(`apply failed: ${(err as Error).message}`);
      }
    });
  }
}
