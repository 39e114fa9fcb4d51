// Consul's intention endpoints and /v1/agent/connect/authorize.
import type { Context, Hono } from 'hono';
import { z } from 'zod';
import type { ApiEnv } from './env.js';
import type { Store } from '../store/index.js';
import { intentionBody, splitName, type Intentions } from '../intentions/index.js';
import { blockingRead } from './blocking.js';
import { requirePermission } from './authz.js';
import { parseWith, readBody, readJson } from './validate.js';
import { invalid } from '../core/errors.js';
import { isServiceName, SERVICE_NAME_RE, SERVICE_NAME_RULE } from '../core/names.js';

export interface IntentionRouteDeps {
  store: Store;
  intentions: Intentions;
}

/** "name" or "ns/name", each part a name or "*": what a query may name as a source or destination. */
function nameProblem(value: string): string | undefined {
  const { ns, name } = splitName(value);
  const ok = (part: string) => part === '*' || isServiceName(part);
  if (!ok(ns) || !ok(name)) return `must be "*", a service name, or <namespace>/<service> (each ${SERVICE_NAME_RULE})`;
  return undefined;
}

function pairFrom(c: Context<ApiEnv>): { source: string; destination: string } {
  const source = c.req.query('source');
  const destination = c.req.query('destination');
  const v = [];
  for (const [field, value] of [
    ['source', source],
    ['destination', destination],
  ] as const) {
    if (!value) v.push({ Field: field, Message: 'query parameter is required' });
    else {
      const problem = nameProblem(value);
      if (problem) v.push({ Field: field, Message: problem });
    }
  }
  if (v.length) throw invalid(v);
  return { source: source!, destination: destination! };
}

const authorizeBody = z.object({
  Target: z.string().regex(SERVICE_NAME_RE, `must be a service name (${SERVICE_NAME_RULE})`),
  ClientCertURI: z.string().min(1, 'is required').max(2048, 'at most 2048 characters'),
  ClientCertSerial: z.string().max(256, 'at most 256 characters').optional(),
  Namespace: z.string().regex(SERVICE_NAME_RE, `must be a namespace name (${SERVICE_NAME_RULE})`).optional(),
});

export function registerIntentionRoutes(app: Hono<ApiEnv>, deps: IntentionRouteDeps): void {
  const { store, intentions } = deps;
  const dstOf = (name: string) => splitName(name).name;

  app.get('/v1/connect/intentions', async (c) => {
    const list = await blockingRead(c, store, intentions, () => intentions.list().filter((i) => c.get('authz').intentionRead(i.DestinationName)));
    return c.json(list);
  });

  app.post('/v1/connect/intentions', async (c) => {
    const body = await readBody(c, intentionBody);
    requirePermission(c, (a) => a.intentionWrite(body.DestinationName ?? ''), `intentions:write on ${body.DestinationName}`);
    const created = await intentions.create(body, c.get('actor'));
    return c.json({ ID: created.ID });
  });

  app.get('/v1/connect/intentions/exact', async (c) => {
    const { source, destination } = pairFrom(c);
    requirePermission(c, (a) => a.intentionRead(dstOf(destination)), `intentions:read on ${destination}`);
    const i = await blockingRead(c, store, intentions, () => intentions.getExact(source, destination));
    return c.json(i);
  });

  app.put('/v1/connect/intentions/exact', async (c) => {
    const { source, destination } = pairFrom(c);
    requirePermission(c, (a) => a.intentionWrite(dstOf(destination)), `intentions:write on ${destination}`);
    const raw = (await readJson(c)) ?? {};
    const body = parseWith(intentionBody, raw);
    await intentions.upsertExact(source, destination, body, c.get('actor'));
    return c.json(true);
  });

  app.delete('/v1/connect/intentions/exact', async (c) => {
    const { source, destination } = pairFrom(c);
    requirePermission(c, (a) => a.intentionWrite(dstOf(destination)), `intentions:write on ${destination}`);
    await intentions.deleteExact(source, destination, c.get('actor'));
    return c.json(true);
  });

  app.get('/v1/connect/intentions/match', async (c) => {
    const by = c.req.query('by');
    const names = c.req.queries('name') ?? [];
    const v = [];
    if (by !== 'source' && by !== 'destination') v.push({ Field: 'by', Message: 'must be source or destination' });
    if (names.length === 0) v.push({ Field: 'name', Message: 'at least one name is required' });
    names.forEach((n, i) => {
      const problem = nameProblem(n);
      if (problem) v.push({ Field: `name[${i}]`, Message: problem });
    });
    if (v.length) throw invalid(v);
    const result = await blockingRead(c, store, intentions, () => intentions.match(by as 'source' | 'destination', names));
    for (const k of Object.keys(result)) result[k] = result[k].filter((i) => c.get('authz').intentionRead(i.DestinationName));
    return c.json(result);
  });

  app.get('/v1/connect/intentions/check', async (c) => {
    const { source, destination } = pairFrom(c);
    requirePermission(c, (a) => a.intentionRead(dstOf(destination)), `intentions:read on ${destination}`);
    const d = intentions.check(source, destination);
    return c.json({ Allowed: d.allowed });
  });

  app.get('/v1/connect/intentions/:id', async (c) => {
    const i = intentions.getById(c.req.param('id'));
    requirePermission(c, (a) => a.intentionRead(i.DestinationName), `intentions:read on ${i.DestinationName}`);
    return c.json(i);
  });

  app.put('/v1/connect/intentions/:id', async (c) => {
    const current = intentions.getById(c.req.param('id'));
    requirePermission(c, (a) => a.intentionWrite(current.DestinationName), `intentions:write on ${current.DestinationName}`);
    const body = await readBody(c, intentionBody);
    await intentions.updateById(current.ID, body, c.get('actor'));
    return c.json(true);
  });

  app.delete('/v1/connect/intentions/:id', async (c) => {
    const current = intentions.getById(c.req.param('id'));
    requirePermission(c, (a) => a.intentionWrite(current.DestinationName), `intentions:write on ${current.DestinationName}`);
    await intentions.deleteById(current.ID, c.get('actor'));
    return c.json(true);
  });

  app.post('/v1/agent/connect/authorize', async (c) => {
    const body = await readBody(c, authorizeBody);
    requirePermission(c, (a) => a.serviceWrite(body.Target), `service:write on ${body.Target}`);
    const r = intentions.authorize(body.ClientCertURI, { name: body.Target, namespace: body.Namespace });
    return c.json({ Authorized: r.allowed, Reason: r.reason });
  });
}
