// SPIFFE IDs of services and servers, as DESIGN.md names them.

export interface ServiceSpiffeId {
  trustDomain: string;
  namespace: string;
  dc: string;
  service: string;
}

const SERVICE = /^spiffe:\/\/([a-z0-9.-]+)\/ns\/([A-Za-z0-9_-]+)\/dc\/([a-z0-9-]+)\/svc\/([A-Za-z0-9_-]+)$/;

export function parseSpiffeId(uri: string): ServiceSpiffeId | undefined {
  const m = SERVICE.exec(uri);
  return m ? { trustDomain: m[1], namespace: m[2], dc: m[3], service: m[4] } : undefined;
}

export function formatServiceSpiffeId(id: ServiceSpiffeId): string {
  return `spiffe://${id.trustDomain}/ns/${id.namespace}/dc/${id.dc}/svc/${id.service}`;
}
