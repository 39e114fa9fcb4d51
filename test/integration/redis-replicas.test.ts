// Two `isthmus server` processes of one DC on one Redis see each other's writes, and a blocking
// query on one returns when the other writes.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, startServer, type ServerProcess } from '../harness/server-process.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
let a: ServerProcess;
let b: ServerProcess;
const dc = `r${randomUUID().slice(0, 8)}`;

beforeAll(async () => {
  const args = ['--dc', dc, '--store', 'redis', '--redis-url', REDIS_URL, '--acl-default-policy', 'allow'];
  a = await startServer('server', [...args, '--node', 'node-a']);
  b = await startServer('server', [...args, '--node', 'node-b']);
});
afterAll(async () => {
  await a?.stop();
  await b?.stop();
  const admin = new Redis(REDIS_URL);
  const keys = await admin.keys(`isthmus:{${dc}}:*`);
  if (keys.length) await admin.del(...keys);
  admin.disconnect();
});

describe('redis store with two servers', () => {
  it('shares writes, the trust domain, and wakes blocking queries across servers', async () => {
    expect((await api(a.url, 'GET', '/v1/connect/ca/roots')).body.TrustDomain).toBe((await api(b.url, 'GET', '/v1/connect/ca/roots')).body.TrustDomain);
    expect((await api(a.url, 'PUT', '/v1/connect/intentions/exact?source=web&destination=db', { Action: 'deny' })).status).toBe(200);
    const seen = await api(b.url, 'GET', '/v1/connect/intentions/check?source=web&destination=db');
    expect(seen.body).toEqual({ Allowed: false });

    const first = await api(b.url, 'GET', '/v1/catalog/service/shared');
    const index = Number(first.headers.get('x-consul-index'));
    const started = Date.now();
    const pending = api(b.url, 'GET', `/v1/catalog/service/shared?index=${index}&wait=10s`);
    await new Promise((r) => setTimeout(r, 300));
    expect((await api(a.url, 'PUT', '/v1/catalog/register', { Node: 'ext-1', Address: '10.0.0.9', Service: { Service: 'shared', Port: 80 } })).status).toBe(
      200,
    );
    const res = await pending;
    expect(Date.now() - started).toBeLessThan(5000);
    expect(res.body).toHaveLength(1);
    expect(res.body[0]).toMatchObject({ Node: 'ext-1', ServiceName: 'shared' });
    const leaders = [(await api(a.url, 'GET', '/v1/status/leader')).body, (await api(b.url, 'GET', '/v1/status/leader')).body];
    expect(leaders[0]).toBe(leaders[1]);
    expect([a.addr, b.addr]).toContain(leaders[0]);
  });
});
