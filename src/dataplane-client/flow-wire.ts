// FlowRecord <-> wire Flow, with the checks a server applies to what a sidecar reports:
// a malformed record is refused (named), never stored half-filled.
import { invalid, type Violation } from '../core/errors.js';
import type { FlowRecord, FlowHop, FlowVerdict } from '../dataflow/index.js';
import type { WireFlow } from './proto.js';

const HOPS: FlowHop[] = ['client-sidecar', 'gateway-egress', 'gateway-ingress', 'server-sidecar'];
const VERDICTS: FlowVerdict[] = ['allowed', 'denied', 'no_route', 'error'];
const MAX_TEXT = 1024;

export function toWire(r: FlowRecord): WireFlow {
  return {
    id: r.id,
    traceId: r.traceId,
    requestIndex: r.requestIndex,
    hop: r.hop,
    dc: r.dc,
    reporter: r.reporter,
    source: r.source,
    destination: r.destination,
    sni: r.sni,
    verdict: r.verdict,
    reason: r.reason,
    intentionId: r.intentionId,
    intentionDc: r.intentionDc,
    intentionIndex: r.intentionIndex,
    startTimeMs: r.startTime,
    durationMs: r.durationMs,
    bytesIn: r.bytesIn,
    bytesOut: r.bytesOut,
    http: r.http ? { method: r.http.method, path: r.http.path, status: r.http.status, traceparent: r.http.traceparent ?? '' } : null,
    routing: r.routing ? { ...r.routing } : null,
  };
}

/** Checks and converts one reported record; `path` names it in errors (records[3].verdict). */
export function fromWire(w: WireFlow, path: string): FlowRecord {
  const v: Violation[] = [];
  const text = (field: string, value: unknown, required = false) => {
    if (typeof value !== 'string') v.push({ Field: `${path}.${field}`, Message: 'must be a string' });
    else if (value.length > MAX_TEXT) v.push({ Field: `${path}.${field}`, Message: `longer than ${MAX_TEXT} characters` });
    else if (required && value === '') v.push({ Field: `${path}.${field}`, Message: 'is required' });
  };
  text('id', w.id, true);
  if (!/^[0-9a-f]{32}$/.test(w.traceId ?? '')) v.push({ Field: `${path}.traceId`, Message: 'must be 32 lowercase hex characters' });
  if (!HOPS.includes(w.hop as FlowHop)) v.push({ Field: `${path}.hop`, Message: `must be one of ${HOPS.join(', ')}` });
  if (!VERDICTS.includes(w.verdict as FlowVerdict)) v.push({ Field: `${path}.verdict`, Message: `must be one of ${VERDICTS.join(', ')}` });
  for (const f of ['dc', 'reporter', 'sni', 'reason', 'intentionId', 'intentionDc'] as const) text(f, w[f]);
  if (!w.source) v.push({ Field: `${path}.source`, Message: 'is required' });
  if (!w.destination) v.push({ Field: `${path}.destination`, Message: 'is required' });
  for (const f of ['requestIndex', 'intentionIndex', 'startTimeMs', 'durationMs', 'bytesIn', 'bytesOut'] as const) {
    if (typeof w[f] !== 'number' || !Number.isFinite(w[f]) || w[f] < 0) v.push({ Field: `${path}.${f}`, Message: 'must be a non-negative number' });
  }
  if (w.routing) {
    for (const f of ['target', 'route', 'split', 'failover'] as const) text(`routing.${f}`, w.routing[f]);
    if (typeof w.routing.retries !== 'number' || !Number.isInteger(w.routing.retries) || w.routing.retries < 0)
      v.push({ Field: `${path}.routing.retries`, Message: 'must be a non-negative integer' });
  }
  if (v.length) throw invalid(v);
  const id = (x: WireFlow['source']) => ({ spiffeId: x!.spiffeId, service: x!.service, namespace: x!.namespace, dc: x!.dc });
  return {
    id: w.id,
    traceId: w.traceId,
    requestIndex: w.requestIndex,
    hop: w.hop as FlowHop,
    dc: w.dc,
    reporter: w.reporter,
    source: id(w.source),
    destination: id(w.destination),
    sni: w.sni,
    verdict: w.verdict as FlowVerdict,
    reason: w.reason,
    intentionId: w.intentionId,
    intentionDc: w.intentionDc,
    intentionIndex: w.intentionIndex,
    startTime: w.startTimeMs,
    durationMs: w.durationMs,
    bytesIn: w.bytesIn,
    bytesOut: w.bytesOut,
    ...(w.http && w.http.method
      ? { http: { method: w.http.method, path: w.http.path, status: w.http.status, ...(w.http.traceparent ? { traceparent: w.http.traceparent } : {}) } }
      : {}),
    ...(w.routing && w.routing.target
      ? { routing: { target: w.routing.target, route: w.routing.route, split: w.routing.split, retries: w.routing.retries, failover: w.routing.failover } }
      : {}),
  };
}
