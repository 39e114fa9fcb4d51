// The HTTP API of one server: Consul-compatible routes, Isthmus' own, metrics; errors mapped in one place.
import { Hono } from 'hono';
import type { Registry } from 'prom-client';
import type { ApiEnv } from './env.js';
import { failureLogLevel, respondError } from './errors.js';
import { StaticPathRouter } from './router.js';
import { resolveAcl } from './middleware-acl.js';
import { registerAclRoutes } from './routes-acl.js';
import { registerAgentRoutes } from './routes-agent.js';
import { registerCatalogRoutes } from './routes-catalog.js';
import { registerHealthRoutes } from './routes-health.js';
import { registerIntentionRoutes } from './routes-intentions.js';
import { registerConfigRoutes } from './routes-config.js';
import { registerDiscoveryChainRoutes } from './routes-discovery-chain.js';
import { registerStatusRoutes } from './routes-status.js';
import { registerCaRoutes } from './routes-ca.js';
import { registerFlowRoutes } from './routes-flows.js';
import { registerFederationRoutes } from './routes-federation.js';
import { registerPolicyRoutes } from './routes-policy.js';
import { registerUiRoutes } from './routes-ui.js';
import type { Federation } from '../federation/index.js';
import type { FlowStore } from '../dataflow/index.js';
import type { Store } from '../store/index.js';
import type { Catalog } from '../catalog/index.js';
import type { Intentions } from '../intentions/index.js';
import type { ConfigEntries } from '../config-entries/index.js';
import type { Acl } from '../acl/index.js';
import type { CertificateAuthority, LeafCache } from '../ca/index.js';
import { httpMetrics, type Logger } from '../telemetry/index.js';
import { ErrorCodes } from '../core/errors.js';

export interface ApiDeps {
  store: Store;
  catalog: Catalog;
  intentions: Intentions;
  configEntries: ConfigEntries;
  acl: Acl;
  ca: CertificateAuthority;
  leaves: LeafCache;
  flows: FlowStore;
  registry: Registry;
  logger: Logger;
  dc: string;
  primaryDc: string;
  nodeName: string;
  version: string;
  aclDefaultPolicy: 'allow' | 'deny';
  trustDomain: () => string;
  datacenters: () => string[];
  /** Federation with other DCs (absent: this server stands alone). */
  federation?: Federation;
}

export function createApi(deps: ApiDeps): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>({ router: new StaticPathRouter() });
  const metrics = httpMetrics(deps.registry);
  const log = deps.logger.child({ component: 'api' });

  app.onError((err, c) => {
    const res = respondError(c, err);
    const level = failureLogLevel(err, res.status);
    if (level) log[level]('request failed', { method: c.req.method, path: c.req.path, error: err });
    return res;
  });
  app.notFound((c) => c.json({ Error: ErrorCodes.NOT_FOUND, Message: `no such endpoint: ${c.req.method} ${c.req.path}` }, 404));

  // One middleware for the whole request: resolve the token, run, then count (a route's error has
  // become its answer by then, so it is counted with its status).
  const resolve = resolveAcl(deps.acl);
  app.use('*', async (c, next) => {
    const start = performance.now();
    resolve(c);
    await next();
    const method = c.req.method;
    const status = c.res.status;
    metrics.series(method, c.req.routePath || 'unmatched').observe(status, (performance.now() - start) / 1000);
    if (log.tracing) log.debug('request', { method, path: c.req.path, status });
  });

  // First: in a secondary it forwards writes of replicated kinds before any route makes them here.
  if (deps.federation) registerFederationRoutes(app, { federation: deps.federation, store: deps.store, dc: deps.dc });
  registerStatusRoutes(app, deps);
  registerAclRoutes(app, { store: deps.store, acl: deps.acl });
  registerAgentRoutes(app, { store: deps.store, catalog: deps.catalog, dc: deps.dc, datacenters: deps.datacenters });
  registerCatalogRoutes(app, { store: deps.store, catalog: deps.catalog, dc: deps.dc, datacenters: deps.datacenters });
  registerHealthRoutes(app, { store: deps.store, catalog: deps.catalog, dc: deps.dc, datacenters: deps.datacenters });
  registerIntentionRoutes(app, { store: deps.store, intentions: deps.intentions });
  registerConfigRoutes(app, { store: deps.store, configEntries: deps.configEntries, intentions: deps.intentions });
  registerDiscoveryChainRoutes(app, { store: deps.store, configEntries: deps.configEntries, dc: deps.dc, trustDomain: deps.trustDomain });
  registerFlowRoutes(app, { flows: deps.flows, dc: deps.dc, federation: deps.federation });
  registerPolicyRoutes(app, {
    flows: deps.flows,
    dc: deps.dc,
    federation: deps.federation,
    intentions: deps.intentions,
    defaultAllow: () => deps.aclDefaultPolicy === 'allow',
  });
  registerCaRoutes(app, { store: deps.store, ca: deps.ca, leaves: deps.leaves, trustDomain: deps.trustDomain });
  registerUiRoutes(app);
  return app;
}
