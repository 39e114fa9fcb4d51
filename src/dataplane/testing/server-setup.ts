// A data-plane server over a memory store with the catalog, intentions, CA and ACL it reads, for tests.
import { MemoryStore } from '../../store/index.js';
import { Catalog } from '../../catalog/index.js';
import { Intentions } from '../../intentions/index.js';
import { CertificateAuthority, LeafCache } from '../../ca/index.js';
import { Acl } from '../../acl/index.js';
import { ConfigEntries } from '../../config-entries/index.js';
import { MemoryFlowStore } from '../../dataflow/index.js';
import type { FederationView } from '../../federation/index.js';
import { DataPlaneServer } from '../server.js';

export const TD = 'dp.isthmus';

export async function setupServer(
  stops: (() => Promise<void> | void)[],
  opts: { defaultPolicy?: 'allow' | 'deny'; federation?: FederationView; dc?: string } = {},
) {
  const dc = opts.dc ?? 'dc1';
  const allow = (opts.defaultPolicy ?? 'allow') === 'allow';
  const store = new MemoryStore({ dc, advertiseAddr: 'x' });
  await store.start();
  const catalog = new Catalog({ store, dc, nodeName: 'n1', nodeAddress: '127.0.0.1' });
  const intentions = new Intentions({ store, dc, defaultAllow: () => allow, trustDomain: () => TD });
  const ca = new CertificateAuthority({ store, dc, primary: true, trustDomain: () => TD, tickMs: 60_000 });
  const acl = new Acl({ store, dc, defaultPolicy: allow ? 'allow' : 'deny' });
  const configEntries = new ConfigEntries({ store, dc });
  for (const c of [catalog, intentions, ca, acl, configEntries]) await c.start();
  const flows = new MemoryFlowStore(100);
  const server = new DataPlaneServer({
    catalog,
    intentions,
    ca,
    leaves: new LeafCache(ca),
    acl,
    flows,
    dc,
    trustDomain: () => TD,
    defaultAllow: () => allow,
    host: '127.0.0.1',
    port: 0,
    federation: opts.federation,
    configEntries,
  });
  await server.start();
  stops.push(
    () => store.stop(),
    () => ca.stop(),
    () => server.stop(),
  );
  return { store, catalog, intentions, ca, acl, flows, server, configEntries };
}

/** A FederationView whose state a test sets; change() tells subscribers. */
export class StaticFederationView implements FederationView {
  gatewaysByDc: Record<string, string[]> = {};
  healthy: Record<string, number> = {};
  /** `<dc>/<ns>/<service>/<subset>` -> healthy count; a service without an entry here falls back to `healthy` for subset "". */
  subsetHealthy: Record<string, number> = {};
  staleness: Record<string, number> = {};
  servers: string[] = [];
  private readonly listeners = new Set<() => void>();
  constructor(
    readonly dc: string,
    readonly others: string[] = [],
  ) {}
  get primaryDc(): string {
    return this.dc;
  }
  datacenters(): string[] {
    return [this.dc, ...this.others].sort();
  }
  gateways(dc: string): string[] {
    return this.gatewaysByDc[dc] ?? [];
  }
  remoteHealthy(dc: string, namespace: string, service: string): number | undefined {
    return this.healthy[`${dc}/${namespace}/${service}`];
  }
  remoteSubsetHealthy(dc: string, namespace: string, service: string, subset: string): number | undefined {
    const key = `${dc}/${namespace}/${service}/${subset}`;
    if (key in this.subsetHealthy) return this.subsetHealthy[key];
    return subset ? undefined : this.remoteHealthy(dc, namespace, service);
  }
  stalenessMs(dc: string): number | undefined {
    return dc === this.dc ? 0 : (this.staleness[dc] ?? 0);
  }
  serverAddresses(): string[] {
    return this.servers;
  }
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  change(): void {
    for (const l of this.listeners) l();
  }
}
