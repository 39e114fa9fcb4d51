// The catalog's in-memory indexes (instances by service name, sidecars by destination, proxy ports
// per node, checks per instance), rebuilt from the store and kept current from its changes.
import type { Change, Store } from '../store/index.js';
import { CHECKS, SERVICES, type CheckRecord, type ServiceRecord } from './model.js';

export class CatalogIndexes {
  readonly byName = new Map<string, Set<string>>();
  readonly checksByService = new Map<string, Set<string>>();
  private readonly nameOfKey = new Map<string, string>();
  /** Sidecar proxies by the service they front: "connect-capable" reads without a scan. */
  readonly proxiesByDestination = new Map<string, Set<string>>();
  private readonly destinationOfKey = new Map<string, string>();
  /** Ports taken by connect proxies, per node: sidecar port allocation without a scan. */
  readonly proxyPorts = new Map<string, Map<number, number>>();
  private readonly proxyPortOfKey = new Map<string, number>();
  private readonly ownerOfCheck = new Map<string, string>();

  constructor(private readonly store: Store) {}

  /** Follows one batch of store changes. */
  apply(changes: Change[]): void {
    for (const ch of changes) {
      if (ch.table === SERVICES) {
        this.unindexService(ch.key);
        if (ch.op === 'put') this.indexService(ch.key, ch.entry!.value as ServiceRecord);
      } else if (ch.table === CHECKS) {
        this.unindexCheck(ch.key);
        if (ch.op === 'put') this.indexCheck(ch.key, ch.entry!.value as CheckRecord);
      }
    }
  }

  rebuild(): void {
    this.byName.clear();
    this.checksByService.clear();
    this.nameOfKey.clear();
    this.proxiesByDestination.clear();
    this.destinationOfKey.clear();
    this.proxyPorts.clear();
    this.proxyPortOfKey.clear();
    this.ownerOfCheck.clear();
    for (const e of this.store.list<ServiceRecord>(SERVICES)) this.indexService(e.key, e.value);
    for (const e of this.store.list<CheckRecord>(CHECKS)) this.indexCheck(e.key, e.value);
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
}
