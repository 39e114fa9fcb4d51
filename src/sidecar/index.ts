export { Sidecar } from './sidecar.js';
export type {
  SidecarConfig,
  SidecarOptions,
  SidecarUpstream,
  SidecarEndpoint,
  SidecarInbound,
  SidecarPolicy,
  SidecarProtocol,
  SidecarTarget,
  PassiveHealthCheck,
} from './sidecar.js';
export { spiffeOf, traceIdFromKeylog } from './identity.js';
