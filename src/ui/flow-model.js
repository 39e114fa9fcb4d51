// What the views compute from flow records: connections between services (for the graph) and the
// hops of one trace in order. Plain functions over the records /v1/flows returns; no DOM here.

export const HOPS = ['client-sidecar', 'gateway-egress', 'gateway-ingress', 'server-sidecar'];
export const VERDICTS = ['allowed', 'denied', 'no_route', 'error'];
const ZERO_TRACE = '0'.repeat(32);

/** Nearest-rank percentile (p in 0..100) of a list of numbers; undefined for none. */
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
 */
export function connections(records) {
  const units = new Map();
  for (const r of records) {
    if (r.hop !== 'client-sidecar' && r.hop !== 'server-sidecar') continue;
    if (!r.source?.service || !r.destination?.service) continue;
    const src = `${r.source.service}@${r.source.dc}`;
    const dst = `${r.destination.service}@${r.destination.dc}`;
    const key = r.traceId && r.traceId !== ZERO_TRACE ? `${r.traceId}/${r.requestIndex}/${src}/${dst}` : r.id;
    let u = units.get(key);
    if (!u) units.set(key, (u = { source: r.source, destination: r.destination, client: undefined, server: undefined }));
    if (r.hop === 'client-sidecar') u.client = r;
    else u.server = r;
  }
  return [...units.values()].map((u) => {
    const decided = u.server ?? u.client;
    const timed = u.client ?? u.server;
    return {
      source: { service: u.source.service, dc: u.source.dc },
      destination: { service: u.destination.service, dc: u.destination.dc },
      verdict: decided.verdict,
      reason: decided.reason,
      intentionId: decided.intentionId,
      durationMs: timed.durationMs,
      startTime: Math.min(...[u.client, u.server].filter(Boolean).map((r) => r.startTime)),
    };
  });
}

/**
 * The graph: every DC with its services (from the catalogs and from the flows), and one edge per
 * source, destination and verdict with its count and p99 duration.
 * `catalogs` maps a DC name to the service names its catalog lists.
 */
export function graphModel(records, catalogs, datacenters) {
  const services = new Map();
  const addService = (dc, name) => {
    if (!dc || !name) return;
    if (!services.has(dc)) services.set(dc, new Set());
    services.get(dc).add(name);
  };
  for (const dc of datacenters) if (!services.has(dc)) services.set(dc, new Set());
  for (const [dc, names] of Object.entries(catalogs)) for (const n of names) addService(dc, n);

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
    datacenters: [...services.keys()].sort().map((dc) => ({ name: dc, services: [...services.get(dc)].sort() })),
    edges: [...edges.values()].map((e) => ({ source: e.source, destination: e.destination, verdict: e.verdict, count: e.count, p99: percentile(e.durations, 99), last: e.last })),
  };
}

/** Hops of one trace in the order a connection crosses them: by request, hop, then time. */
export function orderTrace(records) {
  const hopRank = (h) => {
    const i = HOPS.indexOf(h);
    return i < 0 ? HOPS.length : i;
  };
  return [...records].sort((a, b) => a.requestIndex - b.requestIndex || hopRank(a.hop) - hopRank(b.hop) || a.startTime - b.startTime);
}

/** The traces among some records, newest first, each with its hops' DCs and its worst verdict. */
export function traces(records) {
  const byId = new Map();
  for (const r of records) {
    if (!r.traceId || r.traceId === ZERO_TRACE) continue;
    let t = byId.get(r.traceId);
    if (!t) byId.set(r.traceId, (t = { traceId: r.traceId, records: [], startTime: r.startTime }));
    t.records.push(r);
    t.startTime = Math.min(t.startTime, r.startTime);
  }
  const severity = (v) => ['allowed', 'error', 'no_route', 'denied'].indexOf(v);
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
        verdict: t.records.reduce((w, r) => (severity(r.verdict) > severity(w) ? r.verdict : w), 'allowed'),
      };
    })
    .sort((a, b) => b.startTime - a.startTime);
}
