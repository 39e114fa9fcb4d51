// Loads proto/isthmus/v1/federation.proto (same relative path from src/ and dist/) into grpc-js.
import type * as grpc from '@grpc/grpc-js';
import { loadService, protoPath } from '../core/proto.js';

export const FEDERATION_PROTO = protoPath('federation.proto');

export function federationService(): grpc.ServiceClientConstructor {
  return loadService('federation.proto', 'Federation');
}

// The messages as grpc-js hands them over (camelCase, defaults filled).
export interface JoinRequest {
  secret: string;
  datacenter: string;
  publicKeyPem: string;
}
export interface JoinResponse {
  trustDomain: string;
  primaryDatacenter: string;
  intermediateCertPem: string;
  rootId: string;
  rootsJson: string;
  index: number;
}
export interface SignRequest {
  datacenter: string;
  publicKeyPem: string;
}
export interface SignResponse {
  certPem: string;
  rootId: string;
}
export interface WireResource {
  table: string;
  key: string;
  op: string;
  valueJson: string;
  index: number;
}
export interface WireExportedService {
  name: string;
  namespace: string;
  instances: number;
  healthy: number;
  connectHealthy: number;
  tags: string[];
  meta: Record<string, string>;
  subsetHealthy?: Record<string, number>;
}
export interface PeerMessage {
  hello?: { datacenter: string; resumeIndex: number; version: string };
  changes?: { snapshot: boolean; index: number; resources: WireResource[]; committedAtMs: number };
  ack?: { stream: string; index: number };
  export?: { datacenter: string; index: number; full: boolean; gateways: string[]; upserts: WireExportedService[]; deletes: string[] };
  heartbeat?: { sentAtMs: number; index: number };
  kind?: string;
}
export interface ForwardRequest {
  method: string;
  path: string;
  body: string;
  token: string;
  originDatacenter: string;
}
export interface ForwardResponse {
  status: number;
  body: string;
  contentType: string;
  index: number;
  receiptsJson: string;
}

/** The generated client, typed for the calls we make. */
export interface FederationClient extends grpc.Client {
  join(req: JoinRequest, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: JoinResponse) => void): grpc.ClientUnaryCall;
  signIntermediate(req: SignRequest, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: SignResponse) => void): grpc.ClientUnaryCall;
  forward(req: ForwardRequest, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: ForwardResponse) => void): grpc.ClientUnaryCall;
  query(req: ForwardRequest, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: ForwardResponse) => void): grpc.ClientUnaryCall;
  peerStream(opts?: grpc.CallOptions): grpc.ClientDuplexStream<PeerMessage, PeerMessage>;
}
