// The hono environment every route module shares: what the ACL middleware resolved for the request.
import type { Authorizer } from '../acl/index.js';
import type { Actor } from '../core/audit.js';

export interface ApiVariables {
  authz: Authorizer;
  actor: Actor;
  /** The token's secret as sent (for forwarding), if any. */
  token: string | undefined;
}

export type ApiEnv = { Variables: ApiVariables };
