// Who is in the federation and how to reach them: the member list the primary keeps (and every DC
// replicates), other DCs' gateways and exported services as held here, the removal of a member, and
// (primary, leader only) keeping this DC's own gateway addresses in its member entry.
import { auditOp, type Actor } from '../core/audit.js';
import { ErrorCodes, IsthmusError, invalid } from '../core/errors.js';
import type { Component } from '../core/lifecycle.js';
import type { Change, StoreOp } from '../store/index.js';
import { localGateways } from './catalog-export.js';
import type { FederationContext } from './context.js';
import { FED_MEMBERS, FED_PEERS, FED_SERVICES, FED_STATE, type ExportedService, type JoinState, type Member, type PeerExport } from './tables.js';

export class Membership {
  constructor(private readonly ctx: FederationContext) {}

  datacenters(): string[] {
    const { store } = this.ctx;
    const s = new Set([this.ctx.dc, this.ctx.primaryDc]);
    const members = store.list(FED_MEMBERS);
    for (const e of members) s.add(e.key);
    // Before the member list has come from the primary, the DCs heard from; after, members only
    // (an export still on its way from a DC just removed does not bring it back).
    if (members.length === 0) for (const e of store.list(FED_PEERS)) s.add(e.key);
    return [...s].sort();
  }

  isMember(dc: string): boolean {
    return this.ctx.store.get(FED_MEMBERS, dc) !== undefined;
  }

  /** How this secondary joined (absent in the primary and before the join). */
  joinState(): JoinState | undefined {
    return this.ctx.store.get<JoinState>(FED_STATE, 'join')?.value;
  }

  gateways(dc: string): string[] {
    const { store } = this.ctx;
    const direct = store.get<PeerExport>(FED_PEERS, dc)?.value.Gateways ?? [];
    if (direct.length) return direct;
    const member = store.get<Member>(FED_MEMBERS, dc)?.value.Gateways ?? [];
    if (member.length) return member;
    if (dc === this.ctx.primaryDc) return this.joinState()?.Gateways ?? this.ctx.joinToken?.gateways ?? [];
    return [];
  }

  remoteHealthy(dc: string, namespace: string, service: string): number | undefined {
    const s = this.ctx.store.get<ExportedService>(FED_SERVICES, `${dc}/${namespace}/${service}`)?.value;
    if (s) return s.ConnectHealthy;
    return this.ctx.store.get(FED_PEERS, dc) ? 0 : undefined;
  }

  /** Healthy sidecars of a subset (`""`: the whole service) of `service` in another DC; undefined when not known here. */
  remoteSubsetHealthy(dc: string, namespace: string, service: string, subset: string): number | undefined {
    const s = this.ctx.store.get<ExportedService>(FED_SERVICES, `${dc}/${namespace}/${service}`)?.value;
    if (!s) return this.ctx.store.get(FED_PEERS, dc) ? 0 : undefined;
    if (s.SubsetHealthy) return s.SubsetHealthy[subset];
    return subset ? undefined : s.ConnectHealthy;
  }

  /** Other DCs' exported services (for `?dc=` reads). */
  exportedServices(dc: string): ExportedService[] {
    return this.ctx.store.list<ExportedService>(FED_SERVICES, `${dc}/`).map((e) => e.value);
  }

  exportIndex(): number {
    return this.ctx.store.tableIndex(FED_SERVICES);
  }

  /** When the export of `dc` was last received here (ms since the epoch), if ever. */
  exportReceivedAt(dc: string): number | undefined {
    const received = this.ctx.store.get<PeerExport>(FED_PEERS, dc)?.value.ReceivedAt;
    return received ? Date.parse(received) : undefined;
  }

  peerExport(dc: string): PeerExport | undefined {
    return this.ctx.store.get<PeerExport>(FED_PEERS, dc)?.value;
  }

  /** Where to dial `peer`: this DC's gateways first, then the peer's, then (for the primary) the join addresses. */
  dialAddresses(peer: string): string[] {
    // Until a gateway of the peer is known, a local gateway could only answer no_route.
    const remote = this.gateways(peer);
    const out = remote.length ? [...localGateways(this.ctx.catalog).lan, ...remote] : [];
    if (peer === this.ctx.primaryDc) {
      const j = this.joinState();
      if (j) out.push(...j.Gateways, ...j.Servers);
    }
    return [...new Set(out)];
  }

  /** Primary: its own member entry, written once at first start. */
  async ensureSelf(): Promise<void> {
    const { store, dc } = this.ctx;
    if (!this.ctx.isPrimary || store.get(FED_MEMBERS, dc)) return;
    const self: Member = { Datacenter: dc, JoinedAt: new Date().toISOString(), Gateways: localGateways(this.ctx.catalog).wan };
    await store.commit([{ op: 'put', table: FED_MEMBERS, key: dc, value: self }]).catch(() => undefined);
  }

  /**
   * Primary: takes `dc` out of the federation. Its member entry goes (and with it, in every DC this
   * one included, its exported catalog and gateways: see onChanges), links to it close, receipts
   * stop waiting for it, and its server identity is refused from then on: it must join again with a
   * new token to come back.
   */
  async removeMember(dc: string, actor: Actor): Promise<{ Datacenter: string; ExportedServices: number }> {
    const { store } = this.ctx;
    if (!this.ctx.isPrimary) throw new IsthmusError(ErrorCodes.PRIMARY_UNREACHABLE, `datacenters are removed at the primary (${this.ctx.primaryDc})`);
    if (dc === this.ctx.dc) throw invalid([{ Field: 'dc', Message: `${dc} is the primary itself and cannot be removed` }]);
    const member = store.get<Member>(FED_MEMBERS, dc);
    if (!member) throw new IsthmusError(ErrorCodes.NOT_FOUND, `${dc} is not a member of this federation (members: ${this.datacenters().join(', ')})`);
    const services = store.list(FED_SERVICES, `${dc}/`).length;
    await store.commit([
      { op: 'delete', table: FED_MEMBERS, key: dc, ifIndex: member.modifyIndex },
      auditOp(actor, { Kind: 'federation', Action: 'delete', Subject: `datacenter ${dc}`, Before: member.value }),
    ]);
    this.ctx.log.warn('datacenter removed from the federation', { dc, exportedServices: services });
    return { Datacenter: dc, ExportedServices: services };
  }

  /** True when `changes` may change the member list or what is known of other DCs. */
  static touchesMembers(changes: Change[]): boolean {
    return changes.some((c) => c.table === FED_MEMBERS || c.table === FED_PEERS);
  }

  /** True when `changes` may change what the data plane's view of the other DCs says. */
  static touchesView(changes: Change[]): boolean {
    return changes.some((c) => c.table === FED_MEMBERS || c.table === FED_PEERS || c.table === FED_SERVICES || c.table === FED_STATE);
  }

  /** Every store change passes here: a member removal, made here (primary) or replicated here, is acted on. */
  onChanges(changes: Change[]): void {
    for (const c of changes) if (c.table === FED_MEMBERS && c.op === 'delete') this.onMemberRemoved(c.key);
  }

  /** Forget what this DC holds of a removed member (its export header and services), and say so when it is this DC that was removed. */
  private onMemberRemoved(dc: string): void {
    const { store } = this.ctx;
    if (dc === this.ctx.dc) {
      this.ctx.log.error('this datacenter was removed from the federation by the primary; join again with a new token to come back', {
        primary: this.ctx.primaryDc,
      });
      return;
    }
    const ops: StoreOp[] = store.list(FED_SERVICES, `${dc}/`).map((e) => ({ op: 'delete', table: FED_SERVICES, key: e.key }));
    if (store.get(FED_PEERS, dc)) ops.push({ op: 'delete', table: FED_PEERS, key: dc });
    if (ops.length) store.commit(ops).catch((err) => this.ctx.log.warn("cannot forget a removed datacenter's catalog", { dc, error: err }));
  }
}

/** Primary, leader only: keeps this DC's own gateway addresses in its member entry, so secondaries learn a change. */
export class OwnGateways implements Component {
  readonly name = 'federation-own-gateways';
  readonly leaderOnly = true;
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private running = false;

  constructor(private readonly ctx: FederationContext) {}

  async start(): Promise<void> {
    if (!this.ctx.isPrimary) return;
    this.running = true;
    this.unsubscribe = this.ctx.catalog.onChange(() => this.schedule());
    this.schedule();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.unsubscribe?.();
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.running || this.ctx.stopped) return;
      const { store, dc } = this.ctx;
      const m = store.get<Member>(FED_MEMBERS, dc);
      const wan = localGateways(this.ctx.catalog).wan;
      if (!m || JSON.stringify(m.value.Gateways) === JSON.stringify(wan)) return;
      store
        .commit([{ op: 'put', table: FED_MEMBERS, key: dc, value: { ...m.value, Gateways: wan }, ifIndex: m.modifyIndex }])
        .catch((err) => this.ctx.log.warn("cannot record this datacenter's gateways", { dc, error: err }));
    }, 100);
    this.timer.unref();
  }
}
