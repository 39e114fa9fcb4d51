// ACL on a real `isthmus server` (default deny): anonymous refused, bootstrap once, limited tokens.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, runCli, startServer, tempDir, type ServerProcess } from '../harness/server-process.js';

let srv: ServerProcess;

beforeAll(async () => {
  srv = await startServer('server', ['--data-dir', tempDir()]);
});
afterAll(async () => {
  await srv?.stop();
});

describe('ACL on isthmus server', () => {
  it('refuses anonymous writes, bootstraps once, and enforces a token policy', async () => {
    const anon = await api(srv.url, 'PUT', '/v1/agent/service/register', { Name: 'web', Port: 1 });
    expect(anon.status).toBe(403);
    expect(anon.headers.get('x-consul-default-acl-policy')).toBe('deny');

    const boot = await runCli(['acl', 'bootstrap', '--format', 'json'], { ISTHMUS_HTTP_ADDR: srv.addr });
    expect(boot.code).toBe(0);
    const mgmt = JSON.parse(boot.stdout).SecretID as string;
    expect(mgmt).toMatch(/^[0-9a-f-]{36}$/);
    expect((await api(srv.url, 'PUT', '/v1/acl/bootstrap')).status).toBe(403);

    const env = { ISTHMUS_HTTP_ADDR: srv.addr, ISTHMUS_HTTP_TOKEN: mgmt };
    const pol = await runCli(['acl', 'policy', 'create', '--name', 'web-writer', '--rules', 'service "web" { policy = "write" }'], env);
    expect(pol.code).toBe(0);
    const tok = await runCli(['acl', 'token', 'create', '--policy', 'web-writer', '--format', 'json'], env);
    expect(tok.code).toBe(0);
    const limited = JSON.parse(tok.stdout).SecretID as string;

    expect((await api(srv.url, 'PUT', '/v1/agent/service/register', { Name: 'web', Port: 1 }, limited)).status).toBe(200);
    expect((await api(srv.url, 'PUT', '/v1/agent/service/register', { Name: 'db', Port: 2 }, limited)).status).toBe(403);
    const bearer = await fetch(`${srv.url}/v1/catalog/service/web`, { headers: { Authorization: `Bearer ${limited}` } });
    expect(((await bearer.json()) as unknown[]).length).toBe(1);
    // The limited token cannot see what it has no rule for; the management token can.
    expect(Object.keys((await api(srv.url, 'GET', '/v1/catalog/services', undefined, limited)).body)).toEqual(['web']);
    const unknown = await api(srv.url, 'GET', '/v1/catalog/services', undefined, '00000000-1111-2222-3333-444444444444');
    expect(unknown.status).toBe(403);
    const cli = await runCli(['intention', 'create', 'web', 'db'], { ISTHMUS_HTTP_ADDR: srv.addr, ISTHMUS_HTTP_TOKEN: limited });
    expect(cli.code).toBe(1);
    expect(cli.stderr).toMatch(/Permission denied/i);
  });
});
