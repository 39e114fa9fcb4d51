// Consul's /v1/agent endpoints for services and checks registered on this server's node.
import type { Context, Hono } from 'hono';
import { z } from 'zod';
import type { ApiEnv } from './env.js';
import type { Store } from '../store/index.js';
import { checkSchema, normalizeKeys, serviceSchema, type Catalog, type CheckRecord, type HealthStatus } from '../catalog/index.js';
import { blockingRead } from './blocking.js';
import { requirePermission } from './authz.js';
import { parseWith, readJson } from './validate.js';
import { agentService, checkShape, flag } from './catalog-shapes.js';
import { invalid, notFound } from '../core/errors.js';

export interface CatalogRouteDeps {
  store: Store;
  catalog: Catalog;
  dc: string;
  datacenters: () => string[];
}

const updateBody = z.object({
  Status: z.enum(['passing', 'warning', 'critical'], { message: 'must be passing, warning or critical' }),
  Output: z.string().max(4096).optional(),
});

/** A service's checks need service:write on it; node-level checks (no service) need operator:write. */
function requireCheckWrite(c: Context<ApiEnv>, check: CheckRecord): void {
  if (check.ServiceName) requirePermission(c, (a) => a.serviceWrite(check.ServiceName), `service:write on ${check.ServiceName}`);
  else requirePermission(c, (a) => a.operatorWrite(), 'operator:write (node checks)');
}

/** The values Go's strconv.ParseBool takes, which Consul reads `enable` with. */
const BOOLS: Record<string, boolean> = {
  1: true,
  t: true,
  T: true,
  TRUE: true,
  true: true,
  True: true,
  0: false,
  f: false,
  F: false,
  FALSE: false,
  false: false,
  False: false,
};

/** `?enable=` of the maintenance endpoints: required, a boolean. */
function enableParam(c: Context<ApiEnv>): boolean {
  const raw = c.req.query('enable');
  if (raw === undefined) throw invalid([{ Field: 'enable', Message: 'is required: true or false' }], 'Missing value for enable');
  const value = BOOLS[raw];
  if (value === undefined) throw invalid([{ Field: 'enable', Message: `must be true or false, got "${raw.slice(0, 64)}"` }]);
  return value;
}

/** The maintenance reason: free text kept as the check's Notes, bounded as other check notes are. */
function reasonParam(c: Context<ApiEnv>): string {
  const reason = c.req.query('reason') ?? '';
  if (reason.length > 1024) throw invalid([{ Field: 'reason', Message: 'at most 1024 characters' }]);
  return reason;
}

export function registerAgentRoutes(app: Hono<ApiEnv>, deps: CatalogRouteDeps): void {
  const { store, catalog, dc } = deps;
  const services = catalog.watch('services');
  const checks = catalog.watch('checks');

  app.put('/v1/agent/service/register', async (c) => {
    const def = parseWith(serviceSchema, normalizeKeys((await readJson(c)) ?? {}));
    requirePermission(c, (a) => a.serviceWrite(def.Name), `service:write on ${def.Name}`);
    await catalog.registerService(def, { replaceExistingChecks: flag(c, 'replace-existing-checks') });
    return c.body(null, 200);
  });

  app.put('/v1/agent/service/deregister/:id', async (c) => {
    const id = c.req.param('id');
    const svc = catalog.agentService(id);
    if (!svc) throw notFound(`Unknown service ID "${id}". Ensure that the service ID is passed, not the service name.`);
    requirePermission(c, (a) => a.serviceWrite(svc.Service), `service:write on ${svc.Service}`);
    await catalog.deregisterService(id);
    return c.body(null, 200);
  });

  app.put('/v1/agent/service/maintenance/:id', async (c) => {
    const id = c.req.param('id');
    const enable = enableParam(c);
    const reason = reasonParam(c);
    const svc = catalog.agentService(id);
    if (!svc) throw notFound(`No service registered with ID "${id}"`);
    requirePermission(c, (a) => a.serviceWrite(svc.Service), `service:write on ${svc.Service}`);
    await catalog.serviceMaintenance(id, enable, reason);
    return c.body(null, 200);
  });

  // Consul asks node:write; node-level writes here are operator:write, as node checks are.
  app.put('/v1/agent/maintenance', async (c) => {
    const enable = enableParam(c);
    const reason = reasonParam(c);
    requirePermission(c, (a) => a.operatorWrite(), 'operator:write (node maintenance)');
    await catalog.nodeMaintenance(enable, reason);
    return c.body(null, 200);
  });

  app.get('/v1/agent/services', async (c) => {
    const body = await blockingRead(c, store, services, () =>
      Object.fromEntries(
        catalog
          .agentServices()
          .filter((s) => c.get('authz').serviceRead(s.Service))
          .map((s) => [s.ID, agentService(s, dc)]),
      ),
    );
    return c.json(body);
  });

  app.get('/v1/agent/service/:id', async (c) => {
    const id = c.req.param('id');
    const svc = await blockingRead(c, store, services, () => catalog.agentService(id));
    if (!svc) throw notFound(`unknown service ID: ${id}`);
    requirePermission(c, (a) => a.serviceRead(svc.Service), `service:read on ${svc.Service}`);
    return c.json(agentService(svc, dc));
  });

  app.get('/v1/agent/checks', async (c) => {
    const body = await blockingRead(c, store, checks, () =>
      Object.fromEntries(
        catalog
          .agentChecks()
          .filter((k) => !k.ServiceName || c.get('authz').serviceRead(k.ServiceName))
          .map((k) => [k.CheckID, checkShape(k)]),
      ),
    );
    return c.json(body);
  });

  app.put('/v1/agent/check/register', async (c) => {
    const def = parseWith(checkSchema, normalizeKeys((await readJson(c)) ?? {}));
    const owner = def.ServiceID ? catalog.agentService(def.ServiceID) : undefined;
    requirePermission(
      c,
      (a) => (owner ? a.serviceWrite(owner.Service) : a.operatorWrite()),
      owner ? `service:write on ${owner.Service}` : 'operator:write (node checks)',
    );
    await catalog.registerCheck(def);
    return c.body(null, 200);
  });

  app.put('/v1/agent/check/deregister/:id', async (c) => {
    const id = c.req.param('id');
    const check = catalog.agentCheck(id);
    if (!check) throw notFound(`Unknown check ID "${id}"`);
    requireCheckWrite(c, check);
    await catalog.deregisterCheck(id);
    return c.body(null, 200);
  });

  const ttl = (status: HealthStatus) => async (c: Context<ApiEnv>) => {
    const id = c.req.param('id')!;
    const check = catalog.agentCheck(id);
    if (!check) throw notFound(`CheckID "${id}" does not have associated TTL: unknown check ID (pass the check ID, not the check name)`);
    requireCheckWrite(c, check);
    await catalog.updateTtl(id, status, (c.req.query('note') ?? '').slice(0, 4096));
    return c.body(null, 200);
  };
  app.put('/v1/agent/check/pass/:id', ttl('passing'));
  app.put('/v1/agent/check/warn/:id', ttl('warning'));
  app.put('/v1/agent/check/fail/:id', ttl('critical'));

  app.put('/v1/agent/check/update/:id', async (c) => {
    const id = c.req.param('id');
    const body = parseWith(updateBody, normalizeKeys((await readJson(c)) ?? {}));
    const check = catalog.agentCheck(id);
    if (!check) throw notFound(`CheckID "${id}" does not have associated TTL: unknown check ID (pass the check ID, not the check name)`);
    requireCheckWrite(c, check);
    await catalog.updateTtl(id, body.Status, body.Output ?? '');
    return c.body(null, 200);
  });
}
