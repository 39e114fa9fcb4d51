// @ts-check
// What the views compute from flow records: connections between services (for the graph) and the
// hops of one trace in order. Plain functions over the records /v1/flows returns; no DOM here.
/** @import { FlowHop, FlowIdentity, FlowRecord, FlowVerdict } from './shapes.js' */

/**
 * One connection (or HTTP request) between two services, as the graph counts it.
 * @typedef {{
 *   source: { service: string, dc: string },
 *   destination: { service: string, dc: string },
 *   verdict: FlowVerdict,
 *   reason: string,
 *   intentionId: string,
 *   durationMs: number,
 *   startTime: number,
 * }} Connection
 * @typedef {{
 *   source: Connection['source'],
 *   destination: Connection['destination'],
 *   verdict: FlowVerdict,
 *   count: number,
 *   p99: number | undefined,
 *   last: Connection,
 * }} Edge
 * @typedef {{ datacenters: { name: string, services: string[] }[], edges: Edge[] }} Graph
 */

/** @type {FlowHop[]} */
export const HOPS = ['client-sidecar', 'gateway-egress', 'gateway-ingress', 'server-sidecar'];
/** @type {FlowVerdict[]} */
export const VERDICTS = ['allowed', 'denied', 'no_route', 'error'];
const ZERO_TRACE = '0'.repeat(32);

/**
 * Nearest-rank percentile (p in 0..100) of a list of numbers; undefined for none.
 * @param {number[]} values
 * @param {number} p
 */
export function percentile(values, p) {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/**
 * One unit per connection (or per HTTP request inside one) between two known services, from the
 * sidecar hops. The client and the server sidecar each write a record of the same connection: it
 * counts once. The server sidecar decides (it holds the intentions), so its verdict wins; the client
 * sidecar's duration is what the caller waited, so it wins for the time.
 * @param {FlowRecord[]} records
 * @returns {Connection[]}
 */
export function connections(records) {
  /** @type {Map<string, { source: FlowIdentity, destination: FlowIdentity, client: FlowRecord | undefined, server: FlowRecord | undefined }>} */
  const units = new Map();
  for (const r of records) {
    if (r.hop !== 'client-sidecar' && r.hop !== 'server-sidecar') continue;
    if (!r.source?.service || !r.destination?.service) continue;
    // A client sidecar that found no endpoint for an upstream names the service but no DC: such a
    // call has no place on the graph (the flow table still lists it).
    if (!r.source.dc || !r.destination.dc) continue;
    const src = `${r.source.service}@${r.source.dc}`;
    const dst = `${r.destination.service}@${r.destination.dc}`;
    const key = r.traceId && r.traceId !== ZERO_TRACE ? `${r.traceId}/${r.requestIndex}/${src}/${dst}` : r.id;
    let u = units.get(key);
    if (!u) units.set(key, (u = { source: r.source, destination: r.destination, client: undefined, server: undefined }));
    if (r.hop === 'client-sidecar') u.client = r;
    else u.server = r;
  }
  return [...units.values()].map((u) => {
    // Every unit holds the record that made it, so one of the two is there.
    const decided = /** @type {FlowRecord} */ (u.server ?? u.client);
    const timed = /** @type {FlowRecord} */ (u.client ?? u.server);
    return {
      source: { service: u.source.service, dc: u.source.dc },
      destination: { service: u.destination.service, dc: u.destination.dc },
      verdict: decided.verdict,
      reason: decided.reason,
      intentionId: decided.intentionId,
      durationMs: timed.durationMs,
      startTime: Math.min(.../** @type {FlowRecord[]} */ ([u.client, u.server].filter(Boolean)).map((r) => r.startTime)),
    };
  });
}

/**
 * The graph: every DC with its services (from the catalogs and from the flows), and one edge per
 * source, destination and verdict with its count and p99 duration.
 * `catalogs` maps a DC name to the service names its catalog lists.
 * @param {FlowRecord[]} records
 * @param {Record<string, string[]>} catalogs
 * @param {string[]} datacenters
 * @returns {Graph}
 */
export function graphModel(records, catalogs, datacenters) {
  /** @type {Map<string, Set<string>>} */
  const services = new Map();
  const addService = (/** @type {string} */ dc, /** @type {string} */ name) => {
    if (!dc || !name) return;
    if (!services.has(dc)) services.set(dc, new Set());
    /** @type {Set<string>} */ (services.get(dc)).add(name);
  };
  for (const dc of datacenters) if (!services.has(dc)) services.set(dc, new Set());
  for (const [dc, names] of Object.entries(catalogs)) for (const n of names) addService(dc, n);

  /** @type {Map<string, Omit<Edge, 'p99'> & { durations: number[] }>} */
  const edges = new Map();
  for (const c of connections(records)) {
    addService(c.source.dc, c.source.service);
    addService(c.destination.dc, c.destination.service);
    const key = `${c.source.service}@${c.source.dc}>${c.destination.service}@${c.destination.dc}>${c.verdict}`;
    let e = edges.get(key);
    if (!e) edges.set(key, (e = { source: c.source, destination: c.destination, verdict: c.verdict, count: 0, durations: [], last: c }));
    e.count++;
    e.durations.push(c.durationMs);
    if (c.startTime >= e.last.startTime) e.last = c;
  }
  return {
    datacenters: [...services.keys()].sort().map((dc) => ({ name: dc, services: [.../** @type {Set<string>} */ (services.get(dc))].sort() })),
    edges: [...edges.values()].map((e) => ({
      source: e.source,
      destination: e.destination,
      verdict: e.verdict,
      count: e.count,
      p99: percentile(e.durations, 99),
      last: e.last,
    })),
  };
}

/**
 * Hops of one trace in the order a connection crosses them: by request, hop, then time.
 * @param {FlowRecord[]} records
 */
export function orderTrace(records) {
  const hopRank = (/** @type {FlowHop} */ h) => {
    const i = HOPS.indexOf(h);
    return i < 0 ? HOPS.length : i;
  };
  return [...records].sort((a, b) => a.requestIndex - b.requestIndex || hopRank(a.hop) - hopRank(b.hop) || a.startTime - b.startTime);
}

/**
 * The traces among some records, newest first, each with its hops' DCs and its worst verdict.
 * @param {FlowRecord[]} records
 */
export function traces(records) {
  /** @type {Map<string, { traceId: string, records: FlowRecord[], startTime: number }>} */
  const byId = new Map();
  for (const r of records) {
    if (!r.traceId || r.traceId === ZERO_TRACE) continue;
    let t = byId.get(r.traceId);
    if (!t) byId.set(r.traceId, (t = { traceId: r.traceId, records: [], startTime: r.startTime }));
    t.records.push(r);
    t.startTime = Math.min(t.startTime, r.startTime);
  }
  const severity = (/** @type {FlowVerdict} */ v) => ['allowed', 'error', 'no_route', 'denied'].indexOf(v);
  return [...byId.values()]
    .map((t) => {
      const withNames = t.records.find((r) => r.source?.service && r.destination?.service) ?? t.records[0];
      return {
        traceId: t.traceId,
        startTime: t.startTime,
        hops: t.records.length,
        datacenters: [...new Set(t.records.map((r) => r.dc))].sort(),
        source: withNames.source,
        destination: withNames.destination,
        verdict: t.records.reduce((w, r) => (severity(r.verdict) > severity(w) ? r.verdict : w), /** @type {FlowVerdict} */ ('allowed')),
      };
    })
    .sort((a, b) => b.startTime - a.startTime);
}
