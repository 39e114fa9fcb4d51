// Which protocol a destination speaks, as the intention and config-entry checks ask it: the config
// entries first (service-defaults, then proxy-defaults), then the sidecars registered for it here.
import type { Catalog } from '../catalog/index.js';
import type { ConfigEntries } from '../config-entries/index.js';

export interface ProtocolAnswer {
  protocol: string;
  from: string;
}

/**
 * From the sidecar registrations of `service` (Kind connect-proxy, `Proxy.Config.protocol`): the
 * protocol they all give, else tcp. One sidecar without an L7 protocol is enough to say tcp, since
 * that sidecar could not check a request. None registered: tcp by default.
 */
export function sidecarProtocol(catalog: Catalog, service: string): ProtocolAnswer {
  const declared = catalog.connectInstances(service).map((h) => String(h.service.Proxy?.Config?.protocol ?? 'tcp'));
  if (declared.length === 0) return { protocol: 'tcp', from: 'default' };
  const distinct = [...new Set(declared)];
  const protocol = distinct.length === 1 ? distinct[0] : distinct.includes('tcp') ? 'tcp' : distinct.sort().join('|');
  return { protocol, from: 'its sidecar registrations' };
}

export function destinationProtocol(configEntries: ConfigEntries, catalog: Catalog, service: string): ProtocolAnswer {
  return configEntries.protocolSource(service) ?? sidecarProtocol(catalog, service);
}
