// A FlowRecord: what one hop (client sidecar, egress gateway, ingress gateway, server sidecar)
// saw of one connection or one HTTP request inside it. All hops of a connection share its traceId:
// the first 16 bytes (hex) of the TLS ClientHello random, which every hop sees without decrypting.

export type FlowHop = 'client-sidecar' | 'gateway-egress' | 'gateway-ingress' | 'server-sidecar';
export type FlowVerdict = 'allowed' | 'denied' | 'no_route' | 'error';

export interface FlowIdentity {
  /** SPIFFE ID when known (a verified certificate), else empty. */
  spiffeId: string;
  service: string;
  namespace: string;
  dc: string;
}

export interface FlowRecord {
  /** Unique per record. */
  id: string;
  /** 32 hex chars: the first 16 bytes of the ClientHello random. */
  traceId: string;
  /** 0 for the connection itself; 1.. for the HTTP requests inside it, in order. */
  requestIndex: number;
  hop: FlowHop;
  /** DC of the hop that wrote the record. */
  dc: string;
  /** The node/instance that wrote it (sidecar service ID, gateway name). */
  reporter: string;
  source: FlowIdentity;
  destination: FlowIdentity;
  sni: string;
  verdict: FlowVerdict;
  /** Why: e.g. "allowed by intention", "no intention matched: default deny", "unknown SNI", "peer certificate invalid". */
  reason: string;
  /** The deciding intention's ID, or "default"; empty when no authorization was made at this hop. */
  intentionId: string;
  /** The DC where the deciding intention was written (the primary, once federated). */
  intentionDc: string;
  /** The replicated store index of the intention set in force when it decided. */
  intentionIndex: number;
  /** Epoch ms. */
  startTime: number;
  durationMs: number;
  bytesIn: number;
  bytesOut: number;
  http?: { method: string; path: string; status: number; traceparent?: string };
  /** A client sidecar's choice along the discovery chain (absent where no chain was walked). */
  routing?: FlowRouting;
}

export interface FlowRouting {
  /** The chain target chosen: `[<subset>.]<service>.<namespace>.<dc>`. */
  target: string;
  /** The route that took the request (`Routes[2]`), empty without a router. */
  route: string;
  /** The split entry that chose the target (`Splits[0]`), empty without a splitter. */
  split: string;
  /** Attempts after the first. */
  retries: number;
  /** Set when the call went to a failover target: why (no healthy instance, ejected, timeout). */
  failover: string;
}
