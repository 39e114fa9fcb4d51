// The catalog's records in Consul's JSON shapes (agent, catalog and health views).
import type { Context } from 'hono';
import type { CheckRecord, HealthEntry, NodeRecord, ServiceRecord } from '../catalog/index.js';
import { notFound } from '../core/errors.js';

const WEIGHTS = { Passing: 1, Warning: 1 };

export function agentService(s: ServiceRecord, dc: string) {
  return {
    ID: s.ID,
    Service: s.Service,
    Tags: s.Tags,
    Meta: s.Meta,
    Port: s.Port,
    Address: s.Address,
    Namespace: s.Namespace,
    Kind: s.Kind,
    ...(s.Proxy && { Proxy: s.Proxy }),
    TaggedAddresses: s.TaggedAddresses ?? {},
    Weights: WEIGHTS,
    EnableTagOverride: false,
    Datacenter: dc,
  };
}

export function catalogService(e: HealthEntry) {
  const { node: n, service: s } = e;
  return {
    ID: '',
    Node: n.Node,
    Address: n.Address,
    Datacenter: n.Datacenter,
    TaggedAddresses: n.TaggedAddresses,
    NodeMeta: n.Meta,
    ServiceKind: s.Kind,
    ServiceID: s.ID,
    ServiceName: s.Service,
    ServiceTags: s.Tags,
    ServiceAddress: s.Address,
    ServiceTaggedAddresses: s.TaggedAddresses ?? {},
    ServiceWeights: WEIGHTS,
    ServiceMeta: s.Meta,
    ServicePort: s.Port,
    ServiceEnableTagOverride: false,
    ServiceProxy: s.Proxy ?? {},
    Namespace: s.Namespace,
    CreateIndex: e.serviceIndex.create,
    ModifyIndex: e.serviceIndex.modify,
  };
}

export function nodeShape(n: NodeRecord) {
  return { ID: '', Node: n.Node, Address: n.Address, Datacenter: n.Datacenter, TaggedAddresses: n.TaggedAddresses, Meta: n.Meta };
}

export function checkShape(c: CheckRecord) {
  return {
    Node: c.Node,
    CheckID: c.CheckID,
    Name: c.Name,
    Status: c.Status,
    Notes: c.Notes,
    Output: c.Output,
    ServiceID: c.ServiceID,
    ServiceName: c.ServiceName,
    ServiceTags: c.ServiceTags,
    Type: c.Type,
    Namespace: c.Namespace,
    Definition: {},
  };
}

export function healthEntry(e: HealthEntry) {
  const s = e.service;
  return {
    Node: nodeShape(e.node),
    Service: {
      ID: s.ID,
      Service: s.Service,
      Tags: s.Tags,
      Address: s.Address,
      Meta: s.Meta,
      Port: s.Port,
      Kind: s.Kind,
      ...(s.Proxy && { Proxy: s.Proxy }),
      Namespace: s.Namespace,
      Weights: WEIGHTS,
      CreateIndex: e.serviceIndex.create,
      ModifyIndex: e.serviceIndex.modify,
    },
    Checks: e.checks.map(checkShape),
  };
}

/** `?dc=` for another DC is answered by federation; until it is set up, say so clearly. */
export function checkDc(c: Context, dc: string, known: () => string[]): void {
  const asked = c.req.query('dc');
  if (asked && asked !== dc && !known().includes(asked)) throw notFound(`No path to datacenter "${asked}"`);
}

/** Consul treats `?passing` (with any value but false/0) as true. */
export function flag(c: Context, name: string): boolean {
  const v = c.req.query(name);
  return v !== undefined && v !== 'false' && v !== '0';
}
