// The compiled discovery chain, in Consul's shape (`GET /v1/discovery-chain/:service` answers
// `{"Chain": CompiledChain}`): the start node, then router -> splitter -> resolver nodes by name,
// and the targets (service, subset, DC) the resolvers end in. The server compiles it from the
// config entries and pushes it, with each target's endpoints, to every client sidecar; the sidecar
// walks it per connection (tcp) or per request (http, http2, grpc).
import type { Protocol, ServiceResolver, ServiceRouter, ServiceSplitter } from './model.js';

export type ChainRoute = NonNullable<ServiceRouter['Routes']>[number];
export type ChainSplit = ServiceSplitter['Splits'][number];

export interface ChainRouterNode {
  Type: 'router';
  /** `<service>.<namespace>` */
  Name: string;
  /** In order; the first whose Match matches takes the request. The last is the default (no Match). */
  Routes: { Definition: ChainRoute; NextNode: string }[];
}

export interface ChainSplitterNode {
  Type: 'splitter';
  Name: string;
  Splits: (Pick<ChainSplit, 'Weight' | 'RequestHeaders' | 'ResponseHeaders'> & { NextNode: string })[];
}

export interface ChainResolverNode {
  Type: 'resolver';
  /** The target ID it resolves. */
  Name: string;
  Resolver: {
    /** True when no service-resolver entry was written (Consul's implicit default). */
    Default: boolean;
    ConnectTimeout: string;
    RequestTimeout?: string;
    Target: string;
    /** The targets to try, in order, when Target has no healthy instance. */
    Failover?: { Targets: string[] };
  };
  LoadBalancer?: ServiceResolver['LoadBalancer'];
}

export type ChainNode = ChainRouterNode | ChainSplitterNode | ChainResolverNode;

export interface ChainTarget {
  /** `<subset>.<service>.<namespace>.<dc>`, or `<service>.<namespace>.<dc>` without a subset (Consul's). */
  ID: string;
  Service: string;
  ServiceSubset: string;
  Namespace: string;
  Datacenter: string;
  MeshGateway: { Mode: string };
  Subset: { Filter?: string; OnlyPassing?: boolean };
  /** The SNI a connection to this target carries (DESIGN.md's names). */
  SNI: string;
  /** The SPIFFE ID its instances present. */
  SpiffeID: string;
}

export interface CompiledChain {
  ServiceName: string;
  Namespace: string;
  /** The DC the chain was compiled for (the caller's). */
  Datacenter: string;
  Protocol: Protocol;
  StartNode: string;
  Nodes: Record<string, ChainNode>;
  Targets: Record<string, ChainTarget>;
}
