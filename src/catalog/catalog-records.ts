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
