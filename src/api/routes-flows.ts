// Isthmus' own /v1/flows: the flow records of this DC, filtered (trace, service, from, to, verdict, time).
import type { Context, Hono } from 'hono';
import { streamSSE } from 'hono/streaming';
import { z } from 'zod';
import type { ApiEnv } from './env.js';
import type { FlowRecord, FlowStore } from '../dataflow/index.js';
import type { Federation } from '../federation/index.js';
import { parseWith } from './validate.js';
import { parseDuration } from '../core/duration.js';
import { invalid } from '../core/errors.js';

export interface FlowRouteDeps {
  flows: FlowStore;
  dc: string;
  federation?: Federation;
}

const DEFAULT_FANOUT_TIMEOUT_MS = 2000;

const time = z.string().transform((v, ctx) => {
  if (/^\d+$/.test(v)) return Number(v);
  const rel = /^(\d+)(s|m|h)$/.exec(v);
  if (rel) return Date.now() - Number(rel[1]) * { s: 1000, m: 60_000, h: 3_600_000 }[rel[2] as 's' | 'm' | 'h'];
  const t = Date.parse(v);
  if (Number.isNaN(t)) {
    ctx.addIssue({ code: 'custom', message: 'must be epoch ms, an RFC 3339 time, or an age like 5m' });
    return z.NEVER;
  }
  return t;
});

const query = z.object({
  trace: z.string().regex(/^[0-9a-f]{32}$/, 'must be 32 hex characters').optional(),
  service: z.string().max(64).optional(),
  from: z.string().max(64).optional(),
  to: z.string().max(64).optional(),
  verdict: z.enum(['allowed', 'denied', 'no_route', 'error'], { message: 'must be allowed, denied, no_route or error' }).optional(),
  hop: z.enum(['client-sidecar', 'gateway-egress', 'gateway-ingress', 'server-sidecar'], { message: 'must be a hop name' }).optional(),
  since: time.optional(),
  until: time.optional(),
  limit: z.coerce.number().int().min(1).max(10_000, 'at most 10000').optional(),
  dc: z.string().regex(/^(all|[a-z0-9-]+(,[a-z0-9-]+)*)$/, 'must be all, or datacenter names separated by commas').optional(),
  timeout: z.string().optional(),
});

interface Gathered {
  records: FlowRecord[];
  wanted: string[];
  failed: { dc: string; error: string }[];
}

export function registerFlowRoutes(app: Hono<ApiEnv>, deps: FlowRouteDeps): void {
  /** This DC's records and, for other DCs asked, theirs through federation; merged newest first. */
  async function gather(c: Context<ApiEnv>, q: z.infer<typeof query>, raw: Record<string, string>): Promise<Gathered> {
    const { dc: wantDc, timeout, ...filter } = q;
    const fed = deps.federation;
    const known = fed?.datacenters() ?? [deps.dc];
    const wanted = !wantDc ? [deps.dc] : wantDc === 'all' ? known : wantDc.split(',');
    const unknown = wanted.filter((d) => !known.includes(d));
    if (unknown.length) throw invalid([{ Field: 'dc', Message: `unknown datacenter ${unknown.join(', ')} (known: ${known.join(', ')})` }]);
    const local = wanted.includes(deps.dc) ? await deps.flows.query(filter) : [];
    const remote = wanted.filter((d) => d !== deps.dc);
    if (remote.length === 0 || !fed) return { records: local, wanted, failed: [] };
    // Fan out: each other DC answers for itself, within the timeout; who did not is named.
    const timeoutMs = timeout ? Math.min(parseDuration(timeout, 'timeout'), 30_000) : DEFAULT_FANOUT_TIMEOUT_MS;
    const params = new URLSearchParams(raw);
    params.delete('dc');
    params.delete('timeout');
    const path = `/v1/flows${params.size ? `?${params}` : ''}`;
    const answers = await Promise.all(
      remote.map(async (dc) => {
        try {
          const res = await fed.queryPeer(dc, path, c.get('token') ?? '', timeoutMs);
          if (res.status !== 200) return { dc, error: `answered ${res.status}: ${res.body.slice(0, 200)}` };
          return { dc, records: (JSON.parse(res.body) as { Records: FlowRecord[] }).Records };
        } catch (err) {
          return { dc, error: (err as Error).message };
        }
      }),
    );
    const seen = new Set<string>();
    const merged: FlowRecord[] = [];
    for (const r of [local, ...answers.map((a) => a.records ?? [])]) {
      for (const rec of r) {
        if (seen.has(rec.id)) continue;
        seen.add(rec.id);
        merged.push(rec);
      }
    }
    merged.sort((a, b) => b.startTime - a.startTime);
    return { records: filter.limit ? merged.slice(0, filter.limit) : merged, wanted, failed: answers.filter((a) => a.error).map((a) => ({ dc: a.dc, error: a.error! })) };
  }

  app.get('/v1/flows', async (c) => {
    const raw = c.req.query();
    const g = await gather(c, parseWith(query, raw), raw);
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
    const q = parseWith(query, raw);
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
