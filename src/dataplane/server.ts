// The server's end of the data-plane channel: one stream per sidecar and one per mesh gateway. It
// resolves who the proxy is (and that its token may act for it), pushes its whole configuration on
// every change that concerns it, and stores the flow records it reports.
import * as grpc from '@grpc/grpc-js';
import type { Component } from '../core/lifecycle.js';
import { ErrorCodes, IsthmusError, invalid, type Violation } from '../core/errors.js';
import { isServiceName, SERVICE_NAME_RULE } from '../core/names.js';
import { tolerantService } from '../core/proto.js';
import type { Catalog, ServiceRecord } from '../catalog/index.js';
import type { Intentions } from '../intentions/index.js';
import type { CertificateAuthority, LeafCache } from '../ca/index.js';
import type { Acl } from '../acl/index.js';
import type { FlowStore } from '../dataflow/index.js';
import { loneView, type FederationView } from '../federation/index.js';
import { silentLogger, type Logger } from '../telemetry/index.js';
import { GatewaySessions, type GatewayTarget } from './gateway-session.js';
import {
  dataPlaneService,
  type GatewayConfigMessage,
  type GatewayHelloMessage,
  type SidecarConfigMessage,
  type SidecarMessage,
  type WireUpstream,
} from '../dataplane-client/index.js';
import { StreamSession, type SessionDeps, type SessionMessage, type SessionSpec } from './stream-session.js';
import { planUpstream, type UpstreamContext } from './upstreams.js';
import { chainEntries, type ConfigEntries } from '../config-entries/index.js';

export interface DataPlaneServerOptions {
  catalog: Catalog;
  intentions: Intentions;
  ca: CertificateAuthority;
  leaves: LeafCache;
  acl: Acl;
  flows: FlowStore;
  dc: string;
  trustDomain: () => string;
  defaultAllow: () => boolean;
  host: string;
  port: number;
  logger?: Logger;
  /** The other DCs (their gateways, healthy counts) and this DC's server federation addresses; default: none. */
  federation?: FederationView;
  /** The config entries upstreams' discovery chains are compiled from (absent: every chain is the default one). */
  configEntries?: ConfigEntries;
  /** TTL of a gateway's catalog registration (default 30 s), renewed while its stream is open. */
  gatewayTtlMs?: number;
}

interface Target {
  id: string;
  service: string;
  namespace: string;
  proxy?: ServiceRecord;
}

export class DataPlaneServer implements Component {
  readonly name = 'dataplane';
  private server: grpc.Server | undefined;
  private readonly sessions = new Set<{ shutdown(): Promise<void> }>();
  private readonly log: Logger;
  private readonly federation: FederationView;
  private readonly gateways: GatewaySessions;
  private readonly deps: SessionDeps;
  private readonly sidecarSpec: SessionSpec<NonNullable<SidecarMessage['hello']>, Target, SidecarConfigMessage>;
  private readonly gatewaySpec: SessionSpec<GatewayHelloMessage, GatewayTarget, GatewayConfigMessage>;
  port = 0;
  /** Flow records refused as malformed (named in the log). */
  rejectedFlows = 0;

  constructor(private readonly opts: DataPlaneServerOptions) {
    this.log = (opts.logger ?? silentLogger).child({ component: 'dataplane' });
    this.federation = opts.federation ?? loneView(opts.dc);
    this.gateways = new GatewaySessions({
      catalog: opts.catalog,
      acl: opts.acl,
      dc: opts.dc,
      trustDomain: opts.trustDomain,
      federation: this.federation,
      log: this.log,
      ttlMs: opts.gatewayTtlMs,
      configEntries: opts.configEntries,
    });
    this.deps = {
      flows: opts.flows,
      log: this.log,
      sources: [(listener) => this.federation.onChange(listener)],
      rejected: () => void this.rejectedFlows++,
    };
    this.sidecarSpec = {
      kind: 'sidecar',
      // Instances and health (upstream endpoints), intentions, and the CA's roots, chain and configuration.
      sources: [
        (l) => opts.catalog.onChange(l),
        (l) => opts.intentions.onChange(l),
        (l) => opts.ca.onChange(l),
        // Upstreams' chains, and the subsets their endpoints are picked by.
        (l) => opts.configEntries?.onChange(l) ?? (() => {}),
      ],
      resolve: (hello) => this.resolve(hello),
      build: (t) => this.build(t),
      describe: (t) => ({ service: t.service, id: t.id }),
      opened: (t, session) => {
        const stopLeaf = this.watchLeaf(t, session);
        return () => {
          stopLeaf();
          // A stream that ends may be a proxy that died: its listening check runs now, not at its
          // next interval, so its endpoint leaves the callers' sets at once if it is gone.
          if (t.proxy) this.opts.catalog.recheck(t.proxy.ID);
        };
      },
    };
    this.gatewaySpec = {
      kind: 'gateway',
      sources: [(l) => opts.catalog.onChange(l), (l) => opts.configEntries?.onChange(l) ?? (() => {})],
      resolve: (hello) => this.gateways.resolve(hello),
      build: async () => this.gateways.build(),
      describe: (t) => this.gateways.describe(t),
      opened: (t, session) => this.gateways.opened(t, session),
    };
  }

  get address(): string {
    return `${this.opts.host}:${this.port}`;
  }

  async start(): Promise<void> {
    const server = new grpc.Server({ 'grpc.max_receive_message_length': 4 << 20 });
    server.addService(tolerantService(dataPlaneService().service), {
      stream: (call: grpc.ServerDuplexStream<SessionMessage<NonNullable<SidecarMessage['hello']>>, SidecarConfigMessage>) => this.open(call, this.sidecarSpec),
      gateway: (call: grpc.ServerDuplexStream<SessionMessage<GatewayHelloMessage>, GatewayConfigMessage>) => this.open(call, this.gatewaySpec),
    });
    this.port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`${this.opts.host}:${this.opts.port}`, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
    );
    this.server = server;
  }

  async stop(): Promise<void> {
    // Ending the sessions first runs their cleanup (a gateway's registration is failed) while the store is up.
    await Promise.all([...this.sessions].map((s) => s.shutdown()));
    await new Promise<void>((resolve) => {
      if (!this.server) return resolve();
      this.server.tryShutdown(() => resolve());
      setTimeout(() => {
        this.server?.forceShutdown();
        resolve();
      }, 2000).unref();
    });
  }

  private open<H, T, C extends SidecarConfigMessage | GatewayConfigMessage>(
    call: grpc.ServerDuplexStream<SessionMessage<H>, C>,
    spec: SessionSpec<H, T, C>,
  ): void {
    this.sessions.add(new StreamSession(call, this.deps, spec, (s) => this.sessions.delete(s)));
  }

  /** Pushes again when the sidecar's leaf is renewed (half-life, CA change). */
  private watchLeaf(target: Target, session: { schedule(): void; readonly closed: boolean }): () => void {
    let leafWait: AbortController | undefined;
    const loop = async () => {
      while (!session.closed) {
        leafWait = new AbortController();
        const current = await this.opts.leaves.get(target.service, target.namespace).catch(() => undefined);
        if (!current) return;
        await this.opts.leaves.wait(target.service, target.namespace, current.ModifyIndex, 10 * 60_000, leafWait.signal).catch(() => undefined);
        if (!session.closed) session.schedule();
      }
    };
    void loop();
    return () => leafWait?.abort();
  }

  private resolve(hello: NonNullable<SidecarMessage['hello']>): Target {
    checkSidecarHello(hello);
    const { authz } = this.opts.acl.resolve(hello.token || undefined);
    const ns = hello.namespace || 'default';
    if (hello.serviceId) {
      const proxy = this.opts.catalog.agentService(hello.serviceId);
      if (!proxy) throw new IsthmusError(ErrorCodes.NOT_FOUND, `no service with ID "${hello.serviceId}" is registered on this server's node`);
      const dest = proxy.Kind === 'connect-proxy' ? proxy.Proxy?.DestinationServiceName : proxy.Service;
      if (!dest) throw new IsthmusError(ErrorCodes.INVALID, `service "${hello.serviceId}" is not a sidecar proxy`);
      if (!authz.serviceWrite(dest)) throw new IsthmusError(ErrorCodes.PERMISSION_DENIED, `token lacks service:write on ${dest}`);
      return { id: proxy.ID, service: dest, namespace: proxy.Namespace, proxy };
    }
    if (!hello.service) throw invalid([{ Field: 'hello.service', Message: 'hello needs service_id or service' }]);
    if (!authz.serviceWrite(hello.service)) throw new IsthmusError(ErrorCodes.PERMISSION_DENIED, `token lacks service:write on ${hello.service}`);
    return { id: `${hello.service}-sidecar-proxy`, service: hello.service, namespace: ns };
  }

  /** The whole configuration of one sidecar, from the current state. */
  private async build(t: Target): Promise<SidecarConfigMessage> {
    const td = this.opts.trustDomain();
    const dc = this.opts.dc;
    const proxy = t.proxy ? (this.opts.catalog.agentService(t.proxy.ID) ?? t.proxy) : undefined;
    const leaf = await this.opts.leaves.get(t.service, t.namespace);
    const bundle = this.opts.ca.bundle();
    const ctx: UpstreamContext = {
      catalog: this.opts.catalog,
      federation: this.federation,
      dc,
      trustDomain: td,
      gatewayNames: this.gateways.names,
      entries: this.opts.configEntries && chainEntries(this.opts.configEntries),
    };
    const upstreams: WireUpstream[] = (proxy?.Proxy?.Upstreams ?? []).map((u) => {
      const ns = u.DestinationNamespace ?? 'default';
      const plan = planUpstream(ctx, u);
      if (plan.compileError)
        this.log.warn('discovery chain does not compile; the upstream gets the default chain', { upstream: u.DestinationName, error: plan.compileError });
      return {
        name: u.DestinationName,
        namespace: ns,
        datacenter: u.Datacenter ?? dc,
        localBindHost: u.LocalBindAddress ?? '127.0.0.1',
        localBindPort: u.LocalBindPort,
        endpoints: plan.endpoints,
        protocol: plan.chain.Protocol,
        chainJson: JSON.stringify(plan.chain),
        targets: plan.targets,
        passiveHealthCheckJson: passiveOf(this.opts.configEntries, t.service, u.DestinationName),
      };
    });
    const relevant = this.opts.intentions
      .list()
      .filter((i) => (i.DestinationName === '*' || i.DestinationName === t.service) && (i.DestinationNS === '*' || i.DestinationNS === t.namespace));
    // The protocol the intention checks believe (config entries first, then the registration), so
    // that a listener is L7 exactly when an L7 intention could have been accepted for it.
    const protocol =
      this.opts.configEntries?.protocolSource(t.service)?.protocol ?? String((proxy?.Proxy?.Config as Record<string, unknown> | undefined)?.protocol ?? 'tcp');
    return {
      version: 0,
      error: '',
      errorCode: '',
      service: { id: t.id, name: t.service, namespace: t.namespace, dc, trustDomain: td },
      leaf: { certPem: leaf.CertPEM, keyPem: leaf.PrivateKeyPEM, spiffeId: leaf.ServiceURI, validBefore: leaf.ValidBefore },
      bundle: { roots: bundle.roots, chain: leaf.Chain, activeRootId: bundle.activeRootId, index: bundle.index },
      inbound: proxy
        ? {
            bindHost: proxy.Address || '127.0.0.1',
            bindPort: proxy.Port,
            localAppHost: proxy.Proxy?.LocalServiceAddress ?? '127.0.0.1',
            localAppPort: proxy.Proxy?.LocalServicePort ?? 0,
            protocol: protocol === 'http' || protocol === 'http2' || protocol === 'grpc' ? protocol : 'tcp',
          }
        : null,
      upstreams,
      intentions: {
        intentionsJson: JSON.stringify(relevant),
        defaultAllow: this.opts.defaultAllow(),
        index: this.opts.intentions.index(),
        sourceDc: this.federation.primaryDc,
      },
    };
  }
}

/** The caller's service-defaults UpstreamConfig.PassiveHealthCheck for one upstream (its override, else Defaults), as JSON; '' when none. */
function passiveOf(entries: ConfigEntries | undefined, caller: string, upstream: string): string {
  const uc = entries?.get('service-defaults', caller)?.UpstreamConfig;
  const p = uc?.Overrides?.find((o) => o.Name === upstream)?.PassiveHealthCheck ?? uc?.Defaults?.PassiveHealthCheck;
  return p ? JSON.stringify(p) : '';
}

const SERVICE_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;

/**
 * The hello's names go into the leaf's SPIFFE ID and DNS name and into log lines: each must be a
 * name, nothing that reshapes a URI or a line. Values are not echoed back (they may be anything).
 */
function checkSidecarHello(h: NonNullable<SidecarMessage['hello']>): void {
  const v: Violation[] = [];
  if (typeof h.serviceId !== 'string' || (h.serviceId !== '' && !SERVICE_ID_RE.test(h.serviceId)))
    v.push({ Field: 'hello.service_id', Message: 'must be 1-128 letters, digits, dots, colons, dashes or underscores' });
  if (typeof h.service !== 'string' || (h.service !== '' && !isServiceName(h.service)))
    v.push({ Field: 'hello.service', Message: `must be a service name (${SERVICE_NAME_RULE})` });
  if (typeof h.namespace !== 'string' || (h.namespace !== '' && !isServiceName(h.namespace)))
    v.push({ Field: 'hello.namespace', Message: `must be a namespace name (${SERVICE_NAME_RULE})` });
  if (typeof h.token !== 'string' || h.token.length > 512) v.push({ Field: 'hello.token', Message: 'must be at most 512 characters' });
  if (typeof h.version !== 'string' || h.version.length > 128 || /[\u0000-\u001f]/.test(h.version))
    v.push({ Field: 'hello.version', Message: 'must be at most 128 characters, without control characters' });
  if (v.length) throw invalid(v);
}
