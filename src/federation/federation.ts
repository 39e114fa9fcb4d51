// Federation of this DC with the others, as one component behind a small façade. The parts, each in
// its own file: the join of a secondary (join.ts), the peer links (links.ts, peer-link.ts) and who
// dials them (dialer.ts, leader only), replication of the primary's tables (replication.ts), the
// exported catalogs (catalog-exchange.ts), receipts (receipts.ts), calls forwarded to other DCs
// (forwarding.ts), the member list (membership.ts), this server's identity (identity.ts), and status.
import * as grpc from '@grpc/grpc-js';
import type { Actor } from '../core/audit.js';
import { ErrorCodes, IsthmusError } from '../core/errors.js';
import type { Component } from '../core/lifecycle.js';
import { tolerantService } from '../core/proto.js';
import type { Change } from '../store/index.js';
import { CatalogExchange } from './catalog-exchange.js';
import { FederationContext, type FederationOptions } from './context.js';
import { Dialer } from './dialer.js';
import { Forwarding, type ForwardHandler } from './forwarding.js';
import { serveUnary } from './grpc-calls.js';
import { ServerIdentity } from './identity.js';
import { Join } from './join.js';
import { LinkRegistry } from './links.js';
import { Membership, OwnGateways } from './membership.js';
import { PeerLink, type PeerLinkHost } from './peer-link.js';
import {
  federationService,
  type ForwardRequest,
  type ForwardResponse,
  type JoinRequest,
  type JoinResponse,
  type PeerMessage,
  type SignRequest,
  type SignResponse,
} from './proto.js';
import { ReceiptBook, type Receipts } from './receipts.js';
import { Replication } from './replication.js';
import { federationStatus, registerStatusGauges, type FederationStatus } from './status.js';
import { FED_ACKS, type ExportedService } from './tables.js';
import { callerCertificate, serverDcOf } from './tls.js';
import type { FederationView } from './view.js';

export type { FederationOptions } from './context.js';
export type { ForwardHandler } from './forwarding.js';
export type { Receipt, Receipts } from './receipts.js';
export type { FederationStatus, PeerStatus } from './status.js';

export class Federation implements Component, FederationView, PeerLinkHost {
  readonly name = 'federation';
  private readonly ctx: FederationContext;
  private readonly members: Membership;
  private readonly identity: ServerIdentity;
  private readonly links: LinkRegistry;
  private readonly replication: Replication;
  private readonly exchange: CatalogExchange;
  private readonly receiptBook: ReceiptBook;
  private readonly dialer: Dialer;
  private readonly forwarding: Forwarding;
  private readonly joining: Join;
  /** The work one server per DC does: dialing the other DCs, and (primary) keeping its own gateways in its member entry. */
  readonly leaderDuties: Component[];
  private readonly changeListeners = new Set<() => void>();
  private changeTimer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private unCatalog: (() => void) | undefined;
  private server: grpc.Server | undefined;
  private port = 0;

  constructor(opts: FederationOptions) {
    const ctx = (this.ctx = new FederationContext(opts));
    this.members = new Membership(ctx);
    this.identity = new ServerIdentity(ctx);
    this.links = new LinkRegistry(ctx, () => this.emitChange());
    this.replication = new Replication(ctx);
    this.exchange = new CatalogExchange(ctx);
    this.receiptBook = new ReceiptBook(ctx, this.members, this.replication, opts.registry);
    this.dialer = new Dialer(ctx, this, this.members, this.links, this.identity);
    this.forwarding = new Forwarding(ctx, this.members, this.links, this.dialer, this.identity, this.replication);
    this.joining = new Join(ctx, this.members, this.identity, () => this.serverAddresses());
    this.leaderDuties = [this.dialer, new OwnGateways(ctx)];
    if (opts.registry) registerStatusGauges(opts.registry, () => this.status());
  }

  // ---- the view the data plane reads (FederationView) ----

  get dc(): string {
    return this.ctx.dc;
  }
  get primaryDc(): string {
    return this.ctx.primaryDc;
  }
  get version(): string {
    return this.ctx.version;
  }
  get isPrimary(): boolean {
    return this.ctx.isPrimary;
  }
  get log() {
    return this.ctx.log;
  }
  get heartbeatMs(): number {
    return this.ctx.heartbeatMs;
  }
  set heartbeatMs(ms: number) {
    this.ctx.heartbeatMs = ms;
  }
  /** host:port of the federation listener. */
  get address(): string {
    return `${this.ctx.opts.host}:${this.port}`;
  }

  datacenters(): string[] {
    return this.members.datacenters();
  }
  gateways(dc: string): string[] {
    return this.members.gateways(dc);
  }
  remoteHealthy(dc: string, namespace: string, service: string): number | undefined {
    return this.members.remoteHealthy(dc, namespace, service);
  }
  remoteSubsetHealthy(dc: string, namespace: string, service: string, subset: string): number | undefined {
    return this.members.remoteSubsetHealthy(dc, namespace, service, subset);
  }
  serverAddresses(): string[] {
    return this.port ? [this.address] : [];
  }
  onChange(listener: () => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  /** Other DCs' exported services (for `?dc=` reads). */
  exportedServices(dc: string): ExportedService[] {
    return this.members.exportedServices(dc);
  }

  /** The index of what is held of other DCs' exported catalogs (X-Consul-Index of `?dc=` reads). */
  exportIndex(): number {
    return this.members.exportIndex();
  }

  /** How stale what is held of `dc` is, in ms: since the last word from it (0 for this DC). */
  stalenessMs(dc: string): number | undefined {
    if (dc === this.ctx.dc) return 0;
    const link = this.links.established(dc);
    if (link) return Date.now() - link.lastMessageAt;
    const received = this.members.exportReceivedAt(dc);
    return received !== undefined ? Date.now() - received : undefined;
  }

  // ---- membership, join, forwarding, receipts (the API's calls) ----

  removeMember(dc: string, actor: Actor): Promise<{ Datacenter: string; ExportedServices: number }> {
    return this.members.removeMember(dc, actor);
  }
  join(signal?: AbortSignal): Promise<void> {
    return this.joining.join(signal);
  }
  createJoinToken(dc: string, ttlMs: number, actor: Actor): Promise<{ token: string; expires: string }> {
    return this.joining.createToken(dc, ttlMs, actor);
  }
  setForwardHandler(h: ForwardHandler): void {
    this.forwarding.setHandler(h);
  }
  forward(req: { method: string; path: string; body: string; token: string }, waitMs = 0): Promise<ForwardResponse> {
    return this.forwarding.forward(req, waitMs);
  }
  signRemote(dc: string, publicKeyPem: string): Promise<{ certPem: string; rootId: string }> {
    return this.forwarding.signRemote(dc, publicKeyPem);
  }
  queryPeer(dc: string, path: string, token: string, timeoutMs: number): Promise<ForwardResponse> {
    return this.forwarding.queryPeer(dc, path, token, timeoutMs);
  }
  replicatedIndex(): number {
    return this.replication.replicatedIndex();
  }
  appliedIndex(): number {
    return this.replication.appliedIndex();
  }
  waitApplied(index: number, timeoutMs: number): Promise<boolean> {
    return this.replication.waitApplied(index, timeoutMs);
  }
  receipts(asked: number): Receipts {
    return this.receiptBook.receipts(asked);
  }
  waitForReceipts(index: number, timeoutMs: number): Promise<Receipts> {
    return this.receiptBook.waitForReceipts(index, timeoutMs);
  }
  status(): FederationStatus {
    return federationStatus({
      ctx: this.ctx,
      members: this.members,
      links: this.links,
      dialer: this.dialer,
      replication: this.replication,
      receipts: this.receiptBook,
      address: () => this.address,
    });
  }

  // ---- lifecycle ----

  async start(): Promise<void> {
    this.ctx.stopped = false;
    this.replication.init();
    await this.members.ensureSelf();
    await this.identity.start();
    const server = new grpc.Server({ 'grpc.max_receive_message_length': 64 << 20, 'grpc.max_send_message_length': 64 << 20 });
    const log = this.ctx.log;
    const f = this.forwarding;
    server.addService(tolerantService(federationService().service), {
      join: (call: grpc.ServerUnaryCall<JoinRequest, JoinResponse>, cb: grpc.sendUnaryData<JoinResponse>) =>
        serveUnary(log, cb, call, 'JoinRequest', () => this.joining.onJoin(call.request)),
      signIntermediate: (call: grpc.ServerUnaryCall<SignRequest, SignResponse>, cb: grpc.sendUnaryData<SignResponse>) =>
        serveUnary(log, cb, call, 'SignRequest', () => f.onSign(call)),
      forward: (call: grpc.ServerUnaryCall<ForwardRequest, ForwardResponse>, cb: grpc.sendUnaryData<ForwardResponse>) =>
        serveUnary(log, cb, call, 'ForwardRequest', () => f.onForward(call)),
      query: (call: grpc.ServerUnaryCall<ForwardRequest, ForwardResponse>, cb: grpc.sendUnaryData<ForwardResponse>) =>
        serveUnary(log, cb, call, 'ForwardRequest', () => f.onQuery(call)),
      peerStream: (call: grpc.ServerDuplexStream<PeerMessage, PeerMessage>) => this.accept(call),
    });
    const creds = grpc.experimental.createCertificateProviderServerCredentials(this.identity.certificates, this.identity.certificates, false);
    const { host, port } = this.ctx.opts;
    this.port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`${host}:${port}`, creds, (err, bound) =>
        err ? reject(new IsthmusError(ErrorCodes.UNAVAILABLE, `cannot listen for federation on ${host}:${port}: ${err.message}`)) : resolve(bound),
      ),
    );
    this.server = server;
    this.unsubscribe = this.ctx.store.subscribe((changes) => this.onStoreChanges(changes));
    // Local healthy counts and gateways are part of the view the data plane reads.
    this.unCatalog = this.ctx.catalog.onChange(() => this.emitChange());
    log.info('federation listening', { address: this.address, primary: this.ctx.primaryDc, leader: this.ctx.store.isLeader() });
  }

  async stop(): Promise<void> {
    this.ctx.stopped = true;
    clearTimeout(this.changeTimer);
    this.unsubscribe?.();
    this.unCatalog?.();
    this.identity.stop();
    // The leader gate stops the dialer before this runs; links accepted here close now.
    await this.dialer.stop();
    this.forwarding.close();
    this.links.closeAll('server stopping');
    this.receiptBook.wake();
    await new Promise<void>((resolve) => {
      if (!this.server) return resolve();
      const t = setTimeout(() => {
        this.server?.forceShutdown();
        resolve();
      }, 1500);
      t.unref();
      this.server.tryShutdown(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  // ---- PeerLinkHost: what a peer link asks of this server ----

  storeIndex(): number {
    return this.replication.storeIndex();
  }
  replicate(link: PeerLink, fromIndex: number): () => void {
    return this.replication.replicate(link, fromIndex);
  }
  exportTo(link: PeerLink): () => void {
    return this.exchange.exportTo(link);
  }
  async applyChanges(link: PeerLink, msg: NonNullable<PeerMessage['changes']>): Promise<void> {
    const { caChanged } = await this.replication.applyChanges(link, msg);
    if (caChanged) void this.ctx.ca.tick();
  }
  applyExport(link: PeerLink, msg: NonNullable<PeerMessage['export']>): Promise<void> {
    return this.exchange.applyExport(link, msg);
  }
  acked(link: PeerLink, stream: string, index: number): void {
    if (stream === 'changes') this.receiptBook.acked(link.peerDc, index);
  }
  heard(link: PeerLink): void {
    this.replication.heard(link);
  }
  closed(link: PeerLink, reason: string): void {
    this.links.closed(link, reason);
  }

  // ---- internals ----

  /** A peer stream dialed by another DC's server (any replica of this DC takes them). */
  private accept(call: grpc.ServerDuplexStream<PeerMessage, PeerMessage>): void {
    const peer = serverDcOf(callerCertificate(call), this.ctx.trustDomain());
    if (!peer || peer === this.ctx.dc) {
      call.emit('error', {
        code: grpc.status.UNAUTHENTICATED,
        details: `${ErrorCodes.PERMISSION_DENIED}: a peer stream needs the server certificate of another datacenter of this federation`,
      });
      return;
    }
    if (!this.members.datacenters().includes(peer)) {
      call.emit('error', {
        code: grpc.status.PERMISSION_DENIED,
        details: `${ErrorCodes.PERMISSION_DENIED}: ${peer} is not a member of this federation (removed, or not yet known here)`,
      });
      return;
    }
    void this.links.add(new PeerLink(this, call, peer, 'in'));
  }

  private onStoreChanges(changes: Change[]): void {
    this.replication.track(changes);
    this.members.onChanges(changes);
    if (changes.some((c) => c.table === FED_ACKS)) this.receiptBook.wake();
    if (Membership.touchesView(changes)) this.emitChange();
    if (Membership.touchesMembers(changes)) this.dialer.reconcile();
  }

  private emitChange(): void {
    if (this.changeTimer) return;
    this.changeTimer = setTimeout(() => {
      this.changeTimer = undefined;
      for (const l of this.changeListeners) {
        try {
          l();
        } catch (err) {
          this.ctx.log.warn('federation view listener failed', { error: err });
        }
      }
    }, 10);
    this.changeTimer.unref();
  }
}
