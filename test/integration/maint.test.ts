// `isthmus maint` against a real `isthmus dev`: a service with a sidecar goes into maintenance, its
// maintenance check shows critical with the reason, the sidecar leaves callers' passing endpoints
// (through its alias check), the command lists it, and -disable brings it back. Node maintenance too.
import { createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, freePort, runCli, startServer, tempDir, type ServerProcess } from '../harness/server-process.js';
import { until } from '../harness/until.js';

let srv: ServerProcess;
let listener: Server;
const SERVICE = 'maint-web';

const maint = (...args: string[]) => runCli(['maint', ...args, '-http-addr', srv.addr]);
const passingEndpoints = async () => (await api(srv.url, 'GET', `/v1/health/connect/${SERVICE}?passing`)).body as unknown[];

beforeAll(async () => {
  srv = await startServer('dev', []);
  // Stands in for the sidecar's public listener, so its automatic listening check passes.
  const sidecarPort = await freePort();
  listener = createServer((s) => s.destroy());
  await new Promise<void>((r) => listener.listen(sidecarPort, '127.0.0.1', () => r()));
  const reg = await api(srv.url, 'PUT', '/v1/agent/service/register', {
    Name: SERVICE,
    Port: await freePort(),
    Connect: { SidecarService: { Port: sidecarPort } },
  });
  expect(reg.status).toBe(200);
  await until('the sidecar to pass its checks', async () => (await passingEndpoints()).length === 1);
}, 60_000);

afterAll(async () => {
  await srv?.stop();
  await new Promise((r) => listener?.close(r));
});

describe('isthmus maint', () => {
  it('takes a service and its sidecar out of passing answers with the reason, lists it, and brings it back', async () => {
    const on = await maint('-enable', '-service', SERVICE, '-reason', 'r');
    expect(on).toMatchObject({ code: 0, stdout: `Service maintenance is now enabled for "${SERVICE}"\n` });

    const health = (await api(srv.url, 'GET', `/v1/health/service/${SERVICE}`)).body as { Checks: Record<string, unknown>[] }[];
    expect(health).toHaveLength(1);
    expect(health[0].Checks).toContainEqual(
      expect.objectContaining({
        CheckID: `_service_maintenance:${SERVICE}`,
        Name: 'Service Maintenance Mode',
        Status: 'critical',
        Notes: 'r',
        ServiceID: SERVICE,
      }),
    );
    expect((await api(srv.url, 'GET', `/v1/health/service/${SERVICE}?passing`)).body).toEqual([]);
    await until('the sidecar to leave the passing connect endpoints', async () => (await passingEndpoints()).length === 0);
    const all = (await api(srv.url, 'GET', `/v1/health/connect/${SERVICE}`)).body as { Checks: { Name: string; Status: string }[] }[];
    expect(all[0].Checks).toContainEqual(expect.objectContaining({ Name: `Connect Sidecar Aliasing ${SERVICE}`, Status: 'critical' }));

    const listed = await maint();
    expect(listed).toMatchObject({ code: 0, stdout: `Service:\n  ID:     ${SERVICE}\n  Reason: r\n\n` });

    const off = await maint('--disable', '--service', SERVICE);
    expect(off).toMatchObject({ code: 0, stdout: `Service maintenance is now disabled for "${SERVICE}"\n` });
    await until('the sidecar to come back', async () => (await passingEndpoints()).length === 1);
    expect((await api(srv.url, 'GET', `/v1/health/service/${SERVICE}?passing`)).body).toHaveLength(1);
    expect(await maint()).toMatchObject({ code: 0, stdout: '' });
  });

  it('puts the node in maintenance, which takes every instance on it out, and lists it', async () => {
    expect(await maint('-enable', '-reason', 'rack move')).toMatchObject({ code: 0, stdout: 'Node maintenance is now enabled\n' });
    await until('the node to take the sidecar out', async () => (await passingEndpoints()).length === 0);
    const listed = await maint();
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/^Node:\n {2}Name: {3}\S+\n {2}Reason: rack move\n\n$/);
    expect(await maint('-disable')).toMatchObject({ code: 0, stdout: 'Node maintenance is now disabled\n' });
    await until('the sidecar to come back', async () => (await passingEndpoints()).length === 1);
  });

  it("fails with the server's message for an unknown service, and with Consul's for conflicting flags, changing nothing", async () => {
    const unknown = await maint('-enable', '-service', 'nope');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('No service registered with ID "nope"');
    expect(unknown.stdout).toBe('');

    for (const [args, message] of [
      [['-enable', '-disable'], 'Only one of -enable or -disable may be provided'],
      [['-disable', '-reason', 'x'], 'Reason may only be provided with -enable'],
      [['-service', SERVICE], 'Service requires either -enable or -disable'],
    ] as const) {
      const r = await maint(...args);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr).toContain(message);
    }
    expect(await maint()).toMatchObject({ code: 0, stdout: '' });
    expect(await passingEndpoints()).toHaveLength(1);
  });
});

describe('isthmus maint with ACLs (default deny)', () => {
  let secure: ServerProcess;
  beforeAll(async () => {
    secure = await startServer('server', ['--data-dir', tempDir()]);
  }, 60_000);
  afterAll(async () => {
    await secure?.stop();
  });

  it('needs service:write on the service, and operator:write for the node, with the token from -token', async () => {
    const cli = (args: string[], token?: string) => runCli(['maint', ...args, '-http-addr', secure.addr, ...(token ? ['-token', token] : [])]);
    const env = { ISTHMUS_HTTP_ADDR: secure.addr };
    const mgmt = JSON.parse((await runCli(['acl', 'bootstrap', '--format', 'json'], env)).stdout).SecretID as string;
    const admin = { ...env, ISTHMUS_HTTP_TOKEN: mgmt };
    expect((await runCli(['acl', 'policy', 'create', '--name', 'web-writer', '--rules', `service "${SERVICE}" { policy = "write" }`], admin)).code).toBe(0);
    const limited = JSON.parse((await runCli(['acl', 'token', 'create', '--policy', 'web-writer', '--format', 'json'], admin)).stdout).SecretID as string;
    expect((await api(secure.url, 'PUT', '/v1/agent/service/register', { Name: SERVICE, Port: 1 }, mgmt)).status).toBe(200);

    const anonymous = await cli(['-enable', '-service', SERVICE]);
    expect(anonymous.code).toBe(1);
    expect(anonymous.stderr).toMatch(/Permission denied/i);
    expect(await cli(['-enable', '-service', SERVICE, '-reason', 'patching'], limited)).toMatchObject({
      code: 0,
      stdout: `Service maintenance is now enabled for "${SERVICE}"\n`,
    });
    const node = await cli(['-enable'], limited);
    expect(node.code).toBe(1);
    expect(node.stderr).toMatch(/Permission denied/i);
    expect((await cli([], mgmt)).stdout).toBe(`Service:\n  ID:     ${SERVICE}\n  Reason: patching\n\n`);
  });
});
