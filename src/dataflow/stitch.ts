// Joins the records of one connection, written by up to four hops in several DCs, into one trace:
// the hops in path order, the verdict and the hop that decided it, and the HTTP requests inside.
import { invalid } from '../core/errors.js';
import type { FlowHop, FlowIdentity, FlowRecord, FlowVerdict } from './flow-record.js';

/** The order a connection passes the hops in. */
export const HOP_ORDER: readonly FlowHop[] = ['client-sidecar', 'gateway-egress', 'gateway-ingress', 'server-sidecar'];

/** The traceId of hops that never saw a ClientHello: it joins nothing. */
export const ZERO_TRACE_ID = '0'.repeat(32);

export interface TraceHop {
  recordId: string;
  hop: FlowHop;
  dc: string;
  reporter: string;
  sni: string;
  startTime: number;
  durationMs: number;
  verdict: FlowVerdict;
  reason: string;
  intentionId: string;
  intentionDc: string;
  intentionIndex: number;
  bytesIn: number;
  bytesOut: number;
}

export interface TraceRequest {
  requestIndex: number;
  method: string;
  path: string;
  status: number;
  traceparent?: string;
  verdict: FlowVerdict;
  decidedBy?: TraceHop;
  startTime: number;
  durationMs: number;
  hops: TraceHop[];
}

export interface Trace {
  traceId: string;
  source: FlowIdentity;
  destination: FlowIdentity;
  /** The SNI the connection asked for (from the first hop that saw one). */
  sni: string;
  verdict: FlowVerdict;
  /**
   * The hop that decided: the first that refused (denied, no_route); else the deepest that failed;
   * else the last whose intention allowed it.
   */
  decidedBy?: TraceHop;
  /** The connection's hops (request index 0) in path order. */
  hops: TraceHop[];
  /** Hops on the connection's path, up to the one that decided, that sent no record. */
  missingHops: FlowHop[];
  requests: TraceRequest[];
  /** DCs that wrote records, in path order. */
  dcs: string[];
  /** Epoch ms: the earliest start and the latest end of any record. */
  startTime: number;
  endTime: number;
  durationMs: number;
  /** Distinct records joined (duplicates by id counted once). */
  records: number;
}

/** Stitches the records of one trace; refuses an empty list or records of several traces. */
export function stitchTrace(records: readonly FlowRecord[]): Trace {
  if (records.length === 0) throw invalid([{ Field: 'records', Message: 'at least one record is needed' }]);
  const traceId = records[0].traceId;
  const other = records.findIndex((r) => r.traceId !== traceId);
  if (other >= 0) throw invalid([{ Field: `records[${other}].traceId`, Message: `is ${records[other].traceId}, not ${traceId}: one trace at a time` }]);

  const unique = dedupe(records);
  const byRequest = new Map<number, FlowRecord[]>();
  for (const r of unique) {
    const list = byRequest.get(r.requestIndex) ?? [];
    list.push(r);
    byRequest.set(r.requestIndex, list);
  }
  const connection = pathOrder(byRequest.get(0) ?? []);
  const requests: TraceRequest[] = [...byRequest.keys()]
    .filter((i) => i > 0)
    .sort((a, b) => a - b)
    .map((i) => stitchRequest(i, pathOrder(byRequest.get(i)!)));

  // Without connection records (only requests reached this query) the requests' hops decide.
  const deciding = connection.length ? connection : pathOrder(unique);
  const decision = decide(deciding);
  const ordered = pathOrder(unique);
  const source = identity(ordered.map((r) => r.source));
  const destination = identity([...ordered].reverse().map((r) => r.destination));
  const [startTime, endTime] = span(unique);

  return {
    traceId,
    source,
    destination,
    sni: ordered.find((r) => r.sni)?.sni ?? '',
    verdict: decision.verdict,
    ...(decision.by ? { decidedBy: decision.by } : {}),
    hops: connection.map(toHop),
    missingHops: missing(connection, source, destination, decision),
    requests,
    dcs: [...new Set(ordered.map((r) => r.dc).filter(Boolean))],
    startTime,
    endTime,
    durationMs: endTime - startTime,
    records: unique.length,
  };
}

/** Groups records by trace and stitches each; newest trace first. The zero trace is left out. */
export function stitchTraces(records: readonly FlowRecord[]): Trace[] {
  const groups = new Map<string, FlowRecord[]>();
  for (const r of records) {
    if (r.traceId === ZERO_TRACE_ID) continue;
    const list = groups.get(r.traceId) ?? [];
    list.push(r);
    groups.set(r.traceId, list);
  }
  return [...groups.values()].map(stitchTrace).sort((a, b) => b.startTime - a.startTime || (a.traceId < b.traceId ? -1 : 1));
}

function stitchRequest(requestIndex: number, records: FlowRecord[]): TraceRequest {
  const decision = decide(records);
  // The innermost hop with HTTP details saw what the application answered.
  const http = [...records].reverse().find((r) => r.http)?.http;
  const [startTime, endTime] = span(records);
  return {
    requestIndex,
    method: http?.method ?? '',
    path: http?.path ?? '',
    status: http?.status ?? 0,
    ...(http?.traceparent ? { traceparent: http.traceparent } : {}),
    verdict: decision.verdict,
    ...(decision.by ? { decidedBy: decision.by } : {}),
    startTime,
    durationMs: endTime - startTime,
    hops: records.map(toHop),
  };
}

/** Earliest start and latest end (a long keep-alive connection can hold many requests: no spread). */
function span(records: readonly FlowRecord[]): [number, number] {
  let start = Infinity;
  let end = -Infinity;
  for (const r of records) {
    start = Math.min(start, r.startTime);
    end = Math.max(end, r.startTime + r.durationMs);
  }
  return [start, end];
}

function dedupe(records: readonly FlowRecord[]): FlowRecord[] {
  const seen = new Set<string>();
  const out: FlowRecord[] = [];
  for (const r of records) {
    if (seen.has(r.id)) continue;
    seen.add(r.id);
    out.push(r);
  }
  return out;
}

function pathOrder(records: readonly FlowRecord[]): FlowRecord[] {
  return [...records].sort(
    (a, b) =>
      HOP_ORDER.indexOf(a.hop) - HOP_ORDER.indexOf(b.hop) ||
      a.startTime - b.startTime ||
      a.requestIndex - b.requestIndex ||
      (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
  );
}

/**
 * The first hop on the path that refused (denied, no_route) decides. A refusal or a failure makes
 * the hops before it fail too (a client sidecar sees the handshake closed when the server sidecar
 * denies or the egress gateway finds no upstream), so an error only decides when no hop refused,
 * and then the deepest error on the path: the ones before it are its echo.
 * Allowed all along: the last hop whose intention allowed it decided.
 */
function decide(records: FlowRecord[]): { verdict: FlowVerdict; by?: TraceHop } {
  const refused = records.find((r) => r.verdict === 'denied' || r.verdict === 'no_route');
  if (refused) return { verdict: refused.verdict, by: toHop(refused) };
  const failed = [...records].reverse().find((r) => r.verdict === 'error');
  if (failed) return { verdict: 'error', by: toHop(failed) };
  const authorizer = [...records].reverse().find((r) => r.intentionId);
  return { verdict: 'allowed', ...(authorizer ? { by: toHop(authorizer) } : {}) };
}

function missing(connection: FlowRecord[], source: FlowIdentity, destination: FlowIdentity, decision: { verdict: FlowVerdict; by?: TraceHop }): FlowHop[] {
  const present = new Set(connection.map((r) => r.hop));
  const crossDc = (source.dc && destination.dc && source.dc !== destination.dc) || present.has('gateway-egress') || present.has('gateway-ingress');
  let expected = crossDc ? [...HOP_ORDER] : (['client-sidecar', 'server-sidecar'] as FlowHop[]);
  if (decision.verdict !== 'allowed' && decision.by) {
    // Past the hop that stopped it, nothing is expected.
    const stop = HOP_ORDER.indexOf(decision.by.hop);
    expected = expected.filter((h) => HOP_ORDER.indexOf(h) <= stop);
  }
  return expected.filter((h) => !present.has(h));
}

/** The identity the records agree on: a verified one (with a SPIFFE ID) first, else the first named. */
function identity(candidates: FlowIdentity[]): FlowIdentity {
  const verified = candidates.find((c) => c.spiffeId);
  const named = candidates.find((c) => c.service);
  const base = verified ?? named ?? { spiffeId: '', service: '', namespace: '', dc: '' };
  return {
    spiffeId: base.spiffeId,
    service: base.service || named?.service || '',
    namespace: base.namespace || named?.namespace || '',
    dc: base.dc || candidates.find((c) => c.dc)?.dc || '',
  };
}

function toHop(r: FlowRecord): TraceHop {
  return {
    recordId: r.id,
    hop: r.hop,
    dc: r.dc,
    reporter: r.reporter,
    sni: r.sni,
    startTime: r.startTime,
    durationMs: r.durationMs,
    verdict: r.verdict,
    reason: r.reason,
    intentionId: r.intentionId,
    intentionDc: r.intentionDc,
    intentionIndex: r.intentionIndex,
    bytesIn: r.bytesIn,
    bytesOut: r.bytesOut,
  };
}
