// The catalog's records as stored: a service instance and a check built from their registration
// input, and a set of checks' aggregate health.
import type { CheckInput, CheckRecord, HealthStatus, ServiceInput, ServiceRecord } from './model.js';

const RANK: Record<HealthStatus, number> = { passing: 0, warning: 1, critical: 2 };

export function aggregate(checks: CheckRecord[]): HealthStatus {
  let worst: HealthStatus = 'passing';
  for (const c of checks) if (RANK[c.Status] > RANK[worst]) worst = c.Status;
  return worst;
}

export function toRecord(node: string, id: string, def: ServiceInput, nodeAddress: string): ServiceRecord {
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

export function toCheck(node: string, id: string, c: CheckInput, owner: ServiceRecord | undefined): CheckRecord {
  const alias = c.AliasService !== undefined || c.AliasNode !== undefined;
  const type: CheckRecord['Type'] = c.TTL !== undefined ? 'ttl' : c.HTTP !== undefined ? 'http' : c.TCP !== undefined ? 'tcp' : alias ? 'alias' : '';
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
      ...(c.AliasService !== undefined && { AliasService: c.AliasService }),
      ...(c.AliasNode !== undefined && { AliasNode: c.AliasNode }),
      ...(c.Interval !== undefined && { Interval: c.Interval }),
      Timeout: c.Timeout ?? 10_000,
      ...(c.DeregisterCriticalServiceAfter !== undefined && { DeregisterCriticalServiceAfter: c.DeregisterCriticalServiceAfter }),
    },
  };
}

/**
 * An alias check's result from the checks of the node it aliases, as Consul's CheckAlias computes
 * it: the instance's own checks and its node's checks count, a critical one decides at once, and an
 * instance without checks is passing unless it is gone. An alias of a node alone (no AliasService)
 * follows the node's checks, and is critical only when the node is gone.
 */
export function aliasResult(alias: CheckRecord, nodeChecks: CheckRecord[], exists: { service: boolean; node: boolean }): [HealthStatus, string] {
  // No AliasNode: the node the alias check itself is on, as Consul's agent reads it.
  const node = alias.Definition.AliasNode || alias.Node;
  const serviceId = alias.Definition.AliasService ?? '';
  let status: HealthStatus = 'passing';
  let output = 'No checks found.';
  let found = false;
  for (const c of nodeChecks) {
    if (c.Node !== node || (c.Node === alias.Node && c.CheckID === alias.CheckID)) continue;
    if (c.ServiceID !== '' && c.ServiceID !== serviceId) continue;
    if (c.ServiceID === serviceId) found = true;
    if (c.Status === 'critical' || c.Status === 'warning') {
      status = c.Status;
      output = `Aliased check "${c.Name}" failing: ${c.Output}`;
      if (c.Status === 'critical') break;
    } else if (status === 'passing') output = 'All checks passing.';
  }
  if (!found && (serviceId ? !exists.service : !exists.node)) {
    return ['critical', serviceId ? `Service ${serviceId} could not be found on node ${node}` : `Node ${node} could not be found`];
  }
  return [status, output];
}
