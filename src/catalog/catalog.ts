// The catalog of one DC: nodes, service instances and their checks in the Store, with in-memory
// indexes by service name (rebuilt from store changes) so reads never scan every instance.
import { invalid, notFound, type Violation } from '../core/errors.js';
import type { Component } from '../core/lifecycle.js';
import { TableWatch } from '../core/table-watch.js';
import type { Store, StoreOp } from '../store/index.js';
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

export interface CatalogOptions {
  store: Store;
  dc: string;
  /** This server's node name: agent registrations land on it. */
  nodeName: string;
  nodeAddress: string;
}

export interface HealthEntry {
  node: NodeRecord;
  service: ServiceRecord;
  checks: CheckRecord[];
  serviceIndex: { create: number; modify: number };
}

/** The parts of the catalog a blocking read or a push can follow. */
export type CatalogPart = 'services' | 'checks' | 'nodes';
const PART_TABLE: Record<CatalogPart, string> = { services: SERVICES, checks: CHECKS, nodes: NODES };

const SIDECAR_PORT_MIN = 21000;
const SIDECAR_PORT_MAX = 21255;
const RANK: Record<HealthStatus, number> = { passing: 0, warning: 1, critical: 2 };

export function aggregate(checks: CheckRecord[]): HealthStatus {
  let worst: HealthStatus = 'passing';
  for (const c of checks) if (RANK[c.Status] > RANK[worst]) worst = c.Status;
  return worst;
}

export class Catalog implements Component {
  readonly name = 'catalog';
  private readonly byName = new Map<string, Set<string>>();
  private readonly checksByService = new Map<string, Set<string>>();
  private readonly nameOfKey = new Map<string, string>();
  /** Sidecar proxies by the service they front: "connect-capable" reads without a scan. */
  private readonly proxiesByDestination = new Map<string, Set<string>>();
  private readonly destinationOfKey = new Map<string, string>();
  /** Ports taken by connect proxies, per node: sidecar port allocation without a scan. */
  private readonly proxyPorts = new Map<string, Map<number, number>>();
  private readonly proxyPortOfKey = new Map<string, number>();
  private readonly ownerOfCheck = new Map<string, string>();
  private unsubscribe: (() => void) | undefined;
  /** Called when a TTL check is updated, so the runner can reset its deadline without a store write. */
  onTtlUpdate: ((checkKey: string) => void) | undefined;

  private readonly whole: TableWatch;

  constructor(private readonly opts: CatalogOptions) {
    this.whole = new TableWatch(opts.store, Object.values(PART_TABLE));
  }

  get nodeName(): string {
    return this.opts.nodeName;
  }

  get dc(): string {
    return this.opts.dc;
  }

  async start(): Promise<void> {
    this.rebuild();
    this.unsubscribe = this.opts.store.subscribe((changes) => {
      for (const ch of changes) {
        if (ch.table === SERVICES) {
          this.unindexService(ch.key);
          if (ch.op === 'put') this.indexService(ch.key, ch.entry!.value as ServiceRecord);
        } else if (ch.table === CHECKS) {
          this.unindexCheck(ch.key);
          if (ch.op === 'put') this.indexCheck(ch.key, ch.entry!.value as CheckRecord);
        }
      }
    });
    await this.ensureNode(this.opts.nodeName, this.opts.nodeAddress);
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
  }

  private rebuild(): void {
    this.byName.clear();
    this.checksByService.clear();
    this.nameOfKey.clear();
    this.proxiesByDestination.clear();
    this.destinationOfKey.clear();
    this.proxyPorts.clear();
    this.proxyPortOfKey.clear();
    this.ownerOfCheck.clear();
    for (const e of this.opts.store.list<ServiceRecord>(SERVICES)) this.indexService(e.key, e.value);
    for (const e of this.opts.store.list<CheckRecord>(CHECKS)) this.indexCheck(e.key, e.value);
  }

  private indexService(key: string, s: ServiceRecord): void {
    let set = this.byName.get(s.Service);
    if (!set) this.byName.set(s.Service, (set = new Set()));
    set.add(key);
    this.nameOfKey.set(key, s.Service);
    if (s.Kind !== 'connect-proxy') return;
    const dest = s.Proxy?.DestinationServiceName;
    if (dest) {
      let proxies = this.proxiesByDestination.get(dest);
      if (!proxies) this.proxiesByDestination.set(dest, (proxies = new Set()));
      proxies.add(key);
      this.destinationOfKey.set(key, dest);
    }
    let ports = this.proxyPorts.get(s.Node);
    if (!ports) this.proxyPorts.set(s.Node, (ports = new Map()));
    ports.set(s.Port, (ports.get(s.Port) ?? 0) + 1);
    this.proxyPortOfKey.set(key, s.Port);
  }

  private unindexService(key: string): void {
    const name = this.nameOfKey.get(key);
    if (name === undefined) return;
    this.nameOfKey.delete(key);
    const set = this.byName.get(name);
    if (set?.delete(key) && set.size === 0) this.byName.delete(name);
    const dest = this.destinationOfKey.get(key);
    if (dest !== undefined) {
      this.destinationOfKey.delete(key);
      const proxies = this.proxiesByDestination.get(dest);
      if (proxies?.delete(key) && proxies.size === 0) this.proxiesByDestination.delete(dest);
    }
    const port = this.proxyPortOfKey.get(key);
    if (port !== undefined) {
      this.proxyPortOfKey.delete(key);
      const node = key.slice(0, key.indexOf('/'));
      const ports = this.proxyPorts.get(node);
      const n = (ports?.get(port) ?? 1) - 1;
      if (n > 0) ports!.set(port, n);
      else ports?.delete(port);
    }
  }

  private checkOwner(c: CheckRecord): string {
    return `${c.Node}/${c.ServiceID}`;
  }

  private indexCheck(key: string, c: CheckRecord): void {
    const owner = this.checkOwner(c);
    let set = this.checksByService.get(owner);
    if (!set) this.checksByService.set(owner, (set = new Set()));
    set.add(key);
    this.ownerOfCheck.set(key, owner);
  }

  private unindexCheck(key: string): void {
    const owner = this.ownerOfCheck.get(key);
    if (owner === undefined) return;
    this.ownerOfCheck.delete(key);
    const set = this.checksByService.get(owner);
    if (set?.delete(key) && set.size === 0) this.checksByService.delete(owner);
  }

  private async ensureNode(node: string, address: string, meta: Record<string, string> = {}, tagged: Record<string, string> = {}): Promise<void> {
    const ops = this.nodeOps(node, address, meta, tagged);
    if (ops.length) await this.opts.store.commit(ops);
  }

  private nodeOps(node: string, address: string, meta: Record<string, string> = {}, tagged: Record<string, string> = {}): StoreOp[] {
    const existing = this.opts.store.get<NodeRecord>(NODES, node)?.value;
    const rec: NodeRecord = { Node: node, Address: address, Datacenter: this.opts.dc, Meta: meta, TaggedAddresses: tagged };
    if (existing && JSON.stringify(existing) === JSON.stringify(rec)) return [];
    return [{ op: 'put', table: NODES, key: node, value: rec }];
  }

  // ---- changes: what others follow instead of reading the tables ----

  /** Index of the whole catalog (services, checks, nodes): X-Consul-Index of a read of all of it. */
  index(): number {
    return this.whole.index();
  }

  /** Blocks until anything in the catalog changes past `afterIndex` (or the timeout, or the signal); resolves with index(). */
  waitForChange(afterIndex: number, timeoutMs: number, signal?: AbortSignal): Promise<number> {
    return this.whole.waitForChange(afterIndex, timeoutMs, signal);
  }

  /** Called after every batch of changes to services, checks or nodes; returns the unsubscribe. */
  onChange(listener: () => void): () => void {
    return this.whole.onChange(listener);
  }

  /** Some parts only: a blocking read of the services does not wake on a check's change (as in Consul). */
  watch(...parts: CatalogPart[]): TableWatch {
    return new TableWatch(this.opts.store, parts.map((p) => PART_TABLE[p]));
  }

  // ---- reads ----

  node(name: string): NodeRecord | undefined {
    return this.opts.store.get<NodeRecord>(NODES, name)?.value;
  }

  nodes(): NodeRecord[] {
    return this.opts.store.list<NodeRecord>(NODES).map((e) => e.value);
  }

  /** An instance on any node, by node and service ID. */
  nodeService(node: string, id: string): ServiceRecord | undefined {
    return this.opts.store.get<ServiceRecord>(SERVICES, `${node}/${id}`)?.value;
  }

  /** The instances registered on a node. */
  nodeServices(node: string): ServiceRecord[] {
    return this.opts.store.list<ServiceRecord>(SERVICES, `${node}/`).map((e) => e.value);
  }

  /** Instances registered on this server's node (the agent view). */
  agentServices(): ServiceRecord[] {
    return this.opts.store.list<ServiceRecord>(SERVICES, `${this.opts.nodeName}/`).map((e) => e.value);
  }

  agentService(id: string): ServiceRecord | undefined {
    return this.opts.store.get<ServiceRecord>(SERVICES, `${this.opts.nodeName}/${id}`)?.value;
  }

  agentCheck(id: string): CheckRecord | undefined {
    return this.opts.store.get<CheckRecord>(CHECKS, `${this.opts.nodeName}/${id}`)?.value;
  }

  agentChecks(): CheckRecord[] {
    return this.opts.store.list<CheckRecord>(CHECKS, `${this.opts.nodeName}/`).map((e) => e.value);
  }

  /** name -> union of tags, for every service in the DC. */
  services(): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const [name, keys] of this.byName) {
      const tags = new Set<string>();
      for (const k of keys) for (const t of this.opts.store.get<ServiceRecord>(SERVICES, k)?.value.Tags ?? []) tags.add(t);
      out[name] = [...tags];
    }
    return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : 1)));
  }

  serviceNames(): string[] {
    return [...this.byName.keys()].sort();
  }

  /** Instances of a service, with their node, checks and indexes. */
  instances(name: string, opts: { tag?: string; passingOnly?: boolean } = {}): HealthEntry[] {
    return this.entries(this.byName.get(name), opts);
  }

  private entries(keys: Iterable<string> | undefined, opts: { tag?: string; passingOnly?: boolean }): HealthEntry[] {
    const out: HealthEntry[] = [];
    for (const key of keys ?? []) {
      const e = this.opts.store.get<ServiceRecord>(SERVICES, key);
      if (!e) continue;
      const s = e.value;
      if (opts.tag && !s.Tags.includes(opts.tag)) continue;
      const checks = this.checksOf(s.Node, s.ID);
      if (opts.passingOnly && aggregate(checks) !== 'passing') continue;
      const node = this.node(s.Node) ?? { Node: s.Node, Address: s.Address, Datacenter: this.opts.dc, Meta: {}, TaggedAddresses: {} };
      out.push({ node, service: s, checks, serviceIndex: { create: e.createIndex, modify: e.modifyIndex } });
    }
    return out.sort((a, b) => (a.node.Node + a.service.ID < b.node.Node + b.service.ID ? -1 : 1));
  }

  /** The sidecar proxies that front `name` (Consul's "connect-capable" instances). */
  connectInstances(name: string, opts: { passingOnly?: boolean } = {}): HealthEntry[] {
    return this.entries(this.proxiesByDestination.get(name), opts);
  }

  /** The checks of one instance, plus the node's own checks (ServiceID ""). */
  checksOf(node: string, serviceId: string): CheckRecord[] {
    const out: CheckRecord[] = [];
    for (const owner of [`${node}/${serviceId}`, `${node}/`]) {
      for (const k of this.checksByService.get(owner) ?? []) {
        const c = this.opts.store.get<CheckRecord>(CHECKS, k)?.value;
        if (c) out.push(c);
      }
    }
    return out;
  }

  serviceChecks(name: string): CheckRecord[] {
    return this.instances(name).flatMap((e) => e.checks.filter((c) => c.ServiceID === e.service.ID));
  }

  checksInState(state: HealthStatus | 'any'): CheckRecord[] {
    return this.opts.store.list<CheckRecord>(CHECKS).map((e) => e.value).filter((c) => state === 'any' || c.Status === state);
  }

  nodeChecks(node: string): CheckRecord[] {
    return this.opts.store.list<CheckRecord>(CHECKS, `${node}/`).map((e) => e.value);
  }

  // ---- writes ----

  /** Agent registration on this server's node; a nested sidecar is registered in the same commit. */
  async registerService(def: ServiceInput, opts: { replaceExistingChecks?: boolean } = {}): Promise<ServiceRecord> {
    const node = this.opts.nodeName;
    const ops: StoreOp[] = [...this.nodeOps(node, this.opts.nodeAddress)];
    const id = def.ID ?? def.Name;
    const key = `${node}/${id}`;
    const previous = this.opts.store.get<ServiceRecord>(SERVICES, key)?.value;
    const record = this.toRecord(node, id, def, this.opts.nodeAddress);
    let sidecar: ServiceRecord | undefined;
    if (def.Connect?.SidecarService) {
      const sc = def.Connect.SidecarService;
      const scId = sc.ID ?? `${id}-sidecar-proxy`;
      const port = sc.Port ?? this.allocateSidecarPort(`${node}/${scId}`);
      sidecar = this.toRecord(node, scId, {
        ...sc,
        Name: sc.Name ?? `${def.Name}-sidecar-proxy`,
        Kind: 'connect-proxy',
        Port: port,
        Address: sc.Address ?? def.Address,
        Proxy: {
          ...sc.Proxy,
          DestinationServiceName: def.Name,
          DestinationServiceID: id,
          LocalServiceAddress: sc.Proxy?.LocalServiceAddress ?? '127.0.0.1',
          LocalServicePort: sc.Proxy?.LocalServicePort ?? def.Port,
        },
      } as ServiceInput, this.opts.nodeAddress);
      record.SidecarID = scId;
    }
    ops.push({ op: 'put', table: SERVICES, key, value: record });
    ops.push(...this.checkOps(node, record, [def.Check, ...(def.Checks ?? [])].filter(Boolean) as CheckInput[], def.Checks !== undefined && def.Check === undefined, opts.replaceExistingChecks ?? false));
    if (previous?.SidecarID && previous.SidecarID !== sidecar?.ID) ops.push(...this.removeServiceOps(node, previous.SidecarID));
    if (sidecar) {
      ops.push({ op: 'put', table: SERVICES, key: `${node}/${sidecar.ID}`, value: sidecar });
      const scDef = def.Connect!.SidecarService!;
      ops.push(...this.checkOps(node, sidecar, [scDef.Check, ...(scDef.Checks ?? [])].filter(Boolean) as CheckInput[], scDef.Checks !== undefined && scDef.Check === undefined, true));
    }
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
      svc = this.toRecord(body.Node, id, { ...body.Service, Name: name } as ServiceInput, body.Address);
      ops.push({ op: 'put', table: SERVICES, key: `${body.Node}/${id}`, value: svc });
    }
    for (const [n, c] of [body.Check, ...(body.Checks ?? [])].filter(Boolean).entries()) {
      const chk = c as CheckInput & { ServiceID?: string };
      const owner = chk.ServiceID ? this.opts.store.get<ServiceRecord>(SERVICES, `${body.Node}/${chk.ServiceID}`)?.value ?? (svc?.ID === chk.ServiceID ? svc : undefined) : undefined;
      const checkId = chk.CheckID ?? chk.ID ?? chk.Name ?? `check-${n}`;
      ops.push({ op: 'put', table: CHECKS, key: `${body.Node}/${checkId}`, value: this.toCheck(body.Node, checkId, chk, owner) });
    }
    if (ops.length === 0) return;
    await this.opts.store.commit(ops);
  }

  async catalogDeregister(body: { Node: string; ServiceID?: string; CheckID?: string }): Promise<void> {
    if (!this.node(body.Node)) throw notFound(`node ${body.Node} not found`);
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
      owner = this.agentService(def.ServiceID);
      if (!owner) throw notFound(`ServiceID "${def.ServiceID}" does not exist`);
    }
    const rec = this.toCheck(node, id, def, owner);
    await this.opts.store.commit([{ op: 'put', table: CHECKS, key: `${node}/${id}`, value: rec }]);
    return rec;
  }

  async deregisterCheck(id: string): Promise<void> {
    const key = `${this.opts.nodeName}/${id}`;
    if (!this.opts.store.get(CHECKS, key)) throw notFound(`Unknown check ID "${id}"`);
    await this.opts.store.commit([{ op: 'delete', table: CHECKS, key }]);
  }

  /** TTL updates (pass/warn/fail/update): writes only when status or output changes. */
  async updateTtl(id: string, status: HealthStatus, output: string): Promise<void> {
    const key = `${this.opts.nodeName}/${id}`;
    const e = this.opts.store.get<CheckRecord>(CHECKS, key);
    // Consul's wording: clients match on it to decide to register again.
    if (!e) throw notFound(`CheckID "${id}" does not have associated TTL: unknown check ID (pass the check ID, not the check name)`);
    if (e.value.Type !== 'ttl') throw invalid([{ Field: 'checkID', Message: `CheckID "${id}" does not have associated TTL` }]);
    this.onTtlUpdate?.(key);
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

  // ---- helpers ----

  private toRecord(node: string, id: string, def: ServiceInput, nodeAddress: string): ServiceRecord {
    const rec: ServiceRecord = {
      Node: node,
      ID: id,
      Service: def.Name,
      Namespace: def.Namespace ?? 'default',
      Tags: def.Tags ?? [],
      Address: def.Address ?? '',
      Port: def.Port ?? 0,
      Meta: def.Meta ?? {},
      Kind: def.Kind ?? '',
    };
    if (def.Proxy) rec.Proxy = def.Proxy as ServiceRecord['Proxy'];
    if (def.TaggedAddresses) rec.TaggedAddresses = def.TaggedAddresses;
    void nodeAddress;
    return rec;
  }

  private toCheck(node: string, id: string, c: CheckInput, owner: ServiceRecord | undefined): CheckRecord {
    const type: CheckRecord['Type'] = c.TTL !== undefined ? 'ttl' : c.HTTP !== undefined ? 'http' : c.TCP !== undefined ? 'tcp' : '';
    return {
      Node: node,
      CheckID: id,
      Name: c.Name ?? (owner ? `Service '${owner.Service}' check` : id),
      Status: c.Status ?? (type === '' ? 'passing' : 'critical'),
      Notes: c.Notes ?? '',
      Output: '',
      ServiceID: owner?.ID ?? '',
      ServiceName: owner?.Service ?? '',
      ServiceTags: owner?.Tags ?? [],
      Namespace: owner?.Namespace ?? 'default',
      Type: type,
      Definition: {
        ...(c.TTL !== undefined && { TTL: c.TTL }),
        ...(c.HTTP !== undefined && { HTTP: c.HTTP, Method: c.Method ?? 'GET', Header: c.Header ?? {}, Body: c.Body }),
        ...(c.TCP !== undefined && { TCP: c.TCP }),
        ...(c.Interval !== undefined && { Interval: c.Interval }),
        Timeout: c.Timeout ?? 10_000,
        ...(c.DeregisterCriticalServiceAfter !== undefined && { DeregisterCriticalServiceAfter: c.DeregisterCriticalServiceAfter }),
      },
    };
  }

  private checkOps(node: string, svc: ServiceRecord, checks: CheckInput[], numbered: boolean, replace: boolean): StoreOp[] {
    const ops: StoreOp[] = [];
    const keep = new Set<string>();
    checks.forEach((c, n) => {
      const id = c.CheckID ?? c.ID ?? (checks.length === 1 && !numbered ? `service:${svc.ID}` : `service:${svc.ID}:${n + 1}`);
      const key = `${node}/${id}`;
      keep.add(key);
      const existing = this.opts.store.get<CheckRecord>(CHECKS, key)?.value;
      const rec = this.toCheck(node, id, c, svc);
      // Re-registering keeps a check's current state unless a new initial Status is given.
      if (existing && c.Status === undefined) {
        rec.Status = existing.Status;
        rec.Output = existing.Output;
      }
      ops.push({ op: 'put', table: CHECKS, key, value: rec });
    });
    if (replace || checks.length > 0) {
      for (const k of this.checksByService.get(`${node}/${svc.ID}`) ?? []) {
        if (!keep.has(k) && replace) ops.push({ op: 'delete', table: CHECKS, key: k });
      }
    }
    return ops;
  }

  private removeServiceOps(node: string, id: string): StoreOp[] {
    const ops: StoreOp[] = [{ op: 'delete', table: SERVICES, key: `${node}/${id}` }];
    for (const k of this.checksByService.get(`${node}/${id}`) ?? []) ops.push({ op: 'delete', table: CHECKS, key: k });
    return ops;
  }

  private allocateSidecarPort(selfKey: string): number {
    const existing = this.opts.store.get<ServiceRecord>(SERVICES, selfKey)?.value.Port;
    if (existing) return existing;
    const used = this.proxyPorts.get(this.opts.nodeName) ?? new Map<number, number>();
    for (let p = SIDECAR_PORT_MIN; p <= SIDECAR_PORT_MAX; p++) if (!used.has(p)) return p;
    throw invalid([{ Field: 'Connect.SidecarService.Port', Message: `no free sidecar port in ${SIDECAR_PORT_MIN}-${SIDECAR_PORT_MAX}; give one explicitly` }] as Violation[]);
  }
}
