// The sidecar proxy of one service instance: an inbound mTLS listener that verifies the caller's
// SPIFFE ID and enforces intentions locally (L4 per connection, L7 per HTTP request), and one local
// listener per upstream that dials the upstream's sidecar over mTLS and checks its identity.
// Certificates and policy are pushed in with update(); open connections are never dropped by a swap.
// This class is the sidecar's face: its lifecycle and updates here; the inbound side in
// sidecar-inbound.ts, the upstreams in sidecar-upstreams.ts, what they share in sidecar-context.ts.
import type net from 'node:net';
import type { Component } from '../core/lifecycle.js';
import { compileIntentions } from '../intentions/index.js';
import { chooseDataPath, logDataPath } from '../netio/index.js';
import type { SidecarConfig, SidecarOptions, SidecarUpstream } from './sidecar-config.js';
import { SidecarContext } from './sidecar-context.js';
import { InboundListener } from './sidecar-inbound.js';
import { UpstreamListeners } from './sidecar-upstreams.js';

export type {
  SidecarConfig,
  SidecarEndpoint,
  SidecarInbound,
  SidecarOptions,
  PassiveHealthCheck,
  SidecarPolicy,
  SidecarProtocol,
  SidecarTarget,
  SidecarUpstream,
} from './sidecar-config.js';
export { HTTP_IDLE_TIMEOUT_MS } from './sidecar-inbound.js';

export class Sidecar implements Component {
  readonly name = 'sidecar';
  private readonly ctx: SidecarContext;
  private readonly inboundSide: InboundListener;
  private readonly upstreamSide: UpstreamListeners;

  constructor(private readonly opts: SidecarOptions) {
    this.ctx = new SidecarContext(opts);
    this.inboundSide = new InboundListener(this.ctx);
    this.upstreamSide = new UpstreamListeners(this.ctx);
  }

  /** Port the inbound listener is bound to. */
  get inboundPort(): number {
    return (this.inboundSide.server?.address() as net.AddressInfo | null)?.port ?? 0;
  }

  upstreams(): SidecarUpstream[] {
    return this.ctx.config.upstreams;
  }

  /** Port of the local listener of upstream `name` (of `datacenter`, when one service is an upstream in several). */
  upstreamPort(name: string, datacenter?: string): number {
    for (const [key, o] of this.upstreamSide.outbound) {
      if (o.name === name && (datacenter === undefined || key.endsWith(`@${datacenter}`))) return (o.server.address() as net.AddressInfo | null)?.port ?? 0;
    }
    return 0;
  }

  /** True once every listener is bound. */
  started = false;

  async start(): Promise<void> {
    const choice = await chooseDataPath({ fastPath: this.opts.fastPath });
    this.upstreamSide.dataPath = choice.path;
    logDataPath(this.ctx.log, choice);
    try {
      if (this.ctx.config.inbound) await this.inboundSide.start(this.ctx.config.inbound);
      for (const u of this.ctx.config.upstreams) await this.upstreamSide.start(u);
    } catch (err) {
      await this.stop();
      throw err;
    }
    this.started = true;
  }

  async stop(): Promise<void> {
    const closing: Promise<void>[] = [];
    if (this.inboundSide.server) closing.push(new Promise((r) => this.inboundSide.server!.close(() => r())));
    closing.push(this.upstreamSide.stop());
    for (const s of this.ctx.sockets) s.destroy();
    this.inboundSide.appAgent.destroy();
    await Promise.all(closing);
  }

  /** New leaf, bundle, policy or endpoints; open connections carry on, new ones use what is new. */
  async update(next: Partial<SidecarConfig>): Promise<void> {
    const prev = this.ctx.config;
    this.ctx.config = { ...prev, ...next };
    if (next.policy) this.ctx.matcher = compileIntentions(next.policy.intentions, { defaultAllow: next.policy.defaultAllow });
    if (next.leaf || next.bundle) {
      // A resumed session would carry the old identity: new certificates mean full handshakes.
      this.ctx.sessions.clear();
      this.ctx.secureContext = this.ctx.buildContext();
      this.inboundSide.server?.setSecureContext(this.ctx.contextOptions());
    }
    // New upstreams get a listener, gone ones close, one whose protocol changed between tcp, http and h2
    // is swapped on its port; the chain, targets and endpoints are read per call from the config.
    if (next.upstreams) await this.upstreamSide.update(prev.upstreams, next.upstreams);
    const was = prev.inbound;
    const now = next.inbound;
    if (this.started && was && now && (was.protocol !== now.protocol || was.localAppHost !== now.localAppHost || was.localAppPort !== now.localAppPort)) {
      // A new listener on the same port (a protocol written in service-defaults reaches a running
      // sidecar): open connections carry on with the one that took them, new ones meet the new one.
      const port = this.inboundPort;
      this.inboundSide.server?.close();
      await this.inboundSide.start({ ...now, bindPort: port });
      this.ctx.log.info('inbound listener restarted', { protocol: now.protocol, port });
    }
  }
}
