// The server's end of the data-plane channel: one stream per sidecar. It resolves who the sidecar
// is (and that its token may act for that service), pushes its whole configuration on every change
// that concerns it, and stores the flow records it reports.
import * as grpc from '@grpc/grpc-js';
import type { Component } from '../core/lifecycle.js';
import { IsthmusError } from '../core/errors.js';
import type { Store, Change } from '../store/index.js';
import type { Catalog, ServiceRecord } from '../catalog/index.js';
import type { Intentions } from '../intentions/index.js';
import type { CertificateAuthority, LeafCache } from '../ca/index.js';
import type { Acl } from '../acl/index.js';
import type { FlowStore } from '../dataflow/index.js';
import { silentLogger, type Logger } from '../telemetry/index.js';
import { fromWire } from './flow-wire.js';
import { dataPlaneService, type SidecarConfigMessage, type SidecarMessage, type WireUpstream } from './proto.js';

export interface DataPlaneServerOptions {
  store: Store;
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
}

const WATCHED = new Set(['services', 'checks', 'nodes', 'intentions', 'ca-roots', 'ca-intermediates', 'ca-config']);

interface Target {
  id: string;
  service: string;
  namespace: string;
  proxy?: ServiceRecord;
}

export class DataPlaneServer implements Component {
  readonly name = 'dataplane';
  private server: grpc.Server | undefined;
  private readonly streams = new Set<grpc.ServerDuplexStream<SidecarMessage, SidecarConfigMessage>>();
  private readonly log: Logger;
  port = 0;
  /** Flow records refused as malformed (named in the log). */
  rejectedFlows = 0;

  constructor(private readonly opts: DataPlaneServerOptions) {
    this.log = (opts.logger ?? silentLogger).child({ component: 'dataplane' });
  }

  get address(): string {
    return `${this.opts.host}:${this.port}`;
  }

  async start(): Promise<void> {
    const server = new grpc.Server({ 'grpc.max_receive_message_length': 4 << 20 });
    server.addService(dataPlaneService().service, { stream: (call: grpc.ServerDuplexStream<SidecarMessage, SidecarConfigMessage>) => this.handle(call) });
    this.port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`${this.opts.host}:${this.opts.port}`, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
    );
    this.server = server;
  }

  async stop(): Promise<void> {
    for (const s of this.streams) s.end();
    await new Promise<void>((resolve) => {
      if (!this.server) return resolve();
      this.server.tryShutdown(() => resolve());
      setTimeout(() => {
        this.server?.forceShutdown();
        resolve();
      }, 2000).unref();
    });
  }

  private handle(call: grpc.ServerDuplexStream<SidecarMessage, SidecarConfigMessage>): void {
    this.streams.add(call);
    let target: Target | undefined;
    let version = 0;
    let lastSent = '';
    let unsubscribe: (() => void) | undefined;
    let pending: NodeJS.Timeout | undefined;
    let closed = false;
    let leafWait: AbortController | undefined;
    const helloTimer = setTimeout(() => refuse('ISTHMUS_ERR_INVALID', 'the first message of a stream must be hello (within 10 s)'), 10_000);

    const cleanup = () => {
      closed = true;
      clearTimeout(helloTimer);
      clearTimeout(pending);
      unsubscribe?.();
      leafWait?.abort();
      this.streams.delete(call);
    };
    const refuse = (code: string, message: string) => {
      if (closed) return;
      this.log.warn('sidecar stream refused', { code, error: message });
      call.write({ version: 0, error: message, errorCode: code } as SidecarConfigMessage);
      call.end();
      cleanup();
    };
    const push = async () => {
      if (closed || !target) return;
      try {
        const cfg = await this.build(target);
        const body = JSON.stringify(cfg);
        if (body === lastSent) return;
        lastSent = body;
        call.write({ ...cfg, version: ++version });
      } catch (err) {
        this.log.warn('cannot build sidecar configuration; will retry on the next change', { service: target.service, error: err });
      }
    };
    const schedule = () => {
      if (pending) return;
      pending = setTimeout(() => {
        pending = undefined;
        void push();
      }, 20);
    };
    const watchLeaf = async () => {
      while (!closed && target) {
        leafWait = new AbortController();
        const current = await this.opts.leaves.get(target.service, target.namespace).catch(() => undefined);
        if (!current) return;
        await this.opts.leaves.wait(target.service, target.namespace, current.ModifyIndex, 10 * 60_000, leafWait.signal).catch(() => undefined);
        if (!closed) schedule();
      }
    };

    call.on('data', (msg: SidecarMessage) => {
      if (closed) return;
      if (msg.hello) {
        if (target) return refuse('ISTHMUS_ERR_INVALID', 'hello was sent twice');
        clearTimeout(helloTimer);
        try {
          target = this.resolve(msg.hello);
        } catch (err) {
          const e = err as IsthmusError;
          return refuse(e.code ?? 'ISTHMUS_ERR_INVALID', e.message);
        }
        this.log.info('sidecar connected', { service: target.service, id: target.id });
        unsubscribe = this.opts.store.subscribe((changes: Change[]) => {
          if (changes.some((c) => WATCHED.has(c.table))) schedule();
        });
        void push();
        void watchLeaf();
        return;
      }
      if (!target) return refuse('ISTHMUS_ERR_INVALID', 'the first message of a stream must be hello');
      if (msg.flows) {
        const good = [];
        for (const [i, rec] of (msg.flows.records ?? []).entries()) {
          try {
            good.push(fromWire(rec, `records[${i}]`));
          } catch (err) {
            this.rejectedFlows++;
            this.log.warn('flow record refused', { service: target.service, error: (err as Error).message });
          }
        }
        if (good.length) this.opts.flows.append(good);
      }
    });
    call.on('error', cleanup);
    call.on('end', () => {
      cleanup();
      call.end();
    });
    call.on('cancelled', cleanup);
  }

  private resolve(hello: NonNullable<SidecarMessage['hello']>): Target {
    const { authz } = this.opts.acl.resolve(hello.token || undefined);
    const ns = hello.namespace || 'default';
    if (hello.serviceId) {
      const proxy = this.opts.catalog.agentService(hello.serviceId);
      if (!proxy) throw new IsthmusError('ISTHMUS_ERR_NOT_FOUND', `no service with ID "${hello.serviceId}" is registered on this server's node`);
      const dest = proxy.Kind === 'connect-proxy' ? proxy.Proxy?.DestinationServiceName : proxy.Service;
      if (!dest) throw new IsthmusError('ISTHMUS_ERR_INVALID', `service "${hello.serviceId}" is not a sidecar proxy`);
      if (!authz.serviceWrite(dest)) throw new IsthmusError('ISTHMUS_ERR_PERMISSION_DENIED', `token lacks service:write on ${dest}`);
      return { id: proxy.ID, service: dest, namespace: proxy.Namespace, proxy };
    }
    if (!hello.service) throw new IsthmusError('ISTHMUS_ERR_INVALID', 'hello needs service_id or service');
    if (!authz.serviceWrite(hello.service)) throw new IsthmusError('ISTHMUS_ERR_PERMISSION_DENIED', `token lacks service:write on ${hello.service}`);
    return { id: `${hello.service}-sidecar-proxy`, service: hello.service, namespace: ns };
  }

  /** The whole configuration of one sidecar, from the current state. */
  private async build(t: Target): Promise<SidecarConfigMessage> {
    const td = this.opts.trustDomain();
    const dc = this.opts.dc;
    const proxy = t.proxy ? this.opts.catalog.agentService(t.proxy.ID) ?? t.proxy : undefined;
    const leaf = await this.opts.leaves.get(t.service, t.namespace);
    const bundle = this.opts.ca.bundle();
    const upstreams: WireUpstream[] = (proxy?.Proxy?.Upstreams ?? []).map((u) => {
      const ns = u.DestinationNamespace ?? 'default';
      const udc = u.Datacenter ?? dc;
      const endpoints =
        udc === dc
          ? this.opts.catalog.connectInstances(u.DestinationName, { passingOnly: true }).map((e) => ({
              host: e.service.Address || e.node.Address,
              port: e.service.Port,
              sni: `${u.DestinationName}.${ns}.${udc}.internal.${td}`,
              spiffeId: `spiffe://${td}/ns/${ns}/dc/${udc}/svc/${u.DestinationName}`,
            }))
          : [];
      return { name: u.DestinationName, namespace: ns, datacenter: udc, localBindHost: u.LocalBindAddress ?? '127.0.0.1', localBindPort: u.LocalBindPort, endpoints };
    });
    const relevant = this.opts.intentions
      .list()
      .filter((i) => (i.DestinationName === '*' || i.DestinationName === t.service) && (i.DestinationNS === '*' || i.DestinationNS === t.namespace));
    const protocol = String((proxy?.Proxy?.Config as Record<string, unknown> | undefined)?.protocol ?? 'tcp');
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
            protocol: protocol === 'http' ? 'http' : 'tcp',
          }
        : null,
      upstreams,
      intentions: { intentionsJson: JSON.stringify(relevant), defaultAllow: this.opts.defaultAllow(), index: this.opts.intentions.index(), sourceDc: dc },
    };
  }
}
