// The mesh gateway's end of the data-plane channel (the Gateway RPC): says which gateway it is and
// where it listens, takes its routes on every push, reports flow records.
import type { GatewayRoutes } from '../gateway/index.js';
import { silentLogger, type Logger } from '../telemetry/index.js';
import { ChannelClient } from './channel-client.js';
import type { GatewayConfigMessage } from './proto.js';

export interface GatewayClientOptions {
  /** host:port of the server's gRPC listener. */
  serverAddr: string;
  /** Catalog instance ID of the gateway. */
  id: string;
  /** Service name (default mesh-gateway). */
  name?: string;
  dc: string;
  /** host:port this DC's sidecars reach the gateway on. */
  lanAddress: string;
  /** host:port other DCs' gateways reach it on. */
  wanAddress: string;
  token?: string;
  version?: string;
  logger?: Logger;
  onRoutes: (routes: GatewayRoutes, config: GatewayConfigMessage) => void;
  /** A refusal the server says is final (wrong DC, permission denied). */
  onFatal?: (code: string, message: string) => void;
  flushMs?: number;
  maxBuffered?: number;
}

/** A pushed configuration as the routing table's input. */
export function toGatewayRoutes(m: GatewayConfigMessage): GatewayRoutes {
  return {
    dc: m.dc,
    trustDomain: m.trustDomain,
    services: (m.services ?? []).map((s) => ({
      name: s.name,
      namespace: s.namespace || 'default',
      endpoints: (s.endpoints ?? []).map((e) => ({ host: e.host, port: e.port, tags: e.tags ?? [] })),
    })),
    serverAddresses: m.serverAddresses ?? [],
    remotes: (m.remotes ?? []).map((r) => ({ dc: r.dc, gateways: r.gateways ?? [] })),
  };
}

export class GatewayClient extends ChannelClient<GatewayConfigMessage> {
  constructor(opts: GatewayClientOptions) {
    super({
      serverAddr: opts.serverAddr,
      method: 'gateway',
      kind: 'gateway',
      log: (opts.logger ?? silentLogger).child({ component: 'dataplane' }),
      hello: () => ({
        id: opts.id,
        name: opts.name ?? '',
        dc: opts.dc,
        lanAddress: opts.lanAddress,
        wanAddress: opts.wanAddress,
        token: opts.token ?? '',
        version: opts.version ?? '',
      }),
      onConfig: (m) => opts.onRoutes(toGatewayRoutes(m), m),
      onFatal: opts.onFatal,
      flushMs: opts.flushMs,
      maxBuffered: opts.maxBuffered,
    });
  }
}
