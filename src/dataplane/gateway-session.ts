// The server's side of a mesh gateway's stream: who the gateway is (and that its token may write its
// service), its catalog registration (Kind mesh-gateway, LAN/WAN tagged addresses, a TTL check kept
// passing while the stream is open and failed the moment it ends), and the routes it is pushed.
import type { Acl } from '../acl/index.js';
import type { Catalog } from '../catalog/index.js';
import { connectMembers, isHealthy, subsetSelector, type ConfigEntries } from '../config-entries/index.js';
import { MESH_GATEWAY, serviceSchema } from '../catalog/index.js';
import { conflict, ErrorCodes, invalid, isIsthmusError, IsthmusError, type Violation } from '../core/errors.js';
import { DATACENTER_REF_MESSAGE, isDatacenterRef, isServiceName, parseHostPort, type HostPort } from '../core/names.js';
import type { FederationView } from '../federation/index.js';
import type { Logger } from '../telemetry/index.js';
import type { GatewayConfigMessage, GatewayHelloMessage, WireGatewayService } from '../dataplane-client/index.js';
import type { Session } from './stream-session.js';

export interface GatewayTarget {
  id: string;
  name: string;
  lan: HostPort;
  wan: HostPort;
  version: string;
}

export interface GatewaySessionsOptions {
  catalog: Catalog;
  acl: Acl;
  dc: string;
  trustDomain: () => string;
  federation: FederationView;
  log: Logger;
  /** The resolvers whose Subsets a subset SNI selects instances by (absent: by the instance's tags). */
  configEntries?: Pick<ConfigEntries, 'get'>;
  /** The registration's TTL; the server renews it every third of it while the stream is open. */
  ttlMs?: number;
}

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;

/** host:port whose host is a name or an address (it is dialed, and registered in the catalog). */
function hostPort(addr: unknown): HostPort | undefined {
  if (typeof addr !== 'string' || addr.length > 300) return undefined;
  const t = parseHostPort(addr);
  return t && /^[A-Za-z0-9.:_-]{1,255}$/.test(t.host) ? t : undefined;
}

export class GatewaySessions {
  /** Service names gateways registered under: where the server looks for this DC's gateways. */
  readonly names = new Set<string>([MESH_GATEWAY]);
  /** Open streams per gateway ID: a reconnect may arrive before the old stream is seen to end. */
  private readonly live = new Map<string, number>();
  private readonly ttlMs: number;

  constructor(private readonly opts: GatewaySessionsOptions) {
    this.ttlMs = opts.ttlMs ?? 30_000;
  }

  resolve(h: GatewayHelloMessage): GatewayTarget {
    const v: Violation[] = [];
    const name = h.name || MESH_GATEWAY;
    if (typeof h.id !== 'string' || !ID_RE.test(h.id))
      v.push({ Field: 'hello.id', Message: 'must be 1-128 letters, digits, dots, colons, dashes or underscores' });
    if (typeof name !== 'string' || !isServiceName(name)) v.push({ Field: 'hello.name', Message: 'must be a service name' });
    const lan = hostPort(h.lanAddress);
    if (!lan) v.push({ Field: 'hello.lan_address', Message: 'must be host:port with a port from 1 to 65535' });
    const wan = h.wanAddress ? hostPort(h.wanAddress) : lan;
    if (!wan && h.wanAddress) v.push({ Field: 'hello.wan_address', Message: 'must be host:port with a port from 1 to 65535' });
    if (typeof h.dc !== 'string' || (h.dc && !isDatacenterRef(h.dc))) v.push({ Field: 'hello.dc', Message: DATACENTER_REF_MESSAGE });
    else if (h.dc && h.dc !== this.opts.dc) v.push({ Field: 'hello.dc', Message: `the gateway is for datacenter ${h.dc}, this server serves ${this.opts.dc}` });
    if (typeof h.token !== 'string' || h.token.length > 512) v.push({ Field: 'hello.token', Message: 'must be at most 512 characters' });
    // The version lands in the gateway's catalog meta (values of at most 512 characters).
    if (typeof h.version !== 'string' || h.version.length > 128 || /[\u0000-\u001f]/.test(h.version))
      v.push({ Field: 'hello.version', Message: 'must be at most 128 characters, without control characters' });
    if (v.length) throw invalid(v);
    const { authz } = this.opts.acl.resolve(h.token || undefined);
    if (!authz.serviceWrite(name)) throw new IsthmusError(ErrorCodes.PERMISSION_DENIED, `token lacks service:write on ${name}`);
    const existing = this.opts.catalog.agentService(h.id);
    if (existing && existing.Kind !== 'mesh-gateway') throw conflict(`service ID "${h.id}" is registered already, and not as a mesh gateway`);
    return { id: h.id, name, lan: lan!, wan: wan!, version: h.version ?? '' };
  }

  describe(t: GatewayTarget): Record<string, unknown> {
    return { gateway: t.id, lan: `${t.lan.host}:${t.lan.port}`, wan: `${t.wan.host}:${t.wan.port}` };
  }

  /** Registers the gateway and keeps its check passing while the stream is open. */
  opened(t: GatewayTarget, session: Session): () => Promise<void> {
    this.names.add(t.name);
    this.live.set(t.id, (this.live.get(t.id) ?? 0) + 1);
    const checkId = `service:${t.id}`;
    let chain = this.register(t);
    const beat = setInterval(
      () => {
        chain = chain.then(() =>
          this.opts.catalog.updateTtl(checkId, 'passing', 'gateway stream connected').catch((err) => {
            if (isIsthmusError(err, ErrorCodes.NOT_FOUND) && !session.closed) return this.register(t);
            this.opts.log.warn('cannot renew the gateway registration', { gateway: t.id, error: err });
          }),
        );
      },
      Math.max(100, Math.floor(this.ttlMs / 3)),
    );
    beat.unref();
    return async () => {
      clearInterval(beat);
      await chain;
      const left = (this.live.get(t.id) ?? 1) - 1;
      if (left > 0) {
        this.live.set(t.id, left);
        return;
      }
      this.live.delete(t.id);
      // Sidecars stop being sent to it as soon as this lands (they only get passing gateways).
      await this.opts.catalog.updateTtl(checkId, 'critical', 'gateway stream closed').catch((err) => {
        if (!isIsthmusError(err, ErrorCodes.NOT_FOUND)) this.opts.log.warn('cannot mark the gateway critical', { gateway: t.id, error: err });
      });
      this.opts.log.info('gateway disconnected', { gateway: t.id });
    };
  }

  private async register(t: GatewayTarget): Promise<void> {
    try {
      await this.opts.catalog.registerService(
        serviceSchema.parse({
          ID: t.id,
          Name: t.name,
          Kind: 'mesh-gateway',
          Address: t.lan.host,
          Port: t.lan.port,
          TaggedAddresses: { lan: { Address: t.lan.host, Port: t.lan.port }, wan: { Address: t.wan.host, Port: t.wan.port } },
          Meta: t.version ? { version: t.version } : {},
          Check: {
            CheckID: `service:${t.id}`,
            Name: 'Mesh gateway stream',
            Notes: 'Passing while the gateway holds its data-plane stream to this server.',
            TTL: `${this.ttlMs}ms`,
            Status: 'passing',
            DeregisterCriticalServiceAfter: '1h',
          },
        }),
      );
    } catch (err) {
      this.opts.log.warn('cannot register the gateway; will retry', { gateway: t.id, error: err });
    }
  }

  build(): GatewayConfigMessage {
    const { catalog, federation, dc } = this.opts;
    const services: WireGatewayService[] = [];
    for (const name of catalog.serviceNames()) {
      const members = connectMembers(catalog, name, undefined);
      if (members.length === 0) continue;
      // With a resolver's Subsets, an endpoint's tags are the subsets that select it (filter and
      // OnlyPassing, as the callers' chains and this DC's export judge them), so a subset SNI reaches
      // exactly its instances; without, the instance's own tags (a subset name is a tag).
      const subsets = Object.entries(this.opts.configEntries?.get('service-resolver', name)?.Subsets ?? {}).map(
        ([subset, spec]) => [subset, subsetSelector(spec)] as const,
      );
      const byNs = new Map<string, WireGatewayService>();
      for (const m of members) {
        // The same rule as the chain's targets: the sidecar's and its instance's checks, warning healthy.
        if (!isHealthy(m.checks, false)) continue;
        const p = m.proxy;
        const ns = p.service.Namespace || 'default';
        let s = byNs.get(ns);
        if (!s) byNs.set(ns, (s = { name, namespace: ns, endpoints: [] }));
        s.endpoints.push({
          host: p.service.Address || p.node.Address,
          port: p.service.Port,
          tags: subsets.length ? subsets.filter(([, select]) => select(m)).map(([subset]) => subset) : m.instance === p.service ? [] : m.instance.Tags,
        });
      }
      if (byNs.size === 0) continue;
      services.push(...[...byNs.values()].sort((a, b) => (a.namespace < b.namespace ? -1 : 1)));
    }
    const remotes = federation
      .datacenters()
      .filter((d) => d !== dc)
      .map((d) => ({ dc: d, gateways: federation.gateways(d) }));
    return { version: 0, error: '', errorCode: '', dc, trustDomain: this.opts.trustDomain(), services, serverAddresses: federation.serverAddresses(), remotes };
  }
}
