import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../store/index.js';
import { AuditLog } from '../core/audit.js';
import { Acl } from './acl.js';
import { compileAuthorizer } from './compile.js';
import { parseRules } from './rules.js';

const actor = { accessorId: 'a', description: 't', dc: 'dc1' };
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function setup(defaultPolicy: 'allow' | 'deny' = 'deny') {
  const store = new MemoryStore({ dc: 'dc1', advertiseAddr: 'x' });
  await store.start();
  const acl = new Acl({ store, dc: 'dc1', defaultPolicy });
  await acl.start();
  cleanups.push(
    () => acl.stop(),
    () => store.stop(),
  );
  return { store, acl };
}

describe('rules', () => {
  it('parses the HCL subset and the JSON form to the same rules', () => {
    const hcl = parseRules(`
      # web may register; its intentions are read-only
      service "web" { policy = "write" intentions = "read" }
      service_prefix "" { policy = "read" } // everyone else: read
      operator = "read"
    `);
    const json = parseRules('{"service":{"web":{"policy":"write","intentions":"read"}},"service_prefix":{"":{"policy":"read"}},"operator":"read"}');
    expect(hcl).toEqual(json);
  });

  it('names the line of a mistake', () => {
    expect(() => parseRules('service "a" { policy = "read" }\n\nservice "b" { policy = "writ" }')).toThrow(/line 3: unknown policy "writ"/);
    expect(() => parseRules('nodes = "read"')).toThrow(/line 1: unknown rule "nodes"/);
    expect(() => parseRules('service "a" {')).toThrow(/expected/);
  });

  it('lets exact beat prefix, the longest prefix win, and deny win at the same specificity', () => {
    const a = compileAuthorizer(
      [
        parseRules('service_prefix "" { policy = "write" }\nservice_prefix "db-" { policy = "read" }\nservice "db-main" { policy = "deny" }'),
        parseRules('service "db-main" { policy = "write" }'),
      ],
      'deny',
    );
    expect([a.serviceWrite('web'), a.serviceWrite('db-x'), a.serviceRead('db-x'), a.serviceRead('db-main')]).toEqual([true, false, true, false]);
    expect(a.intentionRead('web')).toBe(true);
    expect(a.intentionWrite('web')).toBe(false);
    expect(a.operatorRead()).toBe(false);
  });
});

describe('Acl', () => {
  it('bootstraps exactly once, even when racing', async () => {
    const { acl } = await setup();
    const results = await Promise.allSettled([acl.bootstrap(actor), acl.bootstrap(actor), acl.bootstrap(actor)]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason.code)).toEqual([
      'ISTHMUS_ERR_ACL_BOOTSTRAPPED',
      'ISTHMUS_ERR_ACL_BOOTSTRAPPED',
    ]);
  });

  it('resolves anonymous, management, limited and unknown tokens', async () => {
    const { acl, store } = await setup('deny');
    expect(acl.resolve(undefined).authz.serviceRead('web')).toBe(false);
    const mgmt = await acl.bootstrap(actor);
    expect(acl.resolve(mgmt.SecretID).authz.aclWrite()).toBe(true);
    const pol = await acl.upsertPolicy({ Name: 'web', Rules: 'service "web" { policy = "write" }' }, actor);
    const tok = await acl.upsertToken({ Description: 'web token', Policies: [{ Name: 'web' }] }, actor);
    const r = acl.resolve(tok.SecretID);
    expect([r.authz.serviceWrite('web'), r.authz.serviceWrite('db'), r.actor.accessorId]).toEqual([true, false, tok.AccessorID]);
    expect(() => acl.resolve('00000000-0000-0000-0000-00000000dead')).toThrow(expect.objectContaining({ code: 'ISTHMUS_ERR_ACL_NOT_FOUND' }));
    // Changing the policy takes effect at once (the cache is dropped).
    await acl.upsertPolicy({ Name: 'web', Rules: 'service "web" { policy = "read" }' }, actor, pol.ID);
    expect(acl.resolve(tok.SecretID).authz.serviceWrite('web')).toBe(false);
    await acl.deleteToken(tok.AccessorID, actor);
    expect(() => acl.resolve(tok.SecretID)).toThrow();
    // No secret ever reaches the audit trail.
    const trail = JSON.stringify(new AuditLog(store).events());
    expect(trail).toContain(tok.AccessorID);
    expect(trail).not.toContain(tok.SecretID);
    expect(trail).not.toContain(mgmt.SecretID);
  });

  it('refuses a token naming a missing policy, changing nothing', async () => {
    const { acl, store } = await setup();
    const before = store.index();
    await expect(acl.upsertToken({ Policies: [{ Name: 'nope' }] }, actor)).rejects.toMatchObject({
      code: 'ISTHMUS_ERR_INVALID',
      violations: [{ Field: 'Policies[0]' }],
    });
    expect(store.index()).toBe(before);
  });

  it('offers its index and changes, and a tokens watch apart from the policies', async () => {
    const { acl } = await setup();
    const tokens = acl.watch('tokens');
    const policies = acl.watch('policies');
    let changes = 0;
    acl.onChange(() => void changes++);
    await acl.upsertPolicy({ Name: 'p', Rules: '' }, actor);
    expect([tokens.index(), policies.index() > 0, acl.index()]).toEqual([0, true, policies.index()]);
    const waiting = acl.waitForChange(acl.index(), 5000);
    const t = await acl.upsertToken({ Description: 't', Policies: [{ Name: 'p' }] }, actor);
    expect(await waiting).toBe(t.ModifyIndex);
    expect([tokens.index(), acl.index(), changes]).toEqual([t.ModifyIndex, t.ModifyIndex, 2]);
  });
});
