// Consul's /v1/acl endpoints: bootstrap, tokens, policies.
import type { Context, Hono } from 'hono';
import { z } from 'zod';
import type { ApiEnv } from './env.js';
import type { Store } from '../store/index.js';
import { redactToken, type Acl, type Token } from '../acl/index.js';
import { blockingRead } from './blocking.js';
import { requirePermission } from './authz.js';
import { readBody } from './validate.js';
import { parseDuration } from '../core/duration.js';
import { ErrorCodes, IsthmusError } from '../core/errors.js';
import { DATACENTER_REF_MESSAGE, DATACENTER_REF_RE } from '../core/names.js';

export interface AclRouteDeps {
  store: Store;
  acl: Acl;
}

const link = z.object({ ID: z.string().optional(), Name: z.string().optional() }).refine((l) => l.ID || l.Name, 'needs ID or Name');
const tokenBody = z
  .object({
    AccessorID: z.string().optional(),
    SecretID: z.string().optional(),
    Description: z.string().max(512).optional(),
    Policies: z.array(link).optional(),
    Local: z.boolean().optional(),
    // Consul's bounds (acl.token_min/max_expiration_ttl defaults); 0 means no expiration.
    ExpirationTTL: z
      .string()
      .transform((v, ctx) => {
        let ms: number;
        try {
          ms = parseDuration(v);
        } catch {
          ctx.addIssue({ code: 'custom', message: `"${v.length > 64 ? `${v.slice(0, 64)}...` : v}" is not a duration` });
          return z.NEVER;
        }
        const none = /^0+(\.0*)?(ns|us|µs|ms|s|m|h)?$/.test(v.trim());
        if (!none && (ms < 60_000 || ms > 24 * 3_600_000)) {
          ctx.addIssue({ code: 'custom', message: 'must be 0 (no expiration) or between 1m and 24h' });
          return z.NEVER;
        }
        return none ? 0 : ms;
      })
      .optional(),
  })
  .passthrough();
const policyBody = z
  .object({
    ID: z.string().optional(),
    Name: z.string({ message: 'is required' }),
    Description: z.string().max(512).optional(),
    Rules: z.string().max(65536).optional(),
    Datacenters: z.array(z.string().regex(DATACENTER_REF_RE, DATACENTER_REF_MESSAGE)).max(64, 'at most 64 datacenters').optional(),
  })
  .passthrough();

export function registerAclRoutes(app: Hono<ApiEnv>, deps: AclRouteDeps): void {
  const { acl, store } = deps;
  const tokens = acl.watch('tokens');
  const policies = acl.watch('policies');
  const show = (c: Context<ApiEnv>, t: Token) => (c.get('authz').aclWrite() ? t : redactToken(t));

  app.put('/v1/acl/bootstrap', async (c) => c.json(await acl.bootstrap(c.get('actor'))));

  app.get('/v1/acl/token/self', (c) => {
    const secret = c.get('token');
    if (!secret) throw new IsthmusError(ErrorCodes.ACL_NOT_FOUND, 'ACL not found');
    const r = acl.resolve(secret);
    return c.json(r.token ?? {});
  });

  app.put('/v1/acl/token', async (c) => {
    requirePermission(c, (a) => a.aclWrite(), 'acl:write');
    return c.json(await acl.upsertToken(await readBody(c, tokenBody), c.get('actor')));
  });

  app.get('/v1/acl/tokens', async (c) => {
    requirePermission(c, (a) => a.aclRead(), 'acl:read');
    const list = await blockingRead(c, store, tokens, () => acl.tokens());
    return c.json(list.map((t) => show(c, t)));
  });

  app.get('/v1/acl/token/:accessor', (c) => {
    requirePermission(c, (a) => a.aclRead(), 'acl:read');
    return c.json(show(c, acl.token(c.req.param('accessor'))));
  });

  app.put('/v1/acl/token/:accessor', async (c) => {
    requirePermission(c, (a) => a.aclWrite(), 'acl:write');
    return c.json(await acl.upsertToken(await readBody(c, tokenBody), c.get('actor'), c.req.param('accessor')));
  });

  app.delete('/v1/acl/token/:accessor', async (c) => {
    requirePermission(c, (a) => a.aclWrite(), 'acl:write');
    await acl.deleteToken(c.req.param('accessor'), c.get('actor'));
    return c.json(true);
  });

  app.put('/v1/acl/policy', async (c) => {
    requirePermission(c, (a) => a.aclWrite(), 'acl:write');
    return c.json(await acl.upsertPolicy(await readBody(c, policyBody), c.get('actor')));
  });

  app.get('/v1/acl/policies', async (c) => {
    requirePermission(c, (a) => a.aclRead(), 'acl:read');
    return c.json(await blockingRead(c, store, policies, () => acl.policies()));
  });

  app.get('/v1/acl/policy/name/:name', (c) => {
    requirePermission(c, (a) => a.aclRead(), 'acl:read');
    return c.json(acl.policyByName(c.req.param('name')));
  });

  app.get('/v1/acl/policy/:id', (c) => {
    requirePermission(c, (a) => a.aclRead(), 'acl:read');
    return c.json(acl.policy(c.req.param('id')));
  });

  app.put('/v1/acl/policy/:id', async (c) => {
    requirePermission(c, (a) => a.aclWrite(), 'acl:write');
    return c.json(await acl.upsertPolicy(await readBody(c, policyBody), c.get('actor'), c.req.param('id')));
  });

  app.delete('/v1/acl/policy/:id', async (c) => {
    requirePermission(c, (a) => a.aclWrite(), 'acl:write');
    await acl.deletePolicy(c.req.param('id'), c.get('actor'));
    return c.json(true);
  });
}
