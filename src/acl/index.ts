export { allowAll, denyAll } from './authorizer.js';
export type { Authorizer, AccessLevel } from './authorizer.js';
export { Acl, MANAGEMENT_POLICY_ID, ANONYMOUS_ACCESSOR, redactToken } from './acl.js';
export type { Token, Policy, PolicyLink, AclOptions, AclPart, Resolved } from './acl.js';
export { parseRules } from './rules.js';
export type { Rules, ServiceRule } from './rules.js';
export { compileAuthorizer } from './compile.js';
