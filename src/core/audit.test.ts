// The audit trail's reader: commit order (not key order), the kind and since filters, the index.
import { describe, expect, it } from 'vitest';
import { AuditLog, auditOp, type AuditSource } from './audit.js';

const actor = { accessorId: 'acc-1', description: 'test', dc: 'dc1' };

/** The audit table of a store, its entries in key order (as Store.list gives them), each with its commit index. */
function source(entries: { index: number; op: ReturnType<typeof auditOp>; time: string }[]): AuditSource {
  const rows = entries.map((e, i) => ({ key: `${i}`, value: { ...e.op.value, Time: e.time }, modifyIndex: e.index }));
  return {
    list: <T>(table: string) => (table === 'audit' ? rows : []) as unknown as { value: T; modifyIndex: number }[],
    tableIndex: (table) => (table === 'audit' ? Math.max(0, ...rows.map((r) => r.modifyIndex)) : 0),
    waitForChange: async () => 0,
  };
}

describe('AuditLog', () => {
  it('lists events in commit order with their index, filtered by kind and time', () => {
    const log = new AuditLog(
      source([
        // Keys sort by time; here a later commit carries an earlier clock (another replica's skew).
        { index: 7, op: auditOp(actor, { Kind: 'intention', Action: 'create', Subject: 'web => db' }), time: '2024-01-01T00:00:01.000Z' },
        { index: 5, op: auditOp(actor, { Kind: 'acl-token', Action: 'create', Subject: 'token a' }), time: '2024-01-01T00:00:02.000Z' },
        { index: 9, op: auditOp(actor, { Kind: 'intention', Action: 'delete', Subject: 'web => db' }), time: '2024-01-01T00:00:03.000Z' },
      ]),
    );
    expect(log.index()).toBe(9);
    expect(log.events().map((e) => [e.Index, e.Subject])).toEqual([
      [5, 'token a'],
      [7, 'web => db'],
      [9, 'web => db'],
    ]);
    expect(log.events({ kind: 'intention' }).map((e) => e.Action)).toEqual(['create', 'delete']);
    expect(log.events({ since: '2024-01-01T00:00:02Z' }).map((e) => e.Index)).toEqual([5, 9]);
  });
});
