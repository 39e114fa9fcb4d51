// This DC's mesh gateways as the catalog holds them: for each passing instance, its LAN address
// (where this DC's sidecars and servers reach it) and its WAN address (where other DCs do), read
// from the service's TaggedAddresses as Consul reads them.
import { parseHostPort, type HostPort } from '../core/names.js';
import type { Catalog, HealthEntry } from './catalog.js';
import type { ServiceRecord } from './model.js';

/** The service name mesh gateways register under, unless a gateway says otherwise. */
export const MESH_GATEWAY = 'mesh-gateway';

export interface MeshGateway {
  /** The gateway's service ID. */
  id: string;
  lan: HostPort;
  /** Undefined only when neither a tagged WAN address nor a usable LAN one (host and port) is known. */
  wan: HostPort | undefined;
}

/**
 * TaggedAddresses[key] of a service, in any shape it was registered in: Consul's
 * `{"Address": "...", "Port": n}` (or lowercase keys), or a `"host:port"` string.
 */
export function taggedAddress(s: ServiceRecord, key: string): HostPort | undefined {
  const t = s.TaggedAddresses?.[key];
  if (typeof t === 'string') return parseHostPort(t);
  if (!t || typeof t !== 'object') return undefined;
  const o = t as { Address?: unknown; Port?: unknown; address?: unknown; port?: unknown };
  const host = o.Address ?? o.address;
  const port = o.Port ?? o.port;
  if (typeof host !== 'string' || !host || typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  return { host, port };
}

/**
 * A gateway instance's addresses, with Consul's semantics: LAN is the tagged `lan` address if set,
 * else the service's Address, else its node's; WAN is the tagged `wan` address if set, else the LAN one.
 */
export function gatewayAddresses(e: HealthEntry): MeshGateway {
  const lan = taggedAddress(e.service, 'lan') ?? { host: e.service.Address || e.node.Address, port: e.service.Port };
  const wan = taggedAddress(e.service, 'wan') ?? (lan.host && lan.port > 0 ? lan : undefined);
  return { id: e.service.ID, lan, wan };
}

/** The passing mesh gateways of this DC registered under `names`, in catalog order. */
export function meshGateways(catalog: Catalog, names: Iterable<string> = [MESH_GATEWAY]): MeshGateway[] {
  const out: MeshGateway[] = [];
  for (const name of names) {
    for (const e of catalog.instances(name, { passingOnly: true })) {
      if (e.service.Kind === 'mesh-gateway') out.push(gatewayAddresses(e));
    }
  }
  return out;
}
