// The catalog of one DC: nodes, service instances and their checks in the Store, with in-memory
// indexes by service name (rebuilt from store changes) so reads never scan every instance.
// This class is the catalog's face: reads and change-following here, the indexes in
// catalog-indexes.ts, the writes in catalog-writes.ts, the records they build in catalog-records.ts.
import type { Component } from '../core/lifecycle.js';
import { OwnedTables } from '../core/table-watch.js';
import type { Store } from '../store/index.js';
import { CatalogIndexes } from './catalog-indexes.js';
import { aggregate, aliasResult } from './catalog-records.js';
import { CatalogWrites } from './catalog-writes.js';
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

export { aggregate } from './catalog-records.js';

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

export class Catalog extends OwnedTables<CatalogPart> implements Component {
  readonly name = 'catalog';
  private readonly indexes: CatalogIndexes;
  private readonly writes: CatalogWrites;
  private unsubscribe: (() => void) | undefined;
  /** Called when a TTL check is updated, so the runner can reset its deadline without a store write. */
  onTtlUpdate: ((checkKey: string) => void) | undefined;
  /** Called to run checks now rather than at their next interval (the check runner sets it). */
  onRecheck: ((checkKeys: string[]) => void) | undefined;

  constructor(private readonly opts: CatalogOptions) {
    super(opts.store, PART_TABLE);
    this.indexes = new CatalogIndexes(opts.store);
    this.writes = new CatalogWrites({ ...opts, indexes: this.indexes, reads: this, onTtlUpdate: (key) => this.onTtlUpdate?.(key) });
  }

  get nodeName(): string {
    return this.opts.nodeName;
  }

  get dc(): string {
    return this.opts.dc;
  }

  async start(): Promise<void> {
    this.indexes.rebuild();
    this.unsubscribe = this.opts.store.subscribe((changes) => this.indexes.apply(changes));
    await this.writes.ensureNode(this.opts.nodeName, this.opts.nodeAddress);
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
  }

  // (index, waitForChange, onChange and watch: OwnedTables)

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
    for (const [name, keys] of this.indexes.byName) {
      const tags = new Set<string>();
      for (const k of keys) for (const t of this.opts.store.get<ServiceRecord>(SERVICES, k)?.value.Tags ?? []) tags.add(t);
      out[name] = [...tags];
    }
    return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : 1)));
  }

  serviceNames(): string[] {
    return [...this.indexes.byName.keys()].sort();
  }

  /** Instances of a service, with their node, checks and indexes. */
  instances(name: string, opts: { tag?: string; passingOnly?: boolean } = {}): HealthEntry[] {
    return this.entries(this.indexes.byName.get(name), opts);
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
    return this.entries(this.indexes.proxiesByDestination.get(name), opts);
  }

  /** The checks of one instance, plus the node's own checks (ServiceID ""). */
  checksOf(node: string, serviceId: string): CheckRecord[] {
    const out: CheckRecord[] = [];
    for (const owner of new Set([`${node}/${serviceId}`, `${node}/`])) {
      for (const k of this.indexes.checksByService.get(owner) ?? []) {
        const c = this.opts.store.get<CheckRecord>(CHECKS, k)?.value;
        if (c) out.push(c);
      }
    }
    return out;
  }

  /**
   * Runs the HTTP and TCP checks of one of this node's instances now rather than at their next
   * interval, for a caller that knows it just changed: the data-plane server when a sidecar's stream
   * ends, so a killed proxy fails its listening check at once instead of up to 10 s later.
   */
  recheck(serviceId: string): void {
    const keys = this.indexes.checksByService.get(`${this.opts.nodeName}/${serviceId}`);
    if (keys?.size) this.onRecheck?.([...keys]);
  }

  /** An alias check's status and output from its target's checks as the store holds them now. */
  aliasStatus(alias: CheckRecord): [HealthStatus, string] {
    const node = alias.Definition.AliasNode || alias.Node;
    const serviceId = alias.Definition.AliasService ?? '';
    const exists = { service: serviceId !== '' && this.nodeService(node, serviceId) !== undefined, node: this.node(node) !== undefined };
    return aliasResult(alias, this.checksOf(node, serviceId), exists);
  }

  serviceChecks(name: string): CheckRecord[] {
    return this.instances(name).flatMap((e) => e.checks.filter((c) => c.ServiceID === e.service.ID));
  }

  checksInState(state: HealthStatus | 'any'): CheckRecord[] {
    return this.opts.store
      .list<CheckRecord>(CHECKS)
      .map((e) => e.value)
      .filter((c) => state === 'any' || c.Status === state);
  }

  nodeChecks(node: string): CheckRecord[] {
    return this.opts.store.list<CheckRecord>(CHECKS, `${node}/`).map((e) => e.value);
  }

  // ---- writes ----

  /** Agent registration on this server's node; a nested sidecar is registered in the same commit. */
  registerService(def: ServiceInput, opts: { replaceExistingChecks?: boolean } = {}): Promise<ServiceRecord> {
    return this.writes.registerService(def, opts);
  }

  deregisterService(id: string): Promise<void> {
    return this.writes.deregisterService(id);
  }

  /** PUT /v1/catalog/register: a node, optionally a service and checks, as Terraform's provider sends. */
  catalogRegister(body: {
    Node: string;
    Address: string;
    NodeMeta?: Record<string, string>;
    TaggedAddresses?: Record<string, string>;
    Service?: Partial<ServiceInput> & { Service?: string };
    Check?: CheckInput;
    Checks?: CheckInput[];
  }): Promise<void> {
    return this.writes.catalogRegister(body);
  }

  catalogDeregister(body: { Node: string; ServiceID?: string; CheckID?: string }): Promise<void> {
    return this.writes.catalogDeregister(body);
  }

  /** A check registered on its own (PUT /v1/agent/check/register). */
  registerCheck(def: CheckInput): Promise<CheckRecord> {
    return this.writes.registerCheck(def);
  }

  deregisterCheck(id: string): Promise<void> {
    return this.writes.deregisterCheck(id);
  }

  /** TTL updates (pass/warn/fail/update): writes only when status or output changes. */
  updateTtl(id: string, status: HealthStatus, output: string): Promise<void> {
    return this.writes.updateTtl(id, status, output);
  }

  /** PUT /v1/agent/service/maintenance/:id: the instance's maintenance check added or removed. */
  serviceMaintenance(id: string, enable: boolean, reason = ''): Promise<void> {
    return this.writes.serviceMaintenance(id, enable, reason);
  }

  /** PUT /v1/agent/maintenance: this node's maintenance check added or removed. */
  nodeMaintenance(enable: boolean, reason = ''): Promise<void> {
    return this.writes.nodeMaintenance(enable, reason);
  }

  /** Sets a check's result (the runner); no write when nothing changed. Returns whether it wrote. */
  setCheckResult(key: string, status: HealthStatus, output: string): Promise<boolean> {
    return this.writes.setCheckResult(key, status, output);
  }
}
