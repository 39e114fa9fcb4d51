// Status, agent self, CA roots (trust domain from first start), the audit trail and /metrics.
import type { Hono } from 'hono';
import type { Registry } from 'prom-client';
import type { ApiEnv } from './env.js';
import type { Store } from '../store/index.js';
import { blockingRead } from './blocking.js';
import { requirePermission } from './authz.js';
import { AuditLog } from '../core/audit.js';
import { invalid } from '../core/errors.js';

export interface StatusRouteDeps {
  store: Store;
  registry: Registry;
  dc: string;
  primaryDc: string;
  nodeName: string;
  version: string;
  trustDomain: () => string;
  aclDefaultPolicy: 'allow' | 'deny';
}

export function registerStatusRoutes(app: Hono<ApiEnv>, deps: StatusRouteDeps): void {
  const { store } = deps;
  const audit = new AuditLog(store);

  app.get('/v1/status/leader', (c) => c.json(store.leader() ?? ''));
  app.get('/v1/status/peers', (c) => {
    const leader = store.leader();
    return c.json(leader ? [leader] : []);
  });

  app.get('/v1/agent/self', (c) => {
    requirePermission(c, (a) => a.operatorRead(), 'operator:read');
    return c.json({
      Config: { Datacenter: deps.dc, PrimaryDatacenter: deps.primaryDc, NodeName: deps.nodeName, Server: true, Version: deps.version },
      DebugConfig: { ACLDefaultPolicy: deps.aclDefaultPolicy },
      Member: { Name: deps.nodeName, Tags: { dc: deps.dc, role: 'isthmus' } },
    });
  });

  // Isthmus' own: who changed which intention or ACL object, when, from which DC.
  app.get('/v1/audit', async (c) => {
    requirePermission(c, (a) => a.operatorRead(), 'operator:read');
    const kind = c.req.query('kind');
    const since = c.req.query('since');
    if (since !== undefined && Number.isNaN(Date.parse(since))) throw invalid([{ Field: 'since', Message: 'must be an RFC 3339 time' }]);
    const events = await blockingRead(c, store, audit, () => audit.events({ kind, since }));
    return c.json(events);
  });

  app.get('/metrics', async (c) => {
    const text = await deps.registry.metrics();
    return c.text(text, 200, { 'Content-Type': deps.registry.contentType });
  });
}
