// Policy from traffic: /v1/policy/dry-run replays a proposed intention against the calls observed
// in a window across the DCs asked (all by default), and /v1/policy/suggest proposes the
// least-privilege intentions that the allowed calls to a service need. Both read the federated
// flow records (each DC answers for itself) and change nothing.
import type { Context, Hono } from 'hono';
import { z } from 'zod';
import type { ApiEnv } from './env.js';
import type { FlowRecord } from '../dataflow/index.js';
import { intentionBody, proposedSet, replay, splitName, suggest, type Intentions, type ObservedCall } from '../intentions/index.js';
import { flowQuery, gatherFlows, type FlowRouteDeps } from './flows-query.js';
import { requirePermission } from './authz.js';
import { parseWith, readBody } from './validate.js';
import { invalid } from '../core/errors.js';

export interface PolicyRouteDeps extends FlowRouteDeps {
  intentions: Intentions;
  defaultAllow: () => boolean;
}

const windowQuery = z.object({
  window: z
    .string()
    .regex(/^\d+(s|m|h)$/, 'must be an age like 30m or 24h')
    .optional(),
  dc: z.string().optional(),
  timeout: z.string().optional(),
  service: z.string().optional(),
});

const MAX_RECORDS = 10_000;

function observed(records: FlowRecord[]): ObservedCall[] {
  const out: ObservedCall[] = [];
  for (const r of records) {
    if (r.hop !== 'server-sidecar' || !r.source.service || !r.destination.service) continue;
    out.push({
      sourceNs: r.source.namespace || 'default',
      source: r.source.service,
      destinationNs: r.destination.namespace || 'default',
      destination: r.destination.service,
      dc: r.dc,
      ...(r.requestIndex > 0 && r.http ? { http: { method: r.http.method, path: r.http.path.split('?')[0] } } : {}),
    });
  }
  return out;
}

async function calls(deps: PolicyRouteDeps, c: Context<ApiEnv>, filter: Record<string, string>) {
  const w = parseWith(windowQuery, c.req.query());
  const raw: Record<string, string> = {
    hop: 'server-sidecar',
    since: w.window ?? '1h',
    dc: w.dc ?? 'all',
    limit: String(MAX_RECORDS),
    ...(w.timeout ? { timeout: w.timeout } : {}),
    ...filter,
  };
  const g = await gatherFlows(deps, c, parseWith(flowQuery, raw), raw);
  return { window: raw.since, g, calls: observed(g.records), truncated: g.records.length >= MAX_RECORDS };
}

export function registerPolicyRoutes(app: Hono<ApiEnv>, deps: PolicyRouteDeps): void {
  app.post('/v1/policy/dry-run', async (c) => {
    const body = await readBody(c, intentionBody);
    const v = [];
    if (!body.SourceName) v.push({ Field: 'SourceName', Message: 'is required' });
    if (!body.DestinationName) v.push({ Field: 'DestinationName', Message: 'is required' });
    if (body.Action && body.Permissions?.length) v.push({ Field: 'Action', Message: 'an intention has either Action or Permissions, not both' });
    if (v.length) throw invalid(v);
    requirePermission(c, (a) => a.intentionRead(body.DestinationName!), `intentions:read on ${body.DestinationName}`);
    const src = splitName(body.SourceName!);
    const dst = splitName(body.DestinationName!);
    const proposed = {
      SourceNS: body.SourceNS ?? src.ns,
      SourceName: src.name,
      DestinationNS: body.DestinationNS ?? dst.ns,
      DestinationName: dst.name,
      ...(body.Permissions?.length ? { Permissions: body.Permissions } : { Action: body.Action ?? ('allow' as const) }),
      Description: body.Description,
    };
    const current = deps.intentions.list();
    const { window, g, calls: observedCalls, truncated } = await calls(deps, c, proposed.DestinationName === '*' ? {} : { to: proposed.DestinationName });
    const r = replay(current, proposedSet(current, proposed), observedCalls, deps.defaultAllow());
    return c.json({
      Proposed: proposed,
      Window: window,
      Datacenters: g.wanted,
      Missing: g.failed.map((f) => f.dc),
      Errors: Object.fromEntries(g.failed.map((f) => [f.dc, f.error])),
      Truncated: truncated,
      ...r,
    });
  });

  app.get('/v1/policy/suggest', async (c) => {
    const service = c.req.query('service');
    if (!service) throw invalid([{ Field: 'service', Message: 'query parameter is required (the destination to suggest intentions for)' }]);
    requirePermission(c, (a) => a.intentionRead(service), `intentions:read on ${service}`);
    const dst = splitName(service);
    const { window, g, calls: observedCalls, truncated } = await calls(deps, c, { to: dst.name, verdict: 'allowed' });
    return c.json({
      Service: `${dst.ns}/${dst.name}`,
      Window: window,
      Datacenters: g.wanted,
      Missing: g.failed.map((f) => f.dc),
      Errors: Object.fromEntries(g.failed.map((f) => [f.dc, f.error])),
      Truncated: truncated,
      Examined: observedCalls.length,
      Suggestions: suggest(dst.ns, dst.name, observedCalls, deps.intentions.list()),
    });
  });
}
