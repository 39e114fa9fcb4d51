// The sidecar's configuration as pushed in (service, leaf, bundle, inbound, upstreams, policy) and
// its options.
import type { CompiledChain } from '../config-entries/index.js';
import type { FlowRecord } from '../dataflow/index.js';
import type { Intention } from '../intentions/index.js';
import type { Logger } from '../telemetry/index.js';

export interface SidecarEndpoint {
  host: string;
  port: number;
  sni: string;
  spiffeId: string;
}

/** One target of an upstream's discovery chain, with its endpoints as the server sees them now. */
export interface SidecarTarget {
  /** The chain's target ID (`[<subset>.]<service>.<namespace>.<dc>`). */
  id: string;
  datacenter: string;
  /**
   * False when the target has no healthy instance as far as the server knows (for another DC: its
   * exported catalog); its endpoints may still be listed (another DC's gateways) but are tried last.
   */
  healthy: boolean;
  /** How old the health behind `healthy` is, in ms (0: this DC's own catalog). */
  healthAgeMs: number;
  endpoints: SidecarEndpoint[];
}

export type SidecarProtocol = 'tcp' | 'http' | 'http2' | 'grpc';

export interface SidecarUpstream {
  name: string;
  namespace: string;
  datacenter: string;
  localBindHost: string;
  localBindPort: number;
  /** The endpoints of the target chosen now for the chain's default path (the first healthy in its failover order). */
  endpoints: SidecarEndpoint[];
  /** The destination's protocol (the chain's), which says whether the upstream is L4 or L7. Default tcp. */
  protocol?: SidecarProtocol;
  /** The compiled discovery chain; absent from servers that do not compile one. */
  chain?: CompiledChain;
  /** Every target the chain can reach (failover targets included), with their endpoints. */
  targets?: SidecarTarget[];
  /**
   * service-defaults' `UpstreamConfig.PassiveHealthCheck` for this upstream (Consul's fields), which
   * drives the client sidecar's outlier detection per target; absent: Envoy's defaults (5 consecutive
   * failures eject, 10 s interval, 30 s base ejection, at most 10 % of a target's endpoints, yet one).
   */
  passiveHealthCheck?: PassiveHealthCheck;
}

/** Consul's `UpstreamConfig.PassiveHealthCheck`, as service-defaults writes it. */
export interface PassiveHealthCheck {
  /** How often an endpoint's ejection multiplier decays by one while it stays in (Envoy's interval). Default 10s. */
  Interval?: string;
  /** Consecutive failures (5xx answers, connect or TLS failures) that eject an endpoint. Default 5 (0 means the default, as in Consul). */
  MaxFailures?: number;
  /** The chance, in percent, that reaching MaxFailures ejects. Default 100. */
  EnforcingConsecutive5xx?: number;
  /** At most this percentage of a target's endpoints ejected at once, though one always may be. Default 10. */
  MaxEjectionPercent?: number;
  /** An ejection lasts this times the endpoint's number of ejections (at most 300 s, or this if longer). Default 30s. */
  BaseEjectionTime?: string;
}

export interface SidecarInbound {
  bindHost: string;
  bindPort: number;
  localAppHost: string;
  localAppPort: number;
  protocol: SidecarProtocol;
}

export interface SidecarPolicy {
  intentions: Intention[];
  defaultAllow: boolean;
  index: number;
  sourceDc: string;
}

export interface SidecarConfig {
  service: { id: string; name: string; namespace: string; dc: string; trustDomain: string };
  leaf: { certPem: string; keyPem: string; spiffeId: string };
  bundle: { roots: string[]; chain: string[] };
  inbound?: SidecarInbound;
  upstreams: SidecarUpstream[];
  policy: SidecarPolicy;
}

export interface SidecarOptions {
  config: SidecarConfig;
  onFlow: (r: FlowRecord) => void;
  logger?: Logger;
  /** An inbound TLS handshake (ClientHello included) must complete within this (default 10 s, as the gateway's hello bound). */
  handshakeTimeoutMs?: number;
  /**
   * How long a caller's connection to an L7 inbound may sit with nothing in flight: an idle
   * HTTP/1.1 keep-alive connection is closed, an h2 session with no open stream gets a GOAWAY
   * (default HTTP_IDLE_TIMEOUT_MS, 60 s).
   */
  httpIdleTimeoutMs?: number;
  /**
   * Accept on the upstream listeners through the fast data path where it passes its self-test
   * (true), or plainly (false); unset: as ISTHMUS_FAST_PATH says (see netio/).
   */
  fastPath?: boolean;
}
