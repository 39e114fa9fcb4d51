// A hono app wired like the real one (error mapping, an authorizer per request) for route unit tests.
import { Hono } from 'hono';
import type { ApiEnv } from '../env.js';
import { respondError } from '../errors.js';
import { allowAll, type Authorizer } from '../../acl/index.js';
import type { Actor } from '../../core/audit.js';

export interface TestAppOptions {
  authz?: Authorizer;
  actor?: Actor;
}

export function testApp(mount: (app: Hono<ApiEnv>) => void, opts: TestAppOptions = {}): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  app.onError((err, c) => respondError(c, err));
  app.use('*', async (c, next) => {
    c.set('authz', opts.authz ?? allowAll);
    c.set('actor', opts.actor ?? { accessorId: 'test-accessor', description: 'test', dc: 'dc1' });
    c.set('token', undefined);
    await next();
  });
  mount(app);
  return app;
}
