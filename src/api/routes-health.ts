// Consul's /v1/health endpoints.
import type { Hono } from 'hono';
import type { ApiEnv } from './env.js';
import type { CatalogRouteDeps } from './routes-agent.js';
import { blockingRead } from './blocking.js';
import { checkDc, checkShape, flag, healthEntry } from './catalog-shapes.js';
import { invalid } from '../core/errors.js';

const STATES = ['any', 'passing', 'warning', 'critical'] as const;

export function registerHealthRoutes(app: Hono<ApiEnv>, deps: CatalogRouteDeps): void {
  const { store, catalog, dc } = deps;
  const checksAndServices = catalog.watch('checks', 'services');
  const checks = catalog.watch('checks');

  app.get('/v1/health/service/:name', async (c) => {
    checkDc(c, dc, deps.datacenters);
    const name = c.req.param('name');
    const body = await blockingRead(c, store, catalog, () =>
      c.get('authz').serviceRead(name) ? catalog.instances(name, { tag: c.req.query('tag'), passingOnly: flag(c, 'passing') }).map(healthEntry) : [],
    );
    return c.json(body);
  });

  app.get('/v1/health/connect/:name', async (c) => {
    checkDc(c, dc, deps.datacenters);
    const name = c.req.param('name');
    const body = await blockingRead(c, store, catalog, () =>
      c.get('authz').serviceRead(name) ? catalog.connectInstances(name, { passingOnly: flag(c, 'passing') }).map(healthEntry) : [],
    );
    return c.json(body);
  });

  app.get('/v1/health/checks/:name', async (c) => {
    checkDc(c, dc, deps.datacenters);
    const name = c.req.param('name');
    const body = await blockingRead(c, store, checksAndServices, () => (c.get('authz').serviceRead(name) ? catalog.serviceChecks(name).map(checkShape) : []));
    return c.json(body);
  });

  app.get('/v1/health/state/:state', async (c) => {
    const state = c.req.param('state') as (typeof STATES)[number];
    if (!STATES.includes(state)) throw invalid([{ Field: 'state', Message: 'must be any, passing, warning or critical' }]);
    const body = await blockingRead(c, store, checks, () =>
      catalog
        .checksInState(state)
        .filter((k) => !k.ServiceName || c.get('authz').serviceRead(k.ServiceName))
        .map(checkShape),
    );
    return c.json(body);
  });

  app.get('/v1/health/node/:node', async (c) => {
    const node = c.req.param('node');
    const body = await blockingRead(c, store, checks, () =>
      catalog
        .nodeChecks(node)
        .filter((k) => !k.ServiceName || c.get('authz').serviceRead(k.ServiceName))
        .map(checkShape),
    );
    return c.json(body);
  });
}
