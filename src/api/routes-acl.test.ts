import { Hono } from 'hono';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../store/index.js';
import { Acl } from '../acl/index.js';
import type { ApiEnv } from './env.js';
import { aclMiddleware } from './middleware-acl.js';
import { registerAclRoutes } from './routes-acl.js';
import { respondError } from './errors.js';

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

describe('ACL middleware and routes', () => {
  it('takes X-Consul-Token or Bearer, marks the default policy, and hides secrets from readers', async () => {
    const { acl, store } = await setup('deny');
    const app = new Hono<ApiEnv>();
    app.onError((err, c) => respondError(c, err));
    app.use('*', aclMiddleware(acl));
    registerAclRoutes(app, { store, acl });
    const boot: any = await (await app.request('/v1/acl/bootstrap', { method: 'PUT' })).json();
    const again = await app.request('/v1/acl/bootstrap', { method: 'PUT' });
    expect(again.status).toBe(403);
    expect(again.headers.get('X-Consul-Default-ACL-Policy')).toBe('deny');
    const h = { 'X-Consul-Token': boot.SecretID };
    await app.request('/v1/acl/policy', { method: 'PUT', headers: h, body: JSON.stringify({ Name: 'reader', Rules: 'acl = "read"' }) });
    const reader: any = await (
      await app.request('/v1/acl/token', { method: 'PUT', headers: h, body: JSON.stringify({ Policies: [{ Name: 'reader' }] }) })
    ).json();
    const list: any = await (await app.request('/v1/acl/tokens', { headers: { Authorization: `Bearer ${reader.SecretID}` } })).json();
    expect(list.length).toBe(2);
    expect(list.every((t: any) => t.SecretID === undefined)).toBe(true);
    expect((await app.request('/v1/acl/tokens')).status).toBe(403);
    expect((await app.request('/v1/acl/tokens', { headers: { 'X-Consul-Token': 'bogus' } })).status).toBe(403);
    const bad = await app.request('/v1/acl/policy', {
      method: 'PUT',
      headers: h,
      body: JSON.stringify({ Name: 'x', Rules: 'service "a" { policy = "all" }' }),
    });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as any).Violations[0]).toEqual({ Field: 'Rules', Message: 'line 1: unknown policy "all" (use read, write or deny)' });
  });
});
