export { allowAll, denyAll } from './authorizer.js';
export type { Authorizer, AccessLevel } from './authorizer.js';
