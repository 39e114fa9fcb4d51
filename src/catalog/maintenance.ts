// Consul's maintenance mode: a critical check registered against a service or the node takes it out
// of every passing-only answer; the check IDs and default notes are Consul's, which clients and
// `consul maint` match on.
import type { CheckRecord, ServiceRecord } from './model.js';

export const SERVICE_MAINTENANCE_PREFIX = '_service_maintenance:';
export const NODE_MAINTENANCE_CHECK_ID = '_node_maintenance';

const DEFAULT_SERVICE_REASON = 'Maintenance mode is enabled for this service, but no reason was provided. This is a default message.';
const DEFAULT_NODE_REASON = 'Maintenance mode is enabled for this node, but no reason was provided. This is a default message.';

export function serviceMaintenanceCheckId(serviceId: string): string {
  return SERVICE_MAINTENANCE_PREFIX + serviceId;
}

export function isMaintenanceCheck(checkId: string): boolean {
  return checkId === NODE_MAINTENANCE_CHECK_ID || checkId.startsWith(SERVICE_MAINTENANCE_PREFIX);
}

/**
 * The check has no HTTP, TCP, TTL or alias definition, so the check runner never probes it and the
 * TTL endpoints refuse it: it stays critical until maintenance is disabled.
 */
function maintenanceCheck(node: string, checkId: string, name: string, notes: string, owner: ServiceRecord | undefined): CheckRecord {
  return {
    Node: node,
    CheckID: checkId,
    Name: name,
    Status: 'critical',
    Notes: notes,
    Output: '',
    ServiceID: owner?.ID ?? '',
    ServiceName: owner?.Service ?? '',
    ServiceTags: owner?.Tags ?? [],
    Namespace: owner?.Namespace ?? 'default',
    Type: '',
    Definition: {},
  };
}

export function serviceMaintenanceCheck(node: string, svc: ServiceRecord, reason: string): CheckRecord {
  return maintenanceCheck(node, serviceMaintenanceCheckId(svc.ID), 'Service Maintenance Mode', reason || DEFAULT_SERVICE_REASON, svc);
}

export function nodeMaintenanceCheck(node: string, reason: string): CheckRecord {
  return maintenanceCheck(node, NODE_MAINTENANCE_CHECK_ID, 'Node Maintenance Mode', reason || DEFAULT_NODE_REASON, undefined);
}
