// Federation of this DC with the others: the join of a secondary, the mTLS gRPC listener that the
// gateways route `server.<dc>.<trust-domain>` to, one peer stream per pair of DCs (secondaries dial
// the primary; between secondaries the one whose name sorts first dials), replication of the
// primary's tables, exported catalogs, receipts, forwarding of writes to the primary, and status.
import * as grpc from '@grpc/grpc-js';
import type { Registry } from 'prom-client';
import { Gauge, Histogram } from 'prom-client';
import { auditOp, type Actor } from '../core/audit.js';
import { Backoff, sleep } from '../core/backoff.js';
import { ErrorCodes, IsthmusError, invalid, isIsthmusError, type ErrorCode } from '../core/errors.js';
import type { Component } from '../core/lifecycle.js';
import type { Catalog } from '../catalog/index.js';
import { SERVICES, CHECKS, NODES } from '../catalog/index.js';
import type { CaRoot, CertificateAuthority } from '../ca/index.js';
import { newKeyPem, publicKeyPemOf } from '../ca/index.js';
import type { Change, Store, StoreOp } from '../store/index.js';
import { silentLogger, type Logger } from '../telemetry/index.js';
import { grpcStatusOf, MalformedMessage, tolerantService } from '../core/proto.js';
import { computeExport, diffExport, exportOps, localGateways, type ExportState } from './catalog-export.js';
import { checkJoin, encodeJoinToken, newSecret, secretHash, type JoinToken, type StoredJoinToken } from './join-token.js';
import { PeerLink, type PeerLinkHost } from './peer-link.js';
import { federationService, type FederationClient, type ForwardRequest, type ForwardResponse, type JoinRequest, type JoinResponse, type PeerMessage, type SignRequest, type SignResponse } from './proto.js';
import {
  FED_JOIN_TOKENS,
  FED_MEMBERS,
  FED_PEERS,
  FED_SERVICES,
  FED_STATE,
  REPLICATED,
  REPLICATED_TABLES,
  type AppliedState,
  type ExportedService,
  type JoinState,
  type Member,
  type PeerExport,
} from './tables.js';
import { callerCertificate, clientCredentials, PushedCertificates, serverDcOf, serverSni } from './tls.js';
import type { FederationView } from './view.js';

export interface FederationOptions {
  store: Store;
  catalog: Catalog;
  ca: CertificateAuthority;
  dc: string;
  primaryDc: string;
  trustDomain: () => string;
  /** Where the federation listener binds (port 0: any). */
  host: string;
  port: number;
  /** The join token a secondary starts with (ignored once it has joined). */
  joinToken?: JoinToken;
  version: string;
  logger?: Logger;
  registry?: Registry;
  /** Heartbeat period on every link; a link silent for three of them is dropped and redialed. */
  heartbeatMs?: number;
}

export interface PeerStatus {
  Datacenter: string;
  State: 'up' | 'connecting' | 'down';
  Direction: 'in' | 'out' | '';
  ConnectedSince: string | null;
  HeartbeatAgeMs: number | null;
  /** Primary: the highest of its indexes this peer acknowledged. Secondary (its link to the primary): the primary index applied here. */
  LastAckedIndex: number;
  /** How far behind the replicated tables are on this link, in ms (0 when caught up). */
  ReplicationLagMs: number;
  ExportIndex: number;
  ExportAgeMs: number | null;
  LastError: string;
}

export interface FederationStatus {
  Datacenter: string;
  PrimaryDatacenter: string;
  Primary: boolean;
  Index: number;
  /** The primary index this DC has applied (the primary's own index in the primary). */
  AppliedIndex: number;
  Address: string;
  Peers: PeerStatus[];
}

export interface Receipt {
  Datacenter: string;
  Applied: boolean;
  /** The primary index this DC had applied when asked. */
  AppliedIndex: number;
  /** When it first reached the asked index, if it has. */
  AppliedAt: string | null;
}

export interface Receipts {
  Index: number;
  Complete: boolean;
  Datacenters: Receipt[];
}

export type ForwardHandler = (req: { method: string; path: string; body: string; token: string; originDc: string }) => Promise<{ status: number; body: string; contentType: string; receiptsJson: string }>;

const CATALOG_TABLES = new Set([SERVICES, CHECKS, NODES]);
const VIEW_TABLES = new Set([FED_MEMBERS, FED_PEERS, FED_SERVICES, FED_STATE, SERVICES, CHECKS]);

function toStatus(err: unknown): Partial<grpc.StatusObject> {
  const code = isIsthmusError(err) ? err.code : ErrorCodes.INTERNAL;
  const message = isIsthmusError(err) ? err.message : 'internal error';
  return grpcStatusOf(code, message);
}

/** Our error back from a gRPC status: the code we sent in details, or one that fits the status. */
function fromStatus(err: grpc.ServiceError, unreachable: string): IsthmusError {
  const m = /^(ISTHMUS_ERR_[A-Z_]+): (.*)$/s.exec(err.details ?? '');
  if (m) return new IsthmusError(m[1] as ErrorCode, m[2]);
  if (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED) return new IsthmusError(ErrorCodes.PRIMARY_UNREACHABLE, `${unreachable} (${err.details || 'unavailable'})`);
  return new IsthmusError(ErrorCodes.INTERNAL, err.details || err.message);
}

function unary<Req, Res>(fn: (req: Req, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Res) => void) => unknown, req: Req, timeoutMs: number): Promise<Res> {
  return new Promise((resolve, reject) => {
    fn(req, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res as Res)));
  });
}

interface Dialer {
  peer: string;
  abort: AbortController;
  client?: FederationClient;
  lastError: string;
  done: Promise<void>;
}

export class Federation implements Component, FederationView, PeerLinkHost {
  readonly name = 'federation';
  readonly log: Logger;
  heartbeatMs: number;
  private readonly certs = new PushedCertificates();
  private server: grpc.Server | undefined;
  private serverCert: { certPem: string; keyPem: string; chain: string[]; notAfter: Date } | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private reconcileTimer: NodeJS.Timeout | undefined;
  private readonly links = new Map<string, PeerLink>();
  private readonly dialers = new Map<string, Dialer>();
  private readonly closeWaiters = new Map<PeerLink, (reason: string) => void>();
  private readonly lastErrors = new Map<string, string>();
  private readonly changeListeners = new Set<() => void>();
  private changeTimer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private unBundle: (() => void) | undefined;
  /** Primary: when each replicated change was committed, for lag and receipts. */
  private readonly commitTimes: [number, number][] = [];
  private lastReplicatedIndex = 0;
  /** Primary: per DC, the acknowledged indexes with when they arrived. */
  private readonly acks = new Map<string, [number, number][]>();
  private readonly ackWaiters = new Set<() => void>();
  /** Secondary: since when the primary has been ahead of what is applied here. */
  private behindSince = 0;
  private forwardHandler: ForwardHandler | undefined;
  private port = 0;
  private stopped = false;
  private readonly applyLatency: Histogram | undefined;

  constructor(private readonly opts: FederationOptions) {
    this.log = (opts.logger ?? silentLogger).child({ component: 'federation' });
    this.heartbeatMs = opts.heartbeatMs ?? 5000;
    if (opts.registry) {
      this.applyLatency = new Histogram({
        name: 'isthmus_federation_replication_seconds',
        help: 'Time from a replicated write at the primary to its acknowledgement by a datacenter.',
        labelNames: ['peer'],
        buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
        registers: [opts.registry],
      });
      const gauge = (name: string, help: string, pick: (p: PeerStatus) => number | null) =>
        new Gauge({
          name,
          help,
          labelNames: ['peer'],
          registers: [opts.registry!],
          collect: () => {
            const g = opts.registry!.getSingleMetric(name) as Gauge;
            g.reset();
            for (const p of this.status().Peers) {
              const v = pick(p);
              if (v !== null) g.labels(p.Datacenter).set(v);
            }
          },
        });
      gauge('isthmus_federation_link_up', '1 while the peer stream with this datacenter is up.', (p) => (p.State === 'up' ? 1 : 0));
      gauge('isthmus_federation_heartbeat_age_seconds', 'Seconds since the last heartbeat from this datacenter.', (p) => (p.HeartbeatAgeMs === null ? null : p.HeartbeatAgeMs / 1000));
      gauge('isthmus_federation_replication_lag_seconds', 'How far the replicated tables on this link are behind, in seconds.', (p) => p.ReplicationLagMs / 1000);
      gauge('isthmus_federation_acked_index', 'The last index acknowledged on this link.', (p) => p.LastAckedIndex);
    }
  }

  // ---- the view the data plane reads ----

  get dc(): string {
    return this.opts.dc;
  }

  get primaryDc(): string {
    return this.opts.primaryDc;
  }

  get version(): string {
    return this.opts.version;
  }

  get isPrimary(): boolean {
    return this.opts.dc === this.opts.primaryDc;
  }

  /** host:port of the federation listener. */
  get address(): string {
    return `${this.opts.host}:${this.port}`;
  }

  datacenters(): string[] {
    const s = new Set([this.opts.dc, this.opts.primaryDc]);
    const members = this.opts.store.list(FED_MEMBERS);
    for (const e of members) s.add(e.key);
    // Before the member list has come from the primary, the DCs heard from; after, members only
    // (an export still on its way from a DC just removed does not bring it back).
    if (members.length === 0) for (const e of this.opts.store.list(FED_PEERS)) s.add(e.key);
    return [...s].sort();
  }

  /**
   * Primary: takes `dc` out of the federation. Its member entry goes (and with it, in every DC this
   * one included, its exported catalog and gateways: see onMemberRemoved), links to it close, receipts
   * stop waiting for it, and its server identity is refused from then on: it must join again with a
   * new token to come back.
   */
  async removeMember(dc: string, actor: Actor): Promise<{ Datacenter: string; ExportedServices: number }> {
    if (!this.isPrimary) throw new IsthmusError(ErrorCodes.PRIMARY_UNREACHABLE, `datacenters are removed at the primary (${this.opts.primaryDc})`);
    if (dc === this.opts.dc) throw invalid([{ Field: 'dc', Message: `${dc} is the primary itself and cannot be removed` }]);
    const member = this.opts.store.get<Member>(FED_MEMBERS, dc);
    if (!member) throw new IsthmusError(ErrorCodes.NOT_FOUND, `${dc} is not a member of this federation (members: ${this.datacenters().join(', ')})`);
    const services = this.opts.store.list(FED_SERVICES, `${dc}/`).length;
    await this.opts.store.commit([
      { op: 'delete', table: FED_MEMBERS, key: dc, ifIndex: member.modifyIndex },
      auditOp(actor, { Kind: 'federation', Action: 'delete', Subject: `datacenter ${dc}`, Before: member.value }),
    ]);
    this.log.warn('datacenter removed from the federation', { dc, exportedServices: services });
    return { Datacenter: dc, ExportedServices: services };
  }

  /**
   * A member removal, made here (primary) or replicated here: forget what this DC holds of it (its
   * export header and exported services), and say so when it is this DC that was removed.
   */
  private onMemberRemoved(dc: string): void {
    if (dc === this.opts.dc) {
      this.log.error('this datacenter was removed from the federation by the primary; join again with a new token to come back', { primary: this.opts.primaryDc });
      return;
    }
    const ops: StoreOp[] = this.opts.store.list(FED_SERVICES, `${dc}/`).map((e) => ({ op: 'delete', table: FED_SERVICES, key: e.key }));
    if (this.opts.store.get(FED_PEERS, dc)) ops.push({ op: 'delete', table: FED_PEERS, key: dc });
    if (ops.length) this.opts.store.commit(ops).catch((err) => this.log.warn('cannot forget a removed datacenter\'s catalog', { dc, error: err }));
  }

  gateways(dc: string): string[] {
    const direct = this.opts.store.get<PeerExport>(FED_PEERS, dc)?.value.Gateways ?? [];
    if (direct.length) return direct;
    const member = this.opts.store.get<Member>(FED_MEMBERS, dc)?.value.Gateways ?? [];
    if (member.length) return member;
    if (dc === this.opts.primaryDc) return this.joinState()?.Gateways ?? this.opts.joinToken?.gateways ?? [];
    return [];
  }

  remoteHealthy(dc: string, namespace: string, service: string): number | undefined {
    const s = this.opts.store.get<ExportedService>(FED_SERVICES, `${dc}/${namespace}/${service}`)?.value;
    if (s) return s.ConnectHealthy;
    return this.opts.store.get(FED_PEERS, dc) ? 0 : undefined;
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
    return this.opts.store.list<ExportedService>(FED_SERVICES, `${dc}/`).map((e) => e.value);
  }

  /** How stale what is held of `dc` is, in ms: since the last word from it (0 for this DC). */
  stalenessMs(dc: string): number | undefined {
    if (dc === this.opts.dc) return 0;
    const link = this.links.get(dc);
    if (link?.established) return Date.now() - link.lastMessageAt;
    const received = this.opts.store.get<PeerExport>(FED_PEERS, dc)?.value.ReceivedAt;
    return received ? Date.now() - Date.parse(received) : undefined;
  }

  setForwardHandler(h: ForwardHandler): void {
    this.forwardHandler = h;
  }

  /**
   * Asks another DC to answer a read of its own records (GET /v1/flows...) with the caller's token.
   * Uses the live link's client when this side dialed, else a client of its own to that DC.
   */
  async queryPeer(dc: string, path: string, token: string, timeoutMs: number): Promise<ForwardResponse> {
    if (dc === this.opts.dc) throw new IsthmusError(ErrorCodes.INTERNAL, 'a DC does not query itself');
    const client = this.dialers.get(dc)?.client ?? this.queryClient(dc);
    if (!client) throw new IsthmusError(ErrorCodes.UNAVAILABLE, `no address known for datacenter ${dc}`);
    try {
      return await unary<ForwardRequest, ForwardResponse>(client.query.bind(client), { method: 'GET', path, body: '', token, originDatacenter: this.opts.dc }, timeoutMs);
    } catch (err) {
      const e = err as grpc.ServiceError;
      if (e.code === grpc.status.DEADLINE_EXCEEDED) throw new IsthmusError(ErrorCodes.TIMEOUT, `datacenter ${dc} did not answer within ${timeoutMs} ms`);
      const mine = fromStatus(e, `datacenter ${dc} cannot be reached`);
      throw mine.code === ErrorCodes.PRIMARY_UNREACHABLE ? new IsthmusError(ErrorCodes.UNAVAILABLE, mine.message) : mine;
    }
  }

  private readonly queryClients = new Map<string, { client: FederationClient; address: string }>();
  private queryClient(dc: string): FederationClient | undefined {
    const addrs = this.dialAddresses(dc);
    if (addrs.length === 0) return undefined;
    const cached = this.queryClients.get(dc);
    if (cached && addrs.includes(cached.address)) return cached.client;
    cached?.client.close();
    const client = this.makeClient(addrs[0], dc);
    this.queryClients.set(dc, { client, address: addrs[0] });
    return client;
  }

  // ---- lifecycle ----

  /**
   * A secondary that has not joined yet joins the primary with its token: the primary signs its
   * intermediate (only the public key travels) and sends the roots; all of it lands in one commit.
   * Runs before the CA starts, so the CA finds its intermediate in place.
   */
  async join(signal?: AbortSignal): Promise<void> {
    if (this.isPrimary) return;
    if (this.joinState() && this.opts.ca.intermediate()) return;
    const token = this.opts.joinToken;
    if (!token) {
      throw new IsthmusError(ErrorCodes.BAD_CONFIG, `datacenter ${this.opts.dc} has not joined ${this.opts.primaryDc}: start it once with --join-token (made at the primary with: isthmus federation token --dc ${this.opts.dc})`);
    }
    if (token.dc !== this.opts.dc) throw new IsthmusError(ErrorCodes.BAD_CONFIG, `the join token is for datacenter ${token.dc}, this server is ${this.opts.dc}`);
    if (token.primary !== this.opts.primaryDc) throw new IsthmusError(ErrorCodes.BAD_CONFIG, `the join token is from primary ${token.primary}, but --primary-dc says ${this.opts.primaryDc}`);
    const keyPem = await newKeyPem();
    const publicKeyPem = await publicKeyPemOf(keyPem);
    const addrs = [...new Set([...token.gateways, ...token.servers])];
    const backoff = new Backoff({ initialMs: 250, maxMs: 5000 });
    let res: JoinResponse | undefined;
    for (let attempt = 0; !res; attempt++) {
      if (signal?.aborted || this.stopped) throw new IsthmusError(ErrorCodes.UNAVAILABLE, 'join abandoned: the server is stopping');
      const addr = addrs[attempt % addrs.length];
      const client = this.makeClient(addr, token.primary, { roots: [token.root], trustDomain: token.trustDomain });
      try {
        res = await unary<JoinRequest, JoinResponse>(client.join.bind(client), { secret: token.secret, datacenter: this.opts.dc, publicKeyPem }, 10_000);
      } catch (err) {
        const e = fromStatus(err as grpc.ServiceError, `primary ${token.primary} not reachable at ${addr}`);
        if (e.code !== ErrorCodes.PRIMARY_UNREACHABLE) throw e;
        this.log.warn('join: primary not reachable yet; retrying', { address: addr, error: e.message });
        if (attempt >= addrs.length * 20) throw e;
        await sleep(backoff.next(), signal);
      } finally {
        client.close();
      }
    }
    if (res.trustDomain !== token.trustDomain) throw new IsthmusError(ErrorCodes.TRUST_DOMAIN_MISMATCH, `the primary answered for trust domain ${res.trustDomain}, the token names ${token.trustDomain}`);
    const roots = JSON.parse(res.rootsJson) as CaRoot[];
    const state: JoinState = { PrimaryDatacenter: token.primary, TrustDomain: token.trustDomain, Gateways: token.gateways, Servers: token.servers, JoinedAt: new Date().toISOString() };
    await this.opts.store.commit([
      ...this.opts.ca.joinOps(roots, res.intermediateCertPem, keyPem, res.rootId),
      { op: 'put', table: FED_STATE, key: 'join', value: state },
    ]);
    this.log.info('joined the federation', { primary: token.primary, trustDomain: token.trustDomain });
  }

  async start(): Promise<void> {
    const store = this.opts.store;
    if (this.isPrimary) this.lastReplicatedIndex = Math.max(0, ...REPLICATED_TABLES.map((t) => store.tableIndex(t)));
    if (this.isPrimary && !store.get(FED_MEMBERS, this.opts.dc)) {
      const self: Member = { Datacenter: this.opts.dc, JoinedAt: new Date().toISOString(), Gateways: localGateways(this.opts.catalog).wan };
      await store.commit([{ op: 'put', table: FED_MEMBERS, key: this.opts.dc, value: self }]).catch(() => undefined);
    }
    await this.refreshServerCert();
    this.unBundle = this.opts.ca.onBundle(() => void this.refreshServerCert().catch((err) => this.log.warn('cannot renew the server certificate', { error: err })));

    const server = new grpc.Server({ 'grpc.max_receive_message_length': 64 << 20, 'grpc.max_send_message_length': 64 << 20 });
    server.addService(tolerantService(federationService().service), {
      join: (call: grpc.ServerUnaryCall<JoinRequest, JoinResponse>, cb: grpc.sendUnaryData<JoinResponse>) => this.handle(cb, call, 'JoinRequest', () => this.onJoin(call.request)),
      signIntermediate: (call: grpc.ServerUnaryCall<SignRequest, SignResponse>, cb: grpc.sendUnaryData<SignResponse>) => this.handle(cb, call, 'SignRequest', () => this.onSign(call)),
      forward: (call: grpc.ServerUnaryCall<ForwardRequest, ForwardResponse>, cb: grpc.sendUnaryData<ForwardResponse>) => this.handle(cb, call, 'ForwardRequest', () => this.onForward(call)),
      query: (call: grpc.ServerUnaryCall<ForwardRequest, ForwardResponse>, cb: grpc.sendUnaryData<ForwardResponse>) => this.handle(cb, call, 'ForwardRequest', () => this.onQuery(call)),
      peerStream: (call: grpc.ServerDuplexStream<PeerMessage, PeerMessage>) => this.onPeerStream(call),
    });
    const creds = grpc.experimental.createCertificateProviderServerCredentials(this.certs, this.certs, false);
    this.port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`${this.opts.host}:${this.opts.port}`, creds, (err, port) => (err ? reject(new IsthmusError(ErrorCodes.UNAVAILABLE, `cannot listen for federation on ${this.opts.host}:${this.opts.port}: ${err.message}`)) : resolve(port))),
    );
    this.server = server;

    this.unsubscribe = store.subscribe((changes) => this.onStoreChanges(changes));
    this.reconcile();
    this.reconcileTimer = setInterval(() => this.reconcile(), 2000);
    this.reconcileTimer.unref();
    this.log.info('federation listening', { address: this.address, primary: this.opts.primaryDc });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.reconcileTimer);
    clearTimeout(this.renewTimer);
    clearTimeout(this.changeTimer);
    this.unsubscribe?.();
    this.unBundle?.();
    for (const d of this.dialers.values()) d.abort.abort();
    for (const q of this.queryClients.values()) q.client.close();
    for (const l of [...this.links.values()]) l.close('server stopping');
    await Promise.all([...this.dialers.values()].map((d) => d.done));
    for (const w of this.ackWaiters) w();
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

  // ---- join tokens (primary) ----

  async createJoinToken(dc: string, ttlMs: number, actor: Actor): Promise<{ token: string; expires: string }> {
    if (!this.isPrimary) throw new IsthmusError(ErrorCodes.PRIMARY_UNREACHABLE, `join tokens are made in the primary datacenter (${this.opts.primaryDc})`);
    const v = [];
    if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(dc)) v.push({ Field: 'Datacenter', Message: 'must be lowercase letters, digits and dashes (e.g. dc2)' });
    else if (dc === this.opts.dc) v.push({ Field: 'Datacenter', Message: `${dc} is the primary itself` });
    if (!Number.isFinite(ttlMs) || ttlMs < 60_000 || ttlMs > 7 * 86_400_000) v.push({ Field: 'TTL', Message: 'must be between 1m and 168h' });
    if (v.length) throw invalid(v);
    const root = this.opts.ca.activeRoot();
    if (!root) throw new IsthmusError(ErrorCodes.UNAVAILABLE, 'the primary has no root CA yet; try again in a moment');
    const secret = newSecret();
    const expires = Date.now() + ttlMs;
    const stored: StoredJoinToken = { Datacenter: dc, Expires: expires, CreatedAt: new Date().toISOString() };
    await this.opts.store.commit([
      { op: 'put', table: FED_JOIN_TOKENS, key: secretHash(secret), value: stored, ifIndex: 0 },
      auditOp(actor, { Kind: 'federation', Action: 'create', Subject: `join token for ${dc}`, After: { Datacenter: dc, Expires: new Date(expires).toISOString() } }),
    ]);
    const gateways = localGateways(this.opts.catalog).wan;
    const token: JoinToken = {
      v: 1,
      primary: this.opts.dc,
      dc,
      trustDomain: this.opts.trustDomain(),
      gateways,
      // Servers are reached through the gateways; their own address is offered only when there is
      // no gateway yet (one network, or a first test), as a server's port is not meant for the WAN.
      servers: gateways.length ? [] : this.serverAddresses(),
      root: root.RootCert,
      secret,
      expires,
    };
    return { token: encodeJoinToken(token), expires: new Date(expires).toISOString() };
  }

  // ---- receipts (primary) ----

  /** The primary's index of the replicated tables, the one every DC acknowledges. */
  replicatedIndex(): number {
    return this.isPrimary ? this.lastReplicatedIndex : this.appliedIndex();
  }

  receipts(asked: number): Receipts {
    // Only replicated changes are acknowledged: a later index of another table counts as the replicated one before it.
    const index = Math.min(asked, this.lastReplicatedIndex);
    const out: Receipt[] = [];
    for (const dc of this.datacenters()) {
      if (dc === this.opts.dc) {
        const applied = this.opts.store.index() >= index;
        out.push({ Datacenter: dc, Applied: applied, AppliedIndex: this.opts.store.index(), AppliedAt: applied ? new Date(this.commitTime(index) ?? Date.now()).toISOString() : null });
        continue;
      }
      const list = this.acks.get(dc) ?? [];
      const last = list.length ? list[list.length - 1][0] : 0;
      const first = list.find(([i]) => i >= index);
      out.push({ Datacenter: dc, Applied: last >= index, AppliedIndex: last, AppliedAt: first ? new Date(first[1]).toISOString() : null });
    }
    return { Index: asked, Complete: out.every((r) => r.Applied), Datacenters: out };
  }

  /** Resolves once every DC has applied `index`, or when the timeout passes (Complete says which). */
  async waitForReceipts(index: number, timeoutMs: number): Promise<Receipts> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = this.receipts(index);
      if (r.Complete || Date.now() >= deadline || this.stopped) return r;
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, deadline - Date.now());
        const self = this;
        function done() {
          clearTimeout(t);
          self.ackWaiters.delete(done);
          resolve();
        }
        this.ackWaiters.add(done);
      });
    }
  }

  /** Secondary: the primary index applied here. Primary: its own index. */
  appliedIndex(): number {
    if (this.isPrimary) return this.opts.store.index();
    return this.opts.store.get<AppliedState>(FED_STATE, 'applied')?.value.Index ?? 0;
  }

  /** Secondary: waits until the primary's `index` is applied here (read-your-writes after a forward). */
  async waitApplied(index: number, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.appliedIndex() < index) {
      const left = deadline - Date.now();
      if (left <= 0 || this.stopped) return false;
      await this.opts.store.waitForChange([FED_STATE], this.opts.store.tableIndex(FED_STATE), left);
    }
    return true;
  }

  // ---- forwarding (secondary -> primary) ----

  async forward(req: { method: string; path: string; body: string; token: string }, waitMs = 0): Promise<ForwardResponse> {
    if (this.isPrimary) throw new IsthmusError(ErrorCodes.INTERNAL, 'the primary does not forward');
    const primary = this.opts.primaryDc;
    const d = this.dialers.get(primary);
    const link = this.links.get(primary);
    if (!d?.client || !link?.established) {
      const why = this.lastErrors.get(primary) || d?.lastError || 'no live link';
      throw new IsthmusError(ErrorCodes.PRIMARY_UNREACHABLE, `the primary datacenter ${primary} cannot be reached (${why}); intentions, ACL, CA settings and federation membership are written there, so nothing was changed`);
    }
    const client = d.client;
    try {
      return await unary<ForwardRequest, ForwardResponse>(client.forward.bind(client), { ...req, originDatacenter: this.opts.dc }, 10_000 + waitMs);
    } catch (err) {
      const e = err as grpc.ServiceError;
      if (e.code === grpc.status.DEADLINE_EXCEEDED) {
        throw new IsthmusError(ErrorCodes.PRIMARY_UNREACHABLE, `the primary datacenter ${primary} did not answer within ${Math.round((10_000 + waitMs) / 1000)} s; the write may or may not have been applied there: read it back before retrying`);
      }
      throw fromStatus(e, `the primary datacenter ${primary} cannot be reached; nothing was changed`);
    }
  }

  /** Secondary: has its intermediate signed by the primary (renewal), over the live link. */
  async signRemote(dc: string, publicKeyPem: string): Promise<{ certPem: string; rootId: string }> {
    const d = this.dialers.get(this.opts.primaryDc);
    if (!d?.client) throw new IsthmusError(ErrorCodes.PRIMARY_UNREACHABLE, `the primary datacenter ${this.opts.primaryDc} cannot be reached to sign the intermediate; the current one stays in use`);
    const client = d.client;
    try {
      return await unary<SignRequest, SignResponse>(client.signIntermediate.bind(client), { datacenter: dc, publicKeyPem }, 15_000);
    } catch (err) {
      throw fromStatus(err as grpc.ServiceError, `the primary datacenter ${this.opts.primaryDc} cannot be reached to sign the intermediate`);
    }
  }

  // ---- status ----

  status(): FederationStatus {
    const now = Date.now();
    const peers: PeerStatus[] = [];
    for (const dc of this.datacenters()) {
      if (dc === this.opts.dc) continue;
      const link = this.links.get(dc);
      const dialer = this.dialers.get(dc);
      const exp = this.opts.store.get<PeerExport>(FED_PEERS, dc)?.value;
      let acked = 0;
      let lag = 0;
      if (this.isPrimary) {
        const list = this.acks.get(dc) ?? [];
        acked = list.length ? list[list.length - 1][0] : 0;
        if (acked < this.lastReplicatedIndex) {
          const firstUnacked = this.commitTimes.find(([i]) => i > acked);
          lag = firstUnacked ? now - firstUnacked[1] : 0;
        }
      } else if (dc === this.opts.primaryDc) {
        acked = this.appliedIndex();
        lag = this.behindSince ? now - this.behindSince : 0;
      }
      peers.push({
        Datacenter: dc,
        State: link?.established ? 'up' : dialer ? 'connecting' : 'down',
        Direction: link?.established ? link.direction : dialer ? 'out' : '',
        ConnectedSince: link?.established ? new Date(link.openedAt).toISOString() : null,
        HeartbeatAgeMs: link?.lastHeartbeatAt ? now - link.lastHeartbeatAt : null,
        LastAckedIndex: acked,
        ReplicationLagMs: lag,
        ExportIndex: exp?.Index ?? 0,
        ExportAgeMs: exp ? now - Date.parse(exp.ReceivedAt) : null,
        LastError: link?.established ? '' : (this.lastErrors.get(dc) ?? dialer?.lastError ?? ''),
      });
    }
    return {
      Datacenter: this.opts.dc,
      PrimaryDatacenter: this.opts.primaryDc,
      Primary: this.isPrimary,
      Index: this.opts.store.index(),
      AppliedIndex: this.appliedIndex(),
      Address: this.address,
      Peers: peers,
    };
  }

  // ---- PeerLinkHost ----

  storeIndex(): number {
    return this.isPrimary ? this.lastReplicatedIndex : this.opts.store.index();
  }

  replicate(link: PeerLink, fromIndex: number): () => void {
    const store = this.opts.store;
    let sentUpTo = fromIndex;
    const current = store.index();
    const r = fromIndex > current ? undefined : store.changesSince(fromIndex);
    if (!r || r.kind === 'snapshot') {
      const resources = REPLICATED_TABLES.flatMap((table) => store.list(table).map((e) => ({ table, key: e.key, op: 'put', valueJson: JSON.stringify(e.value), index: e.modifyIndex })));
      link.send({ changes: { snapshot: true, index: current, resources, committedAtMs: Date.now() } });
      this.log.info('full resync sent', { peer: link.peerDc, from: fromIndex, index: current, resources: resources.length });
      sentUpTo = current;
    } else if (r.index > fromIndex) {
      const resources = r.changes.filter((c) => REPLICATED.has(c.table)).map(toResource);
      link.send({ changes: { snapshot: false, index: r.index, resources, committedAtMs: this.commitTime(r.index) ?? Date.now() } });
      sentUpTo = r.index;
    }
    return store.subscribe((changes) => {
      const fresh = changes.filter((c) => c.index > sentUpTo && REPLICATED.has(c.table));
      if (fresh.length === 0) return;
      const index = fresh[fresh.length - 1].index;
      sentUpTo = index;
      link.send({ changes: { snapshot: false, index, resources: fresh.map(toResource), committedAtMs: this.commitTime(index) ?? Date.now() } });
    });
  }

  exportTo(link: PeerLink): () => void {
    let last: ExportState | undefined;
    let timer: NodeJS.Timeout | undefined;
    const send = () => {
      timer = undefined;
      if (!link.open) return;
      const next = computeExport(this.opts.catalog);
      const d = diffExport(last, next);
      if (last && d.upserts.length === 0 && d.deletes.length === 0 && JSON.stringify(last.gateways) === JSON.stringify(next.gateways)) return;
      link.send({
        export: {
          datacenter: this.opts.dc,
          index: this.opts.store.index(),
          full: !last,
          gateways: d.gateways,
          upserts: d.upserts.map((s) => ({ name: s.Name, namespace: s.Namespace, instances: s.Instances, healthy: s.Healthy, connectHealthy: s.ConnectHealthy, tags: s.Tags, meta: s.Meta })),
          deletes: d.deletes,
        },
      });
      last = next;
    };
    send();
    const unsub = this.opts.store.subscribe((changes) => {
      if (!timer && changes.some((c) => CATALOG_TABLES.has(c.table))) timer = setTimeout(send, 50);
    });
    return () => {
      unsub();
      clearTimeout(timer);
    };
  }

  async applyChanges(link: PeerLink, msg: NonNullable<PeerMessage['changes']>): Promise<void> {
    if (link.peerDc !== this.opts.primaryDc || this.isPrimary) {
      this.log.warn('replicated tables refused from a datacenter that is not the primary', { peer: link.peerDc });
      return;
    }
    const store = this.opts.store;
    const applied = this.appliedIndex();
    if (!msg.snapshot && msg.index <= applied) return;
    const ops: StoreOp[] = [];
    if (msg.snapshot) {
      const incoming = new Set(msg.resources.map((r) => `${r.table}\u0000${r.key}`));
      for (const table of REPLICATED_TABLES) for (const e of store.list(table)) if (!incoming.has(`${table}\u0000${e.key}`)) ops.push({ op: 'delete', table, key: e.key });
    }
    let caChanged = false;
    for (const r of msg.resources) {
      if (!REPLICATED.has(r.table)) {
        this.log.warn('replicated change for a table that is not replicated; skipped', { table: r.table, key: r.key });
        continue;
      }
      if (r.table.startsWith('ca-')) caChanged = true;
      if (r.op === 'delete') {
        if (store.get(r.table, r.key)) ops.push({ op: 'delete', table: r.table, key: r.key });
        continue;
      }
      let value: unknown;
      try {
        value = JSON.parse(r.valueJson);
      } catch {
        this.log.warn('replicated value is not JSON; skipped', { table: r.table, key: r.key });
        continue;
      }
      ops.push({ op: 'put', table: r.table, key: r.key, value });
    }
    const state: AppliedState = { Index: msg.index, At: new Date().toISOString() };
    ops.push({ op: 'put', table: FED_STATE, key: 'applied', value: state });
    await store.commit(ops);
    if (link.peerIndex <= msg.index) this.behindSince = 0;
    if (caChanged) void this.opts.ca.tick();
    if (msg.snapshot) this.log.info('full resync applied', { from: link.peerDc, index: msg.index, resources: msg.resources.length });
  }

  async applyExport(link: PeerLink, msg: NonNullable<PeerMessage['export']>): Promise<void> {
    if (msg.datacenter !== link.peerDc) {
      this.log.warn('export refused: it names another datacenter than its sender', { peer: link.peerDc, names: msg.datacenter });
      return;
    }
    const upserts: ExportedService[] = [];
    for (const s of msg.upserts) {
      if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(s.name) || !/^[A-Za-z0-9*][A-Za-z0-9_.-]{0,62}$/.test(s.namespace || 'default')) {
        this.log.warn('exported service with an invalid name skipped', { peer: link.peerDc, name: s.name });
        continue;
      }
      upserts.push({ Name: s.name, Namespace: s.namespace || 'default', Instances: s.instances, Healthy: s.healthy, ConnectHealthy: s.connectHealthy, Tags: s.tags, Meta: s.meta ?? {} });
    }
    const gateways = msg.gateways.filter((g) => /^[^\s:/]+:\d{1,5}$/.test(g));
    const ops = exportOps(this.opts.store, link.peerDc, msg.index, msg.full, { gateways, upserts, deletes: msg.deletes }, new Date());
    if (this.isPrimary) {
      // Every DC learns every other DC's gateways from the primary's member list.
      const m = this.opts.store.get<Member>(FED_MEMBERS, link.peerDc);
      if (m && JSON.stringify(m.value.Gateways) !== JSON.stringify(gateways)) ops.push({ op: 'put', table: FED_MEMBERS, key: link.peerDc, value: { ...m.value, Gateways: gateways } });
    }
    await this.opts.store.commit(ops);
  }

  acked(link: PeerLink, stream: string, index: number): void {
    if (stream !== 'changes' || !this.isPrimary) return;
    let list = this.acks.get(link.peerDc);
    if (!list) this.acks.set(link.peerDc, (list = []));
    const last = list.length ? list[list.length - 1][0] : 0;
    if (index <= last) return;
    const now = Date.now();
    list.push([index, now]);
    if (list.length > 4096) list.splice(0, list.length - 4096);
    const committed = this.commitTime(index);
    if (committed !== undefined) this.applyLatency?.labels(link.peerDc).observe((now - committed) / 1000);
    for (const w of [...this.ackWaiters]) w();
  }

  heard(link: PeerLink): void {
    if (this.isPrimary || link.peerDc !== this.opts.primaryDc) return;
    if (this.appliedIndex() < link.peerIndex) this.behindSince ||= Date.now();
    else this.behindSince = 0;
  }

  closed(link: PeerLink, reason: string): void {
    this.closeWaiters.get(link)?.(reason);
    this.closeWaiters.delete(link);
    if (this.links.get(link.peerDc) === link) {
      this.links.delete(link.peerDc);
      this.lastErrors.set(link.peerDc, reason);
      if (!this.stopped) this.log.warn('peer link closed', { peer: link.peerDc, reason });
      this.emitChange();
    }
  }

  // ---- internals ----

  private joinState(): JoinState | undefined {
    return this.opts.store.get<JoinState>(FED_STATE, 'join')?.value;
  }

  private commitTime(index: number): number | undefined {
    const t = this.commitTimes;
    let lo = 0;
    let hi = t.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (t[mid][0] < index) lo = mid + 1;
      else hi = mid;
    }
    return t[lo]?.[1];
  }

  private onStoreChanges(changes: Change[]): void {
    if (this.isPrimary) {
      const repl = changes.filter((c) => REPLICATED.has(c.table));
      if (repl.length) {
        const index = repl[repl.length - 1].index;
        this.lastReplicatedIndex = index;
        this.commitTimes.push([index, Date.now()]);
        if (this.commitTimes.length > 8192) this.commitTimes.splice(0, this.commitTimes.length - 8192);
      }
      if (changes.some((c) => CATALOG_TABLES.has(c.table))) this.scheduleOwnGateways();
    }
    for (const c of changes) if (c.table === FED_MEMBERS && c.op === 'delete') this.onMemberRemoved(c.key);
    if (changes.some((c) => VIEW_TABLES.has(c.table))) this.emitChange();
    if (changes.some((c) => c.table === FED_MEMBERS || c.table === FED_PEERS)) this.reconcile();
  }

  private ownGatewaysTimer: NodeJS.Timeout | undefined;
  /** Primary: keeps its own gateway addresses in the member list, so secondaries learn a change. */
  private scheduleOwnGateways(): void {
    if (this.ownGatewaysTimer) return;
    this.ownGatewaysTimer = setTimeout(() => {
      this.ownGatewaysTimer = undefined;
      if (this.stopped) return;
      const m = this.opts.store.get<Member>(FED_MEMBERS, this.opts.dc);
      const wan = localGateways(this.opts.catalog).wan;
      if (!m || JSON.stringify(m.value.Gateways) === JSON.stringify(wan)) return;
      this.opts.store
        .commit([{ op: 'put', table: FED_MEMBERS, key: this.opts.dc, value: { ...m.value, Gateways: wan }, ifIndex: m.modifyIndex }])
        .catch((err) => this.log.warn('cannot record this datacenter\'s gateways', { error: err }));
    }, 100);
    this.ownGatewaysTimer.unref();
  }

  private emitChange(): void {
    if (this.changeTimer) return;
    this.changeTimer = setTimeout(() => {
      this.changeTimer = undefined;
      for (const l of this.changeListeners) {
        try {
          l();
        } catch (err) {
          this.log.warn('federation view listener failed', { error: err });
        }
      }
    }, 10);
    this.changeTimer.unref();
  }

  private async refreshServerCert(): Promise<void> {
    if (this.stopped) return;
    const c = await this.opts.ca.issueServerCert();
    this.serverCert = c;
    this.certs.set(this.opts.ca.bundle().roots, [c.certPem.trim(), ...c.chain.map((x) => x.trim())].join('\n') + '\n', c.keyPem);
    clearTimeout(this.renewTimer);
    const half = (c.notAfter.getTime() - Date.now()) / 2;
    this.renewTimer = setTimeout(() => void this.refreshServerCert().catch((err) => this.log.warn('cannot renew the server certificate', { error: err })), Math.max(1000, Math.min(half, 2 ** 31 - 1)));
    this.renewTimer.unref();
  }

  private makeClient(address: string, peerDc: string, tls?: { roots: string[]; trustDomain: string }): FederationClient {
    const td = tls?.trustDomain ?? this.opts.trustDomain();
    const sni = serverSni(td, peerDc);
    const creds = clientCredentials({
      roots: tls?.roots ?? this.opts.ca.bundle().roots,
      certChainPem: tls ? undefined : this.serverCert ? [this.serverCert.certPem.trim(), ...this.serverCert.chain.map((x) => x.trim())].join('\n') + '\n' : undefined,
      keyPem: tls ? undefined : this.serverCert?.keyPem,
      trustDomain: td,
      peerDc,
    });
    const Ctor = federationService();
    return new Ctor(address, creds, {
      'grpc.ssl_target_name_override': sni,
      'grpc.default_authority': sni,
      'grpc.max_receive_message_length': 64 << 20,
      'grpc.max_send_message_length': 64 << 20,
      'grpc.keepalive_time_ms': 15_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 2000,
    }) as unknown as FederationClient;
  }

  private shouldDial(peer: string): boolean {
    if (peer === this.opts.dc) return false;
    if (this.isPrimary) return false;
    if (peer === this.opts.primaryDc) return true;
    return this.opts.dc < peer;
  }

  /** Where to dial `peer`: this DC's gateways first, then the peer's, then (for the primary) the join addresses. */
  private dialAddresses(peer: string): string[] {
    // Until a gateway of the peer is known, a local gateway could only answer no_route.
    const remote = this.gateways(peer);
    const out = remote.length ? [...localGateways(this.opts.catalog).lan, ...remote] : [];
    if (peer === this.opts.primaryDc) {
      const j = this.joinState();
      if (j) out.push(...j.Gateways, ...j.Servers);
    }
    return [...new Set(out)];
  }

  private reconcile(): void {
    if (this.stopped) return;
    const current = new Set(this.datacenters());
    for (const [dc, d] of this.dialers) {
      if (current.has(dc)) continue;
      d.abort.abort();
      this.dialers.delete(dc);
    }
    for (const [dc, link] of this.links) if (!current.has(dc)) link.close(`${dc} is no longer a member of the federation`);
    for (const dc of current) {
      if (!this.shouldDial(dc) || this.dialers.has(dc)) continue;
      const abort = new AbortController();
      const d: Dialer = { peer: dc, abort, lastError: '', done: Promise.resolve() };
      d.done = this.dialLoop(d);
      this.dialers.set(dc, d);
    }
  }

  private async dialLoop(d: Dialer): Promise<void> {
    const backoff = new Backoff({ initialMs: 200, maxMs: 3000 });
    let attempt = 0;
    while (!d.abort.signal.aborted && !this.stopped) {
      const addrs = this.dialAddresses(d.peer);
      if (addrs.length === 0) {
        d.lastError = `no address known for datacenter ${d.peer}`;
        await sleep(1000, d.abort.signal);
        continue;
      }
      const addr = addrs[attempt++ % addrs.length];
      const client = this.makeClient(addr, d.peer);
      d.client = client;
      const call = client.peerStream();
      const closed = new Promise<string>((resolve) => {
        const link = new PeerLink(this, call, d.peer, 'out');
        this.closeWaiters.set(link, resolve);
        const old = this.links.get(d.peer);
        this.links.set(d.peer, link);
        old?.close('replaced by a new link');
        d.abort.signal.addEventListener('abort', () => link.close('server stopping'), { once: true });
      });
      const opened = Date.now();
      const why = await closed;
      d.lastError = `${addr}: ${why}`;
      d.client = undefined;
      client.close();
      if (Date.now() - opened > 10_000) backoff.reset();
      if (!d.abort.signal.aborted) await sleep(backoff.next(), d.abort.signal);
    }
  }

  private onPeerStream(call: grpc.ServerDuplexStream<PeerMessage, PeerMessage>): void {
    const peer = serverDcOf(callerCertificate(call), this.opts.trustDomain());
    if (!peer || peer === this.opts.dc) {
      call.emit('error', { code: grpc.status.UNAUTHENTICATED, details: `${ErrorCodes.PERMISSION_DENIED}: a peer stream needs the server certificate of another datacenter of this federation` });
      return;
    }
    if (!this.datacenters().includes(peer)) {
      call.emit('error', { code: grpc.status.PERMISSION_DENIED, details: `${ErrorCodes.PERMISSION_DENIED}: ${peer} is not a member of this federation (removed, or not yet known here)` });
      return;
    }
    const link = new PeerLink(this, call, peer, 'in');
    const old = this.links.get(peer);
    this.links.set(peer, link);
    old?.close('replaced by a new link');
    this.emitChange();
  }

  private handle<T>(cb: grpc.sendUnaryData<T>, call: { request: unknown }, type: string, work: () => Promise<T>): void {
    const malformed = call.request instanceof MalformedMessage ? call.request.reason : undefined;
    (malformed === undefined ? work() : Promise.reject(invalid([{ Field: type, Message: `not a valid ${type}: ${malformed}` }]))).then(
      (res) => cb(null, res),
      (err) => {
        if (!isIsthmusError(err)) this.log.error('federation call failed', { error: err });
        cb(toStatus(err) as grpc.ServiceError, null);
      },
    );
  }

  private async onJoin(req: JoinRequest): Promise<JoinResponse> {
    if (!this.isPrimary) throw new IsthmusError(ErrorCodes.PRIMARY_UNREACHABLE, `join at the primary (${this.opts.primaryDc}), not at ${this.opts.dc}`);
    if (typeof req.secret !== 'string' || typeof req.datacenter !== 'string' || !req.publicKeyPem?.includes('PUBLIC KEY')) {
      throw invalid([{ Field: 'JoinRequest', Message: 'needs secret, datacenter and public_key_pem' }]);
    }
    const hash = secretHash(req.secret);
    const entry = this.opts.store.get<StoredJoinToken>(FED_JOIN_TOKENS, hash);
    checkJoin(entry?.value, req.secret, hash, req.datacenter, Date.now());
    let signed: { certPem: string; rootId: string };
    try {
      signed = await this.opts.ca.signIntermediateFor(req.datacenter, req.publicKeyPem);
    } catch (err) {
      if (isIsthmusError(err)) throw err;
      throw invalid([{ Field: 'public_key_pem', Message: 'not a P-256 public key' }]);
    }
    const member = this.opts.store.get<Member>(FED_MEMBERS, req.datacenter);
    const now = new Date().toISOString();
    try {
      await this.opts.store.commit([
        { op: 'put', table: FED_JOIN_TOKENS, key: hash, value: { ...entry!.value, UsedAt: now }, ifIndex: entry!.modifyIndex },
        { op: 'put', table: FED_MEMBERS, key: req.datacenter, value: { Datacenter: req.datacenter, JoinedAt: now, Gateways: member?.value.Gateways ?? [] } satisfies Member },
      ]);
    } catch (err) {
      if (isIsthmusError(err, ErrorCodes.CONFLICT)) throw new IsthmusError(ErrorCodes.PERMISSION_DENIED, 'join refused: the token was used at the same moment by another join');
      throw err;
    }
    this.log.info('datacenter joined', { dc: req.datacenter });
    return {
      trustDomain: this.opts.trustDomain(),
      primaryDatacenter: this.opts.dc,
      intermediateCertPem: signed.certPem,
      rootId: signed.rootId,
      rootsJson: JSON.stringify(this.opts.ca.roots()),
      index: this.opts.store.index(),
    };
  }

  private callerDc(call: object): string {
    const dc = serverDcOf(callerCertificate(call), this.opts.trustDomain());
    // A server never calls its own listener: its own identity coming in is someone else's doing.
    if (!dc || dc === this.opts.dc || !this.opts.store.get(FED_MEMBERS, dc)) throw new IsthmusError(ErrorCodes.PERMISSION_DENIED, 'this call needs the server certificate of another member datacenter');
    return dc;
  }

  private async onSign(call: grpc.ServerUnaryCall<SignRequest, SignResponse>): Promise<SignResponse> {
    const dc = this.callerDc(call);
    if (call.request.datacenter !== dc) throw new IsthmusError(ErrorCodes.PERMISSION_DENIED, `a server of ${dc} cannot have an intermediate signed for ${call.request.datacenter}`);
    return this.opts.ca.signIntermediateFor(dc, call.request.publicKeyPem);
  }

  private async onQuery(call: grpc.ServerUnaryCall<ForwardRequest, ForwardResponse>): Promise<ForwardResponse> {
    const dc = this.callerDc(call);
    const r = call.request;
    if (r.method !== 'GET' || !/^\/v1\/flows(\?|$)/.test(r.path)) throw invalid([{ Field: 'QueryRequest', Message: 'only GET /v1/flows is answered for another datacenter' }]);
    checkForwarded(r);
    if (!this.forwardHandler) throw new IsthmusError(ErrorCodes.UNAVAILABLE, 'the server is starting');
    const res = await this.forwardHandler({ method: 'GET', path: r.path, body: '', token: r.token, originDc: dc });
    return { ...res, index: this.opts.store.index() };
  }

  private async onForward(call: grpc.ServerUnaryCall<ForwardRequest, ForwardResponse>): Promise<ForwardResponse> {
    const dc = this.callerDc(call);
    if (!this.isPrimary || !this.forwardHandler) throw new IsthmusError(ErrorCodes.PRIMARY_UNREACHABLE, `${this.opts.dc} is not the primary`);
    const r = call.request;
    if (!/^(PUT|POST|DELETE|GET)$/.test(r.method) || !r.path.startsWith('/v1/')) throw invalid([{ Field: 'ForwardRequest', Message: 'only /v1/ writes are forwarded' }]);
    checkForwarded(r);
    const res = await this.forwardHandler({ method: r.method, path: r.path, body: r.body, token: r.token, originDc: dc });
    return { ...res, index: this.lastReplicatedIndex };
  }
}

/** Largest forwarded body: what the HTTP API takes. */
const MAX_FORWARDED_BODY = 1 << 20;

/**
 * A forwarded request is replayed against this server's API as an HTTP request: its path and token
 * become a URL and a header, so each must be one (no control characters, no spaces, bounded).
 */
function checkForwarded(r: ForwardRequest): void {
  const v = [];
  if (typeof r.path !== 'string' || r.path.length > 8192 || !/^\/v1\/[\x21-\x7e]*$/.test(r.path) || /(^|\/)\.\.?(\/|\?|$)/.test(r.path.split('?')[0])) {
    v.push({ Field: 'ForwardRequest.path', Message: 'must be an API path under /v1/ (printable ASCII, no spaces, no dot segments, at most 8192 characters)' });
  }
  if (typeof r.token !== 'string' || r.token.length > 512 || !/^[\x21-\x7e]*$/.test(r.token)) v.push({ Field: 'ForwardRequest.token', Message: 'must be at most 512 printable characters' });
  if (typeof r.body !== 'string' || Buffer.byteLength(r.body) > MAX_FORWARDED_BODY) v.push({ Field: 'ForwardRequest.body', Message: `must be at most ${MAX_FORWARDED_BODY} bytes` });
  if (v.length) throw invalid(v);
}

function toResource(c: Change) {
  return { table: c.table, key: c.key, op: c.op, valueJson: c.op === 'put' ? JSON.stringify(c.entry?.value ?? null) : '', index: c.index };
}
