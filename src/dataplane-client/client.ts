// The sidecar's end of the data-plane channel (the Stream RPC): says which service it proxies,
// takes its whole configuration on every push, reports flow records.
import { ErrorCodes, IsthmusError } from '../core/errors.js';
import type { Intention } from '../intentions/index.js';
import type { CompiledChain } from '../config-entries/index.js';
import type { PassiveHealthCheck, SidecarConfig, SidecarProtocol, SidecarUpstream } from '../sidecar/index.js';
import { silentLogger, type Logger } from '../telemetry/index.js';
import { ChannelClient } from './channel-client.js';
import type { SidecarConfigMessage } from './proto.js';

export interface DataPlaneClientOptions {
  /** host:port of the server's gRPC listener. */
  serverAddr: string;
  serviceId?: string;
  service?: string;
  namespace?: string;
  token?: string;
  version?: string;
  logger?: Logger;
  onConfig: (config: SidecarConfigMessage) => void;
  /** A refusal the server says is final (unknown service, permission denied). */
  onFatal?: (code: string, message: string) => void;
  /** Flush flows at least this often (ms). */
  flushMs?: number;
  /** Records kept while disconnected; beyond it the oldest are dropped (and counted). */
  maxBuffered?: number;
}

/** A pushed configuration as the sidecar's input. */
export function toSidecarConfig(m: SidecarConfigMessage): SidecarConfig {
  if (!m.service || !m.leaf || !m.bundle || !m.intentions) throw new IsthmusError(ErrorCodes.INVALID, 'the server sent an incomplete sidecar configuration');
  return {
    service: m.service,
    leaf: { certPem: m.leaf.certPem, keyPem: m.leaf.keyPem, spiffeId: m.leaf.spiffeId },
    bundle: { roots: m.bundle.roots, chain: m.bundle.chain },
    ...(m.inbound && m.inbound.bindPort
      ? {
          inbound: {
            bindHost: m.inbound.bindHost,
            bindPort: m.inbound.bindPort,
            localAppHost: m.inbound.localAppHost,
            localAppPort: m.inbound.localAppPort,
            protocol: protocolOfWire(m.inbound.protocol),
          },
        }
      : {}),
    upstreams: m.upstreams.map(toSidecarUpstream),
    policy: {
      intentions: JSON.parse(m.intentions.intentionsJson) as Intention[],
      defaultAllow: m.intentions.defaultAllow,
      index: m.intentions.index,
      sourceDc: m.intentions.sourceDc,
    },
  };
}

const PROTOCOLS: readonly string[] = ['tcp', 'http', 'http2', 'grpc'];

/** A protocol as pushed; anything this sidecar does not know is tcp (passed through, never parsed). */
export function protocolOfWire(p: string): SidecarProtocol {
  return PROTOCOLS.includes(p) ? (p as SidecarProtocol) : 'tcp';
}

function toSidecarUpstream(u: SidecarConfigMessage['upstreams'][number]): SidecarUpstream {
  const { chainJson, targets, protocol, endpoints, passiveHealthCheckJson, ...rest } = u;
  return {
    ...rest,
    endpoints: endpoints.map((e) => ({ ...e })),
    protocol: protocolOfWire(protocol),
    ...(chainJson ? { chain: JSON.parse(chainJson) as CompiledChain } : {}),
    targets: (targets ?? []).map((t) => ({ ...t, endpoints: t.endpoints.map((e) => ({ ...e })) })),
    ...(passiveHealthCheckJson ? { passiveHealthCheck: JSON.parse(passiveHealthCheckJson) as PassiveHealthCheck } : {}),
  };
}

export class DataPlaneClient extends ChannelClient<SidecarConfigMessage> {
  constructor(opts: DataPlaneClientOptions) {
    super({
      serverAddr: opts.serverAddr,
      method: 'stream',
      kind: 'sidecar',
      log: (opts.logger ?? silentLogger).child({ component: 'dataplane' }),
      hello: () => ({
        serviceId: opts.serviceId ?? '',
        service: opts.service ?? '',
        namespace: opts.namespace ?? 'default',
        token: opts.token ?? '',
        version: opts.version ?? '',
      }),
      onConfig: opts.onConfig,
      onFatal: opts.onFatal,
      flushMs: opts.flushMs,
      maxBuffered: opts.maxBuffered,
    });
  }
}
