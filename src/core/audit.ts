// Audit events: every change to intentions and ACL state writes one in the same commit as the change.
import { randomUUID } from 'node:crypto';

/** Who made a request: the token's accessor, and the DC where the request entered. */
export interface Actor {
  accessorId: string;
  description: string;
  dc: string;
}

export interface AuditEvent {
  ID: string;
  /** RFC 3339 time of the change. */
  Time: string;
  Kind: 'intention' | 'acl-token' | 'acl-policy' | 'ca-config' | string;
  Action: 'create' | 'update' | 'delete';
  /** What was changed, e.g. "web => db" or a token accessor id. */
  Subject: string;
  Actor: { AccessorID: string; Description: string };
  /** The DC the request came in through. */
  DC: string;
  Before?: unknown;
  After?: unknown;
  /** The store index of the commit that carried the change (filled on read from modifyIndex). */
  Index?: number;
}

export const AUDIT_TABLE = 'audit';

/** Builds the store put that records `event` (put it in the same commit as the change). */
export function auditOp(actor: Actor, fields: Pick<AuditEvent, 'Kind' | 'Action' | 'Subject' | 'Before' | 'After'>) {
  const now = new Date();
  const event: AuditEvent = {
    ID: randomUUID(),
    Time: now.toISOString(),
    ...fields,
    Actor: { AccessorID: actor.accessorId, Description: actor.description },
    DC: actor.dc,
  };
  // Keys sort roughly by time; readers order by the commit index (exact within a DC).
  const key = `${now.toISOString()}/${event.ID}`;
  return { op: 'put' as const, table: AUDIT_TABLE, key, value: event };
}

/** The local actor used by the server itself (check runners, reaping). */
export function systemActor(dc: string): Actor {
  return { accessorId: '00000000-0000-0000-0000-000000000002', description: 'isthmus server', dc };
}
