// Isthmus' own /v1/flows: the flow records of this DC, filtered (trace, service, from, to, verdict, time).
import type { Context, Hono } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { ApiEnv } from './env.js';
import type { FlowRecord } from '../dataflow/index.js';
import { parseWith } from './validate.js';
import { checkFlowAccess, flowQuery, gatherFlows, type FlowQuery, type FlowRouteDeps } from './flows-query.js';

export type { FlowRouteDeps } from './flows-query.js';

export function registerFlowRoutes(app: Hono<ApiEnv>, deps: FlowRouteDeps): void {
  const gather = (c: Context<ApiEnv>, q: FlowQuery, raw: Record<string, string>) => gatherFlows(deps, c, q, raw);

  app.get('/v1/flows', async (c) => {
    const raw = c.req.query();
    const g = await gather(c, parseWith(flowQuery, raw), raw);
    if (!raw.dc) return c.json({ DC: deps.dc, Records: g.records, Missing: [] as string[] });
    return c.json({
      DC: deps.dc,
      Datacenters: g.wanted,
      Records: g.records,
      Missing: g.failed.map((f) => f.dc),
      Errors: Object.fromEntries(g.failed.map((f) => [f.dc, f.error])),
    });
  });

  // Live follow across DCs as server-sent events: `flow` events with one record each, oldest first,
  // and a `missing` event whenever the set of DCs that do not answer changes.
  app.get('/v1/flows/stream', (c) => {
    const raw = c.req.query();
    const q = parseWith(flowQuery, raw);
    // Refused before the stream opens, not as an event inside it.
    checkFlowAccess(c, q);
    const pollMs = Math.max(250, Math.min(Number(raw.interval ?? 1000) || 1000, 10_000));
    return streamSSE(c, async (stream) => {
      const sent = new Map<string, number>();
      let since = q.since ?? Date.now() - 2000;
      let missing = '';
      let closed = false;
      stream.onAbort(() => {
        closed = true;
      });
      while (!closed) {
        // Records can land a little late (batched from the data plane): look back a few seconds.
        const window = { ...q, since: Math.max(0, since - 5000), limit: q.limit ?? 2000 };
        const g = await gather(c, window, { ...raw, since: String(window.since), limit: String(window.limit) }).catch((err: Error) => ({ records: [] as FlowRecord[], wanted: [], failed: [{ dc: deps.dc, error: err.message }] }));
        const fresh = g.records.filter((r) => !sent.has(r.id)).sort((a, b) => a.startTime - b.startTime);
        for (const r of fresh) {
          sent.set(r.id, r.startTime);
          await stream.writeSSE({ event: 'flow', id: r.id, data: JSON.stringify(r) });
          if (r.startTime > since) since = r.startTime;
        }
        const m = g.failed.map((f) => `${f.dc}: ${f.error}`).join('; ');
        if (m !== missing) {
          missing = m;
          await stream.writeSSE({ event: 'missing', data: JSON.stringify({ Missing: g.failed.map((f) => f.dc), Errors: Object.fromEntries(g.failed.map((f) => [f.dc, f.error])) }) });
        }
        for (const [id, t] of sent) if (t < since - 60_000) sent.delete(id);
        await stream.sleep(pollMs);
      }
    });
  });
}
