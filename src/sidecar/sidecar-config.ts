// The sidecar's configuration as pushed in (service, leaf, bundle, inbound, upstreams, policy) and
// its options.
import type { FlowRecord } from '../dataflow/index.js';
import type { Intention } from '../intentions/index.js';
import type { Logger } from '../telemetry/index.js';

export interface SidecarEndpoint {
  host: string;
  port: number;
  sni: string;
  spiffeId: string;
}

export interface SidecarUpstream {
  name: string;
  namespace: string;
  datacenter: string;
  localBindHost: string;
  localBindPort: number;
  endpoints: SidecarEndpoint[];
}

export interface SidecarInbound {
  bindHost: string;
  bindPort: number;
  localAppHost: string;
  localAppPort: number;
  protocol: 'tcp' | 'http';
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
   * Accept on the upstream listeners through the fast data path where it passes its self-test
   * (true), or plainly (false); unset: as ISTHMUS_FAST_PATH says (see netio/).
   */
  fastPath?: boolean;
}
