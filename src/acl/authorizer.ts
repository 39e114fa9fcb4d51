// What a request may do, resolved once per request from its token.

export type AccessLevel = 'deny' | 'read' | 'write';

export interface Authorizer {
  /** May read the service (catalog, health, agent views) named `name`. */
  serviceRead(name: string): boolean;
  /** May register, deregister and update checks of `name`. */
  serviceWrite(name: string): boolean;
  /** May read intentions whose destination is `destination`. */
  intentionRead(destination: string): boolean;
  /** May write intentions whose destination is `destination`. */
  intentionWrite(destination: string): boolean;
  operatorRead(): boolean;
  operatorWrite(): boolean;
  aclRead(): boolean;
  aclWrite(): boolean;
}

/** Everything allowed (dev mode with default allow, the management token). */
export const allowAll: Authorizer = {
  serviceRead: () => true,
  serviceWrite: () => true,
  intentionRead: () => true,
  intentionWrite: () => true,
  operatorRead: () => true,
  operatorWrite: () => true,
  aclRead: () => true,
  aclWrite: () => true,
};

export const denyAll: Authorizer = {
  serviceRead: () => false,
  serviceWrite: () => false,
  intentionRead: () => false,
  intentionWrite: () => false,
  operatorRead: () => false,
  operatorWrite: () => false,
  aclRead: () => false,
  aclWrite: () => false,
};
