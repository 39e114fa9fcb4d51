// Flow queries shared by /v1/flows, its stream and the policy tools: the filter schema and the
// fan-out that asks every other DC wanted through federation and merges the answers.
import type { Context } from 'hono';
import { z } from 'zod';
import type { ApiEnv } from './env.js';
import type { FlowRecord, FlowStore } from '../dataflow/index.js';
import type { Federation } from '../federation/index.js';
import { parseDuration } from '../core/duration.js';
import { invalid, permissionDenied } from '../core/errors.js';

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

export const flowQuery = z.object({
  trace: z
    .string()
    .regex(/^[0-9a-f]{32}$/, 'must be 32 hex characters')
    .optional(),
  service: z.string().max(64).optional(),
  from: z.string().max(64).optional(),
  to: z.string().max(64).optional(),
  verdict: z.enum(['allowed', 'denied', 'no_route', 'error'], { message: 'must be allowed, denied, no_route or error' }).optional(),
  hop: z.enum(['client-sidecar', 'gateway-egress', 'gateway-ingress', 'server-sidecar'], { message: 'must be a hop name' }).optional(),
  since: time.optional(),
  until: time.optional(),
  limit: z.coerce.number().int().min(1).max(10_000, 'at most 10000').optional(),
  dc: z
    .string()
    .regex(/^(all|[a-z0-9-]+(,[a-z0-9-]+)*)$/, 'must be all, or datacenter names separated by commas')
    .optional(),
  timeout: z.string().optional(),
});

export type FlowQuery = z.infer<typeof flowQuery>;

export interface Gathered {
  records: FlowRecord[];
  wanted: string[];
  failed: { dc: string; error: string }[];
}

/**
 * Records name services, identities and intentions: operator:read sees them all; otherwise a
 * service asked for by name needs service:read (403 if not), and only records whose source or
 * destination the token may read are shown. Returns that record filter.
 */
export function checkFlowAccess(c: Context<ApiEnv>, q: FlowQuery): (r: FlowRecord) => boolean {
  const authz = c.get('authz');
  if (authz.operatorRead()) return () => true;
  for (const name of [q.service, q.from, q.to]) {
    if (name !== undefined && !authz.serviceRead(name)) throw permissionDenied(`Permission denied: token lacks service:read on ${name} (or operator:read)`);
  }
  return (r) => (!!r.source.service && authz.serviceRead(r.source.service)) || (!!r.destination.service && authz.serviceRead(r.destination.service));
}

/** This DC's records and, for other DCs asked, theirs through federation; merged newest first. */
export async function gatherFlows(deps: FlowRouteDeps, c: Context<ApiEnv>, q: FlowQuery, raw: Record<string, string>): Promise<Gathered> {
  const { dc: wantDc, timeout, ...filter } = q;
  const readable = checkFlowAccess(c, q);
  const fed = deps.federation;
  const known = fed?.datacenters() ?? [deps.dc];
  const wanted = !wantDc ? [deps.dc] : wantDc === 'all' ? known : wantDc.split(',');
  const unknown = wanted.filter((d) => !known.includes(d));
  if (unknown.length) throw invalid([{ Field: 'dc', Message: `unknown datacenter ${unknown.join(', ')} (known: ${known.join(', ')})` }]);
  const local = wanted.includes(deps.dc) ? (await deps.flows.query(filter)).filter(readable) : [];
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
      if (seen.has(rec.id) || !readable(rec)) continue;
      seen.add(rec.id);
      merged.push(rec);
    }
  }
  merged.sort((a, b) => b.startTime - a.startTime);
  return {
    records: filter.limit ? merged.slice(0, filter.limit) : merged,
    wanted,
    failed: answers.filter((a) => a.error).map((a) => ({ dc: a.dc, error: a.error! })),
  };
}
