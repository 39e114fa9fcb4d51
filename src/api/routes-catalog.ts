// Consul's /v1/catalog endpoints.
import type { Hono } from 'hono';
import type { ApiEnv } from './env.js';
import { catalogDeregisterSchema, catalogRegisterSchema, normalizeKeys } from '../catalog/index.js';
import type { CatalogRouteDeps } from './routes-agent.js';
import { blockingRead } from './blocking.js';
import { requirePermission } from './authz.js';
import { parseWith, readJson } from './validate.js';
import { catalogService, checkDc, nodeShape, agentService } from './catalog-shapes.js';
import { invalid, notFound } from '../core/errors.js';

export function registerCatalogRoutes(app: Hono<ApiEnv>, deps: CatalogRouteDeps): void {
  const { store, catalog, dc } = deps;
  const services = catalog.watch('services');
  const servicesAndNodes = catalog.watch('services', 'nodes');
  const nodes = catalog.watch('nodes');

  app.get('/v1/catalog/datacenters', (c) => c.json(deps.datacenters()));

  app.get('/v1/catalog/services', async (c) => {
    checkDc(c, dc, deps.datacenters);
    const body = await blockingRead(c, store, services, () => {
      const all = catalog.services();
      return Object.fromEntries(Object.entries(all).filter(([name]) => c.get('authz').serviceRead(name)));
    });
    return c.json(body);
  });

  app.get('/v1/catalog/service/:name', async (c) => {
    checkDc(c, dc, deps.datacenters);
    const name = c.req.param('name');
    const tag = c.req.query('tag');
    const body = await blockingRead(c, store, servicesAndNodes, () =>
      c.get('authz').serviceRead(name) ? catalog.instances(name, { tag }).map(catalogService) : [],
    );
    return c.json(body);
  });

  app.get('/v1/catalog/connect/:name', async (c) => {
    checkDc(c, dc, deps.datacenters);
    const name = c.req.param('name');
    const body = await blockingRead(c, store, servicesAndNodes, () =>
      c.get('authz').serviceRead(name) ? catalog.connectInstances(name).map(catalogService) : [],
    );
    return c.json(body);
  });

  app.get('/v1/catalog/nodes', async (c) => {
    const body = await blockingRead(c, store, nodes, () => catalog.nodes().map(nodeShape));
    return c.json(body);
  });

  app.get('/v1/catalog/node/:node', async (c) => {
    const name = c.req.param('node');
    const body = await blockingRead(c, store, servicesAndNodes, () => {
      const n = catalog.node(name);
      if (!n) return null;
      const readable = catalog.nodeServices(name).filter((s) => c.get('authz').serviceRead(s.Service));
      return { Node: nodeShape(n), Services: Object.fromEntries(readable.map((s) => [s.ID, agentService(s, dc)])) };
    });
    if (!body) throw notFound(`node ${name} not found`);
    return c.json(body);
  });

  app.put('/v1/catalog/register', async (c) => {
    const body = parseWith(catalogRegisterSchema, normalizeKeys((await readJson(c)) ?? {}));
    otherDc(body.Datacenter, dc);
    const name = body.Service ? (body.Service.Service ?? body.Service.Name)! : undefined;
    requirePermission(c, (a) => (name ? a.serviceWrite(name) : a.operatorWrite()), name ? `service:write on ${name}` : 'operator:write');
    await catalog.catalogRegister(body as Parameters<typeof catalog.catalogRegister>[0]);
    return c.json(true);
  });

  app.put('/v1/catalog/deregister', async (c) => {
    const body = parseWith(catalogDeregisterSchema, normalizeKeys((await readJson(c)) ?? {}));
    otherDc(body.Datacenter, dc);
    const svc = body.ServiceID ? catalog.nodeService(body.Node, body.ServiceID) : undefined;
    requirePermission(c, (a) => (svc ? a.serviceWrite(svc.Service) : a.operatorWrite()), svc ? `service:write on ${svc.Service}` : 'operator:write');
    await catalog.catalogDeregister(body);
    return c.json(true);
  });
}

/** A catalog write names this DC or none: instances stay at home, another DC's catalog is written there. */
function otherDc(asked: string | undefined, dc: string): void {
  if (asked && asked !== dc)
    throw invalid([{ Field: 'Datacenter', Message: `this server writes the catalog of ${dc}; register in ${asked} at its own servers` }]);
}
