// Loads proto/isthmus/v1/dataplane.proto (same relative path from src/ and dist/) into grpc-js.
import type * as grpc from '@grpc/grpc-js';
import { loadService, protoPath } from '../core/proto.js';

export const DATAPLANE_PROTO = protoPath('dataplane.proto');

/** Records one flow batch may hold: a client sends at most this many in one message. */
export const MAX_FLOW_BATCH = 1000;

export function dataPlaneService(): grpc.ServiceClientConstructor {
  return loadService('dataplane.proto', 'DataPlane');
}

// The messages as grpc-js hands them over (camelCase, defaults filled).
export interface WireIdentity {
  spiffeId: string;
  service: string;
  namespace: string;
  dc: string;
}
export interface WireFlow {
  id: string;
  traceId: string;
  requestIndex: number;
  hop: string;
  dc: string;
  reporter: string;
  source: WireIdentity | null;
  destination: WireIdentity | null;
  sni: string;
  verdict: string;
  reason: string;
  intentionId: string;
  intentionDc: string;
  intentionIndex: number;
  startTimeMs: number;
  durationMs: number;
  bytesIn: number;
  bytesOut: number;
  http: { method: string; path: string; status: number; traceparent: string } | null;
  routing: { target: string; route: string; split: string; retries: number; failover: string } | null;
}
export interface SidecarMessage {
  hello?: { serviceId: string; service: string; namespace: string; token: string; version: string };
  flows?: { records: WireFlow[] };
  ack?: { version: number };
  kind?: string;
}
export interface WireEndpoint {
  host: string;
  port: number;
  sni: string;
  spiffeId: string;
}
export interface WireUpstream {
  name: string;
  namespace: string;
  datacenter: string;
  localBindHost: string;
  localBindPort: number;
  endpoints: WireEndpoint[];
  protocol: string;
  chainJson: string;
  targets: WireTarget[];
  passiveHealthCheckJson: string;
}
export interface WireTarget {
  id: string;
  datacenter: string;
  healthy: boolean;
  healthAgeMs: number;
  endpoints: WireEndpoint[];
}
export interface SidecarConfigMessage {
  version: number;
  error: string;
  errorCode: string;
  service: { id: string; name: string; namespace: string; dc: string; trustDomain: string } | null;
  leaf: { certPem: string; keyPem: string; spiffeId: string; validBefore: string } | null;
  bundle: { roots: string[]; chain: string[]; activeRootId: string; index: number } | null;
  inbound: { bindHost: string; bindPort: number; localAppHost: string; localAppPort: number; protocol: string } | null;
  upstreams: WireUpstream[];
  intentions: { intentionsJson: string; defaultAllow: boolean; index: number; sourceDc: string } | null;
}

export interface GatewayHelloMessage {
  id: string;
  name: string;
  dc: string;
  lanAddress: string;
  wanAddress: string;
  token: string;
  version: string;
}
export interface GatewayMessage {
  hello?: GatewayHelloMessage;
  flows?: { records: WireFlow[] };
  ack?: { version: number };
  kind?: string;
}
export interface WireGatewayEndpoint {
  host: string;
  port: number;
  tags: string[];
}
export interface WireGatewayService {
  name: string;
  namespace: string;
  endpoints: WireGatewayEndpoint[];
}
export interface GatewayConfigMessage {
  version: number;
  error: string;
  errorCode: string;
  dc: string;
  trustDomain: string;
  services: WireGatewayService[];
  serverAddresses: string[];
  remotes: { dc: string; gateways: string[] }[];
}
