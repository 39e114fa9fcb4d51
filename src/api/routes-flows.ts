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
  // and a `missing` event whenever the set of DCs that do not answer changes. Other DCs are asked
  // every `interval`; this DC's records are sent as they are stored (at most every 100 ms).
  app.get('/v1/flows/stream', (c) => {
    const raw = c.req.query();
    const q = parseWith(flowQuery, raw);
    // Refused before the stream opens, not as an event inside it.
    checkFlowAccess(c, q);
    const pollMs = Math.max(250, Math.min(Number(raw.interval ?? 1000) || 1000, 10_000));
    const wantsLocal = !q.dc || q.dc === 'all' || q.dc.split(',').includes(deps.dc);
    const { dc: _dc, ...localRaw } = raw;
    return streamSSE(c, async (stream) => {
      const sent = new Map<string, number>();
      let since = q.since ?? Date.now() - 2000;
      let missing = '';
      let closed = false;
      // A record stored here wakes the loop before the interval is up.
      let stored = false;
      let wake: (() => void) | undefined;
      const unsubscribe = wantsLocal
        ? deps.flows.subscribe(() => {
            stored = true;
            wake?.();
          })
        : () => {};
      stream.onAbort(() => {
        closed = true;
        wake?.();
      });
      let askedAll = 0;
      try {
        while (!closed) {
          const all = Date.now() - askedAll >= pollMs;
          if (all) askedAll = Date.now();
          stored = false;
          // Records can land a little late (batched from the data plane): look back a few seconds.
          const window = { ...q, since: Math.max(0, since - 5000), limit: q.limit ?? 2000 };
          // Every wanted DC, or (woken by a record stored here) this one alone.
          const [query, params] = all ? [window, raw] : [{ ...window, dc: undefined }, localRaw];
          const g = await gather(c, query, { ...params, since: String(window.since), limit: String(window.limit) }).catch((err: Error) => ({
            records: [] as FlowRecord[],
            wanted: [],
            failed: all ? [{ dc: deps.dc, error: err.message }] : [],
          }));
          const fresh = g.records.filter((r) => !sent.has(r.id)).sort((a, b) => a.startTime - b.startTime);
          for (const r of fresh) {
            sent.set(r.id, r.startTime);
            await stream.writeSSE({ event: 'flow', id: r.id, data: JSON.stringify(r) });
            if (r.startTime > since) since = r.startTime;
          }
          if (all) {
            const m = g.failed.map((f) => `${f.dc}: ${f.error}`).join('; ');
            if (m !== missing) {
              missing = m;
              await stream.writeSSE({
                event: 'missing',
                data: JSON.stringify({ Missing: g.failed.map((f) => f.dc), Errors: Object.fromEntries(g.failed.map((f) => [f.dc, f.error])) }),
              });
            }
          }
          for (const [id, t] of sent) if (t < since - 60_000) sent.delete(id);
          // Until the next round for every DC, or sooner when a record is stored here.
          await stream.sleep(100);
          if (!stored && !closed) {
            await new Promise<void>((resolve) => {
              const timer = setTimeout(resolve, Math.max(0, askedAll + pollMs - Date.now()));
              wake = () => {
                clearTimeout(timer);
                resolve();
              };
            });
            wake = undefined;
          }
        }
      } finally {
        unsubscribe();
      }
    });
  });
}
