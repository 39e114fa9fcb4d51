// Consul's `GET /v1/discovery-chain/:service[?compile-dc=]`: the service's compiled discovery chain as
// `{"Chain": ...}`, blocking on the config entries. A service nothing is written for gets the
// implicit default chain (Consul answers no 404 here); entries that do not compile answer 400 naming
// the entry and field at fault.
import type { Hono } from 'hono';
import type { ApiEnv } from './env.js';
import type { Store } from '../store/index.js';
import { chainEntries, compileDiscoveryChain, type ConfigEntries } from '../config-entries/index.js';
import { DATACENTER_REF_MESSAGE, isDatacenterRef, isServiceName, SERVICE_NAME_RULE } from '../core/names.js';
import { invalid } from '../core/errors.js';
import { blockingRead } from './blocking.js';
import { requirePermission } from './authz.js';

export interface DiscoveryChainRouteDeps {
  store: Store;
  configEntries: ConfigEntries;
  dc: string;
  trustDomain: () => string;
}

export function registerDiscoveryChainRoutes(app: Hono<ApiEnv>, deps: DiscoveryChainRouteDeps): void {
  const { store, configEntries } = deps;
  const entries = chainEntries(configEntries);

  app.get('/v1/discovery-chain/:service', async (c) => {
    const service = c.req.param('service');
    const compileDc = c.req.query('compile-dc') || deps.dc;
    const v = [];
    if (!isServiceName(service)) v.push({ Field: 'service', Message: `must be a service name (${SERVICE_NAME_RULE})` });
    if (!isDatacenterRef(compileDc)) v.push({ Field: 'compile-dc', Message: DATACENTER_REF_MESSAGE });
    if (v.length) throw invalid(v);
    requirePermission(c, (a) => a.serviceRead(service), `service:read on ${service}`);
    const chain = await blockingRead(c, store, configEntries, () =>
      compileDiscoveryChain(service, { dc: compileDc, trustDomain: deps.trustDomain(), entries }),
    );
    return c.json({ Chain: chain });
  });
}
