// Helpers routes use to check the request's Authorizer; a refusal is ISTHMUS_ERR_PERMISSION_DENIED (403).
import type { Context } from 'hono';
import type { ApiEnv } from './env.js';
import { permissionDenied } from '../core/errors.js';
import type { Authorizer } from '../acl/index.js';

export function requirePermission(c: Context<ApiEnv>, check: (a: Authorizer) => boolean, what: string): void {
  if (!check(c.get('authz'))) throw permissionDenied(`Permission denied: token lacks ${what}`);
}
