// Isthmus' own /v1/flows: the flow records of this DC, filtered (trace, service, from, to, verdict, time).
import type { Hono } from 'hono';
import { z } from 'zod';
import type { ApiEnv } from './env.js';
import type { FlowStore } from '../dataflow/index.js';
import { parseWith } from './validate.js';

export interface FlowRouteDeps {
  flows: FlowStore;
  dc: string;
}

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
  dc: z.string().optional(),
});

export function registerFlowRoutes(app: Hono<ApiEnv>, deps: FlowRouteDeps): void {
  app.get('/v1/flows', (c) => {
    const q = parseWith(query, c.req.query());
    const records = deps.flows.query(q);
    return c.json({ DC: deps.dc, Records: records, Missing: [] as string[] });
  });
}
