// The catalog's writes: agent and catalog registrations of nodes, services (with a nested sidecar
// and its port) and checks, each turned into one store commit, and check results.
import { invalid, notFound, type Violation } from '../core/errors.js';
import { formatHostPort } from '../core/names.js';
import type { Store, StoreOp } from '../store/index.js';
import type { CatalogIndexes } from './catalog-indexes.js';
import { aliasResult, toCheck, toRecord } from './catalog-records.js';
import { isMaintenanceCheck, nodeMaintenanceCheck, serviceMaintenanceCheck, serviceMaintenanceCheckId, NODE_MAINTENANCE_CHECK_ID } from './maintenance.js';
import {
  CHECKS,
  NODES,
  SERVICES,
  type CheckInput,
  type CheckRecord,
  type HealthStatus,
  type NodeRecord,
  type ServiceInput,
  type ServiceRecord,
} from './model.js';

const SIDECAR_PORT_MIN = 21000;
const SIDECAR_PORT_MAX = 21255;
/** Consul's interval for a sidecar's automatic listening check (it has no setting for it). */
export const SIDECAR_LISTENING_INTERVAL_MS = 10_000;

/**
 * The checks Consul gives a nested sidecar registered without checks of its own: a TCP check of the
 * proxy's public listener, and an alias of the service it fronts (so a failing app takes its
 * sidecar out of every endpoint set). The TCP check dials the sidecar's address, else the local
 * service address, as Consul's sidecarDefaultChecks does.
 */
function sidecarDefaultChecks(sidecar: ServiceRecord, parentId: string): CheckInput[] {
  const host = sidecar.Address || sidecar.Proxy?.LocalServiceAddress || '127.0.0.1';
  return [
    { Name: 'Connect Sidecar Listening', TCP: formatHostPort({ host, port: sidecar.Port }), Interval: SIDECAR_LISTENING_INTERVAL_MS },
    { Name: `Connect Sidecar Aliasing ${parentId}`, AliasService: parentId },
  ] as CheckInput[];
}

export interface CatalogWritesOptions {
  store: Store;
  dc: string;
  nodeName: string;
  nodeAddress: string;
  indexes: CatalogIndexes;
  /** The catalog's reads that a write checks its input against. */
  reads: { node(name: string): NodeRecord | undefined; agentService(id: string): ServiceRecord | undefined };
  /** A TTL check was updated (the catalog passes it on to the check runner). */
  onTtlUpdate: (checkKey: string) => void;
}

export class CatalogWrites {
  constructor(private readonly opts: CatalogWritesOptions) {}

  async ensureNode(node: string, address: string, meta: Record<string, string> = {}, tagged: Record<string, string> = {}): Promise<void> {
    const ops = this.nodeOps(node, address, meta, tagged);
    if (ops.length) await this.opts.store.commit(ops);
  }

  private nodeOps(node: string, address: string, meta: Record<string, string> = {}, tagged: Record<string, string> = {}): StoreOp[] {
    const existing = this.opts.store.get<NodeRecord>(NODES, node)?.value;
    const rec: NodeRecord = { Node: node, Address: address, Datacenter: this.opts.dc, Meta: meta, TaggedAddresses: tagged };
    if (existing && JSON.stringify(existing) === JSON.stringify(rec)) return [];
    return [{ op: 'put', table: NODES, key: node, value: rec }];
  }

  /** Agent registration on this server's node; a nested sidecar is registered in the same commit. */
  async registerService(def: ServiceInput, opts: { replaceExistingChecks?: boolean } = {}): Promise<ServiceRecord> {
    const node = this.opts.nodeName;
    const ops: StoreOp[] = [...this.nodeOps(node, this.opts.nodeAddress)];
    const id = def.ID ?? def.Name;
    const key = `${node}/${id}`;
    const previous = this.opts.store.get<ServiceRecord>(SERVICES, key)?.value;
    const record = toRecord(node, id, def, this.opts.nodeAddress);
    let sidecar: ServiceRecord | undefined;
    if (def.Connect?.SidecarService) {
      const sc = def.Connect.SidecarService;
      const scId = sc.ID ?? `${id}-sidecar-proxy`;
      const port = sc.Port ?? this.allocateSidecarPort(`${node}/${scId}`);
      sidecar = toRecord(
        node,
        scId,
        {
          ...sc,
          Name: sc.Name ?? `${def.Name}-sidecar-proxy`,
          Kind: 'connect-proxy',
          Port: port,
          Address: sc.Address ?? def.Address,
          // As Consul: a sidecar without Tags or Meta of its own carries its service's, so filters
          // and health queries over them find the sidecar with its service.
          Tags: sc.Tags ?? def.Tags,
          Meta: sc.Meta ?? def.Meta,
          Proxy: {
            ...sc.Proxy,
            DestinationServiceName: def.Name,
            DestinationServiceID: id,
            LocalServiceAddress: sc.Proxy?.LocalServiceAddress ?? '127.0.0.1',
            LocalServicePort: sc.Proxy?.LocalServicePort ?? def.Port,
          },
        } as ServiceInput,
        this.opts.nodeAddress,
      );
      record.SidecarID = scId;
    }
    ops.push({ op: 'put', table: SERVICES, key, value: record });
    ops.push(
      ...this.checkOps(
        node,
        record,
        [def.Check, ...(def.Checks ?? [])].filter(Boolean) as CheckInput[],
        def.Checks !== undefined && def.Check === undefined,
        opts.replaceExistingChecks ?? false,
      ),
    );
    if (previous?.SidecarID && previous.SidecarID !== sidecar?.ID) ops.push(...this.removeServiceOps(node, previous.SidecarID));
    if (sidecar) {
      ops.push({ op: 'put', table: SERVICES, key: `${node}/${sidecar.ID}`, value: sidecar });
      const scDef = def.Connect!.SidecarService!;
      const own = [scDef.Check, ...(scDef.Checks ?? [])].filter(Boolean) as CheckInput[];
      const checks = own.length > 0 ? own : sidecarDefaultChecks(sidecar, id);
      ops.push(...this.checkOps(node, sidecar, checks, own.length === 0 || (scDef.Checks !== undefined && scDef.Check === undefined), true));
    }
    this.settleAliases(ops);
    await this.opts.store.commit(ops);
    return record;
  }

  async deregisterService(id: string): Promise<void> {
    const node = this.opts.nodeName;
    const rec = this.opts.store.get<ServiceRecord>(SERVICES, `${node}/${id}`);
    if (!rec) throw notFound(`Unknown service ID "${id}". Ensure that the service ID is passed, not the service name.`);
    const ops = this.removeServiceOps(node, id);
    if (rec.value.SidecarID) ops.push(...this.removeServiceOps(node, rec.value.SidecarID));
    await this.opts.store.commit(ops);
  }

  /** PUT /v1/catalog/register: a node, optionally a service and checks, as Terraform's provider sends. */
  async catalogRegister(body: {
    Node: string;
    Address: string;
    NodeMeta?: Record<string, string>;
    TaggedAddresses?: Record<string, string>;
    Service?: Partial<ServiceInput> & { Service?: string };
    Check?: CheckInput;
    Checks?: CheckInput[];
  }): Promise<void> {
    const ops: StoreOp[] = [...this.nodeOps(body.Node, body.Address, body.NodeMeta ?? {}, body.TaggedAddresses ?? {})];
    let svc: ServiceRecord | undefined;
    if (body.Service) {
      const name = (body.Service.Service ?? body.Service.Name)!;
      const id = body.Service.ID ?? name;
      svc = toRecord(body.Node, id, { ...body.Service, Name: name } as ServiceInput, body.Address);
      ops.push({ op: 'put', table: SERVICES, key: `${body.Node}/${id}`, value: svc });
    }
    for (const [n, c] of [body.Check, ...(body.Checks ?? [])].filter(Boolean).entries()) {
      const chk = c as CheckInput & { ServiceID?: string };
      const owner = chk.ServiceID
        ? (this.opts.store.get<ServiceRecord>(SERVICES, `${body.Node}/${chk.ServiceID}`)?.value ?? (svc?.ID === chk.ServiceID ? svc : undefined))
        : undefined;
      const checkId = chk.CheckID ?? chk.ID ?? chk.Name ?? `check-${n}`;
      ops.push({ op: 'put', table: CHECKS, key: `${body.Node}/${checkId}`, value: toCheck(body.Node, checkId, chk, owner) });
    }
    if (ops.length === 0) return;
    this.settleAliases(ops);
    await this.opts.store.commit(ops);
  }

  async catalogDeregister(body: { Node: string; ServiceID?: string; CheckID?: string }): Promise<void> {
    if (!this.opts.reads.node(body.Node)) throw notFound(`node ${body.Node} not found`);
    let ops: StoreOp[];
    if (body.ServiceID) ops = this.removeServiceOps(body.Node, body.ServiceID);
    else if (body.CheckID) ops = [{ op: 'delete', table: CHECKS, key: `${body.Node}/${body.CheckID}` }];
    else {
      ops = [{ op: 'delete', table: NODES, key: body.Node }];
      for (const e of this.opts.store.list(SERVICES, `${body.Node}/`)) ops.push({ op: 'delete', table: SERVICES, key: e.key });
      for (const e of this.opts.store.list(CHECKS, `${body.Node}/`)) ops.push({ op: 'delete', table: CHECKS, key: e.key });
    }
    await this.opts.store.commit(ops);
  }

  /** A check registered on its own (PUT /v1/agent/check/register). */
  async registerCheck(def: CheckInput): Promise<CheckRecord> {
    const node = this.opts.nodeName;
    const id = def.CheckID ?? def.ID ?? def.Name;
    if (!id) throw invalid([{ Field: 'Name', Message: 'is required when CheckID is not given' }]);
    let owner: ServiceRecord | undefined;
    if (def.ServiceID) {
      owner = this.opts.reads.agentService(def.ServiceID);
      if (!owner) throw notFound(`ServiceID "${def.ServiceID}" does not exist`);
    }
    const rec = toCheck(node, id, def, owner);
    const ops: StoreOp[] = [{ op: 'put', table: CHECKS, key: `${node}/${id}`, value: rec }];
    this.settleAliases(ops);
    await this.opts.store.commit(ops);
    return rec;
  }

  async deregisterCheck(id: string): Promise<void> {
    const key = `${this.opts.nodeName}/${id}`;
    if (!this.opts.store.get(CHECKS, key)) throw notFound(`Unknown check ID "${id}"`);
    await this.opts.store.commit([{ op: 'delete', table: CHECKS, key }]);
  }

  /**
   * Puts one of this node's instances in or out of maintenance, as Consul's agent does: enabling
   * twice keeps the first reason, disabling what is not in maintenance changes nothing.
   */
  async serviceMaintenance(id: string, enable: boolean, reason: string): Promise<void> {
    const node = this.opts.nodeName;
    const svc = this.opts.reads.agentService(id);
    if (!svc) throw notFound(`No service registered with ID "${id}"`);
    await this.toggleMaintenance(`${node}/${serviceMaintenanceCheckId(id)}`, enable ? serviceMaintenanceCheck(node, svc, reason) : undefined);
  }

  /** This server's node in or out of maintenance: every instance on it leaves passing-only answers. */
  async nodeMaintenance(enable: boolean, reason: string): Promise<void> {
    const node = this.opts.nodeName;
    await this.toggleMaintenance(`${node}/${NODE_MAINTENANCE_CHECK_ID}`, enable ? nodeMaintenanceCheck(node, reason) : undefined);
  }

  private async toggleMaintenance(key: string, check: CheckRecord | undefined): Promise<void> {
    const present = this.opts.store.get(CHECKS, key) !== undefined;
    if (check && !present) await this.opts.store.commit([{ op: 'put', table: CHECKS, key, value: check }]);
    else if (!check && present) await this.opts.store.commit([{ op: 'delete', table: CHECKS, key }]);
  }

  /** TTL updates (pass/warn/fail/update): writes only when status or output changes. */
  async updateTtl(id: string, status: HealthStatus, output: string): Promise<void> {
    const key = `${this.opts.nodeName}/${id}`;
    const e = this.opts.store.get<CheckRecord>(CHECKS, key);
    // Consul's wording: clients match on it to decide to register again.
    if (!e) throw notFound(`CheckID "${id}" does not have associated TTL: unknown check ID (pass the check ID, not the check name)`);
    if (e.value.Type !== 'ttl') throw invalid([{ Field: 'checkID', Message: `CheckID "${id}" does not have associated TTL` }]);
    this.opts.onTtlUpdate(key);
    if (e.value.Status === status && e.value.Output === output) return;
    await this.opts.store.commit([{ op: 'put', table: CHECKS, key, value: { ...e.value, Status: status, Output: output } }]);
  }

  /** Sets a check's result (the runner); no write when nothing changed. Returns whether it wrote. */
  async setCheckResult(key: string, status: HealthStatus, output: string): Promise<boolean> {
    const e = this.opts.store.get<CheckRecord>(CHECKS, key);
    if (!e || (e.value.Status === status && e.value.Output === output)) return false;
    await this.opts.store.commit([{ op: 'put', table: CHECKS, key, value: { ...e.value, Status: status, Output: output }, ifIndex: e.modifyIndex }]);
    return true;
  }

  private checkOps(node: string, svc: ServiceRecord, checks: CheckInput[], numbered: boolean, replace: boolean): StoreOp[] {
    const ops: StoreOp[] = [];
    const keep = new Set<string>();
    checks.forEach((c, n) => {
      const id = c.CheckID ?? c.ID ?? (checks.length === 1 && !numbered ? `service:${svc.ID}` : `service:${svc.ID}:${n + 1}`);
      const key = `${node}/${id}`;
      keep.add(key);
      const existing = this.opts.store.get<CheckRecord>(CHECKS, key)?.value;
      const rec = toCheck(node, id, c, svc);
      // Re-registering keeps a check's current state unless a new initial Status is given.
      if (existing && c.Status === undefined) {
        rec.Status = existing.Status;
        rec.Output = existing.Output;
      }
      ops.push({ op: 'put', table: CHECKS, key, value: rec });
    });
    if (replace || checks.length > 0) {
      for (const k of this.opts.indexes.checksByService.get(`${node}/${svc.ID}`) ?? []) {
        // Maintenance is lifted only by disabling it, never by registering the service again.
        if (!keep.has(k) && replace && !isMaintenanceCheck(k.slice(node.length + 1))) ops.push({ op: 'delete', table: CHECKS, key: k });
      }
    }
    return ops;
  }

  /**
   * Alias checks written by a commit start from what their target looks like once the commit is
   * applied (a sidecar and its service's checks land together), so a new sidecar is not shown
   * critical for the moment until the runner first looks; the runner keeps them current after.
   */
  private settleAliases(ops: StoreOp[]): void {
    const store = this.opts.store;
    const pendingChecks = new Map<string, CheckRecord | undefined>();
    const pendingRows = new Map<string, boolean>();
    for (const op of ops) {
      if (op.table === CHECKS) pendingChecks.set(op.key, op.op === 'put' ? (op.value as CheckRecord) : undefined);
      else pendingRows.set(`${op.table}\u0000${op.key}`, op.op === 'put');
    }
    const present = (table: string, key: string) => pendingRows.get(`${table}\u0000${key}`) ?? store.get(table, key) !== undefined;
    for (const op of ops) {
      const rec = op.table === CHECKS && op.op === 'put' ? (op.value as CheckRecord) : undefined;
      if (rec?.Type !== 'alias') continue;
      const node = rec.Definition.AliasNode || rec.Node;
      const serviceId = rec.Definition.AliasService ?? '';
      const checks: CheckRecord[] = [];
      for (const owner of new Set([`${node}/${serviceId}`, `${node}/`])) {
        for (const k of this.opts.indexes.checksByService.get(owner) ?? []) {
          if (pendingChecks.has(k)) continue;
          const c = store.get<CheckRecord>(CHECKS, k)?.value;
          if (c) checks.push(c);
        }
      }
      for (const c of pendingChecks.values()) if (c && c.Node === node) checks.push(c);
      const exists = { service: serviceId !== '' && present(SERVICES, `${node}/${serviceId}`), node: present(NODES, node) };
      [rec.Status, rec.Output] = aliasResult(rec, checks, exists);
    }
  }

  private removeServiceOps(node: string, id: string): StoreOp[] {
    const ops: StoreOp[] = [{ op: 'delete', table: SERVICES, key: `${node}/${id}` }];
    for (const k of this.opts.indexes.checksByService.get(`${node}/${id}`) ?? []) ops.push({ op: 'delete', table: CHECKS, key: k });
    return ops;
  }

  private allocateSidecarPort(selfKey: string): number {
    const existing = this.opts.store.get<ServiceRecord>(SERVICES, selfKey)?.value.Port;
    if (existing) return existing;
    const used = this.opts.indexes.proxyPorts.get(this.opts.nodeName) ?? new Map<number, number>();
    for (let p = SIDECAR_PORT_MIN; p <= SIDECAR_PORT_MAX; p++) if (!used.has(p)) return p;
    throw invalid([
      { Field: 'Connect.SidecarService.Port', Message: `no free sidecar port in ${SIDECAR_PORT_MIN}-${SIDECAR_PORT_MAX}; give one explicitly` },
    ] as Violation[]);
  }
}
