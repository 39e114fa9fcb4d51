// Audit events: every change to intentions and ACL state writes one in the same commit as the change;
// AuditLog is how the trail is read.
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

const AUDIT_TABLE = 'audit';

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

/** What reading the audit trail needs of the Store (declared here: core/ sits below store/). */
export interface AuditSource {
  list<T>(table: string): { value: T; modifyIndex: number }[];
  tableIndex(table: string): number;
  waitForChange(tables: string[], afterIndex: number, timeoutMs: number, signal?: AbortSignal): Promise<number>;
}

/** The audit trail as readers see it (its one reader, so no one else names its table): its index, a wait, the events. */
export class AuditLog {
  constructor(private readonly store: AuditSource) {}

  index(): number {
    return this.store.tableIndex(AUDIT_TABLE);
  }

  waitForChange(afterIndex: number, timeoutMs: number, signal?: AbortSignal): Promise<number> {
    return this.store.waitForChange([AUDIT_TABLE], afterIndex, timeoutMs, signal);
  }

  /** Events in commit order, each with its Index; only those of `kind`, and at or after `since` (RFC 3339), if given. */
  events(filter: { kind?: string; since?: string } = {}): AuditEvent[] {
    const { kind, since } = filter;
    return this.store
      .list<AuditEvent>(AUDIT_TABLE)
      .sort((a, b) => a.modifyIndex - b.modifyIndex)
      .filter((e) => (kind ? e.value.Kind === kind : true))
      .filter((e) => (since ? e.value.Time >= new Date(since).toISOString() : true))
      .map((e) => ({ ...e.value, Index: e.modifyIndex }));
  }
}

/** The local actor used by the server itself (check runners, reaping). */
export function systemActor(dc: string): Actor {
  return { accessorId: '00000000-0000-0000-0000-000000000002', description: 'isthmus server', dc };
}
