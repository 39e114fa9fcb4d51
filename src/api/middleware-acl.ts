// Resolves the request's token (X-Consul-Token, Authorization: Bearer, or ?token=) once, and
// marks every answer with the cluster's default ACL policy, as Consul does.
import type { Context, MiddlewareHandler } from 'hono';
import type { Acl } from '../acl/index.js';
import type { ApiEnv } from './env.js';

export function aclMiddleware(acl: Acl): MiddlewareHandler<ApiEnv> {
  const resolve = resolveAcl(acl);
  return async (c, next) => {
    c.header('X-Consul-Default-ACL-Policy', acl.defaultPolicy);
    resolve(c);
    await next();
  };
}

/**
 * The token resolution alone, for the app's single request middleware; the server sets the
 * default-policy header on every answer at the socket level (listenHttp's static headers), which
 * keeps hono's fast response path.
 */
export function resolveAcl(acl: Acl): (c: Context<ApiEnv>) => void {
  return (c) => {
    const raw = nodeHeaders(c);
    const auth = raw ? (raw.authorization as string | undefined) : c.req.header('authorization');
    const bearer = auth && /^bearer\s+/i.test(auth) ? auth.replace(/^bearer\s+/i, '').trim() : undefined;
    const consul = raw ? (raw['x-consul-token'] as string | undefined) : c.req.header('x-consul-token');
    // Parsing the query string only when it can hold a token keeps the common path cheap.
    const secret = consul || bearer || (c.req.url.includes('token=') ? c.req.query('token') : undefined) || undefined;
    const r = acl.resolve(secret);
    c.set('authz', r.authz);
    c.set('actor', r.actor);
    c.set('token', secret);
  };
}

/** The Node request's plain header object when served by the Node adapter (undefined in app.request tests). */
export function nodeHeaders(c: Context): Record<string, string | string[] | undefined> | undefined {
  return (c.env as { incoming?: { headers: Record<string, string | string[] | undefined> } } | undefined)?.incoming?.headers;
}
