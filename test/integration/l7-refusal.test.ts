// Issue 21: what cannot be enforced is refused. Against a real `isthmus dev` with `isthmus connect
// proxy` sidecars: an L7 intention for a destination that speaks tcp is refused and stores nothing;
// service-defaults Protocol = "http" lets it in; the change back to tcp is refused; a
// service-intentions entry written with `isthmus config write` reads back through both APIs; and a
// sidecar whose listener is tcp refuses the connection an L7 intention decides (fails closed).
import http from 'node:http';
import { rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, freePort, runCli, startCli, startServer, tempDir, type ServerProcess } from '../harness/server-process.js';

let srv: ServerProcess;
let upstreamPort = 0;
const stops: (() => Promise<unknown> | void)[] = [];
const dir = tempDir('isthmus-l7-refusal-');
const cli = (...args: string[]) => runCli([...args, '-http-addr', srv.addr]);
const l7 = [{ Action: 'allow', HTTP: { PathPrefix: '/v1/', Methods: ['GET'] } }];

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.setTimeout(3000, () => req.destroy(new Error('timeout')));
  });
}

async function eventually<T>(read: () => Promise<T>, ok: (v: T) => boolean, what: string): Promise<T> {
  let v = await read();
  for (let i = 0; i < 50 && !ok(v); i++) {
    await new Promise((r) => setTimeout(r, 200));
    v = await read();
  }
  if (!ok(v)) throw new Error(`${what}: last seen ${JSON.stringify(v)}`);
  return v;
}

const intentions = async () => (await api(srv.url, 'GET', '/v1/connect/intentions')).body as any[];

beforeAll(async () => {
  srv = await startServer('dev', []);
  stops.push(() => srv.stop());
  const app = http.createServer((req, res) => res.end(`api says hi to ${req.url}`));
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  stops.push(
    () =>
      new Promise<void>((r) => {
        app.closeAllConnections();
        app.close(() => r());
      }),
  );
  upstreamPort = await freePort();
  const env = { ISTHMUS_HTTP_ADDR: srv.addr };
  const grpcAddr = /gRPC: (\S+)/.exec(srv.output())![1];
  // api's sidecar registration says tcp: its inbound listener relays bytes and parses no request.
  await api(srv.url, 'PUT', '/v1/agent/service/register', {
    Name: 'api',
    Port: (app.address() as AddressInfo).port,
    Connect: { SidecarService: { Port: await freePort(), Proxy: { Config: { protocol: 'tcp' } } } },
  });
  await api(srv.url, 'PUT', '/v1/agent/service/register', {
    Name: 'web',
    Port: 1,
    Connect: { SidecarService: { Port: await freePort(), Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindPort: upstreamPort }] } } },
  });
  const a = await startCli(['connect', 'proxy', '--sidecar-for', 'api', '--grpc-addr', grpcAddr], /Sidecar for api/, env);
  stops.push(() => a.stop());
  const w = await startCli(['connect', 'proxy', '--sidecar-for', 'web', '--grpc-addr', grpcAddr], /upstream api: .*\(1 endpoint/, env);
  stops.push(() => w.stop());
});

afterAll(async () => {
  while (stops.length) await stops.pop()!();
  rmSync(dir, { recursive: true, force: true });
});

describe('L7 intentions need an L7 protocol (issue 21)', () => {
  it('refuses an L7 intention for a tcp destination, takes it once service-defaults says http, and refuses the change back', async () => {
    const before = await api(srv.url, 'GET', '/v1/connect/intentions');
    const refused = await api(srv.url, 'PUT', '/v1/connect/intentions/exact?source=web&destination=api', { Permissions: l7 });
    expect(refused.status).toBe(400);
    expect(refused.body).toMatchObject({
      Error: 'ISTHMUS_ERR_INVALID',
      Violations: [
        {
          Field: 'Permissions',
          Message:
            'destination "api" speaks tcp (from its sidecar registrations); L7 permissions need http, http2 or grpc: set it with a service-defaults entry (Protocol = "http")',
        },
      ],
    });
    const posted = await api(srv.url, 'POST', '/v1/connect/intentions', { SourceName: 'web', DestinationName: 'api', Permissions: l7 });
    expect([posted.status, posted.body.Violations[0].Field]).toEqual([400, 'Permissions']);
    const after = await api(srv.url, 'GET', '/v1/connect/intentions');
    expect(after.body).toEqual(before.body);
    expect(after.headers.get('x-consul-index')).toBe(before.headers.get('x-consul-index'));

    expect((await api(srv.url, 'PUT', '/v1/config', { Kind: 'service-defaults', Name: 'api', Protocol: 'http' })).body).toBe(true);
    const taken = await api(srv.url, 'PUT', '/v1/connect/intentions/exact?source=web&destination=api', { Permissions: l7 });
    expect([taken.status, taken.body]).toEqual([200, true]);
    const id = (await api(srv.url, 'GET', '/v1/connect/intentions/exact?source=web&destination=api')).body.ID;
    expect(id).toMatch(/^[0-9a-f-]{36}$/);

    const back = await api(srv.url, 'PUT', '/v1/config', { Kind: 'service-defaults', Name: 'api', Protocol: 'tcp' });
    expect(back.status).toBe(400);
    expect(back.body.Violations).toEqual([
      {
        Field: 'Protocol',
        Message: `destination "api" would speak tcp (from service-defaults), but intention ${id} has L7 permissions, which need http, http2 or grpc: remove their Permissions first, or keep an L7 protocol`,
      },
    ]);
    // Deleting the entry would fall back to the sidecar registration's tcp: refused as well.
    expect((await api(srv.url, 'DELETE', '/v1/config/service-defaults/api')).status).toBe(400);
    expect((await api(srv.url, 'GET', '/v1/config/service-defaults/api')).body.Protocol).toBe('http');
  });

  it("checks the L7 intention per request once service-defaults makes api http: its running sidecar's listener follows", async () => {
    // The intention of the test before: L7 permissions for web => api, api's sidecar registered as tcp.
    // The service-defaults entry is what the listener follows (a tcp listener given an L7 rule
    // refuses the connection: src/sidecar/sidecar.test.ts shows that case).
    const id = (await api(srv.url, 'GET', '/v1/connect/intentions/exact?source=web&destination=api')).body.ID;
    const answered = await eventually(
      () =>
        get(upstreamPort, '/v1/orders').then(
          (r) => `answered ${r.status}`,
          () => 'refused',
        ),
      (v) => v.startsWith('answered'),
      'no request was answered',
    );
    expect(answered).toMatch(/^answered (200|403)$/);
    const checked = await eventually(
      async () => ((await api(srv.url, 'GET', '/v1/flows?to=api')).body.Records as any[]).filter((r) => r.hop === 'server-sidecar' && r.requestIndex > 0),
      (rs) => rs.length > 0,
      'no per-request record from the server sidecar',
    );
    expect(checked[0]).toMatchObject({ intentionId: id, source: { service: 'web' }, destination: { service: 'api' }, http: { path: '/v1/orders' } });
  });

  it('writes a service-intentions entry with `isthmus config write`, and reads it back through both APIs', async () => {
    const path = join(dir, 'api-intentions.hcl');
    writeFileSync(
      path,
      [
        'Kind = "service-intentions"',
        'Name = "api"',
        'Meta = {',
        '  owner = "team-a"',
        '}',
        'Sources = [',
        '  {',
        '    Name = "web"',
        '    Permissions = [',
        '      {',
        '        Action = "allow"',
        '        HTTP {',
        '          PathPrefix = "/v2/"',
        '          Methods = ["GET", "PUT"]',
        '        }',
        '      }',
        '    ]',
        '  },',
        '  {',
        '    Name = "batch"',
        '    Action = "deny"',
        '    Description = "batch goes through the queue"',
        '  },',
        ']',
        '',
      ].join('\n'),
    );
    const webId = (await api(srv.url, 'GET', '/v1/connect/intentions/exact?source=web&destination=api')).body.ID;
    const w = await cli('config', 'write', path);
    expect(w.stdout.trim(), w.stderr).toBe('Config entry written: service-intentions/api');

    // The intentions API shows the same records: web's kept its ID, batch's is new.
    const mine = (await intentions()).filter((i) => i.DestinationName === 'api').sort((a, b) => (a.SourceName < b.SourceName ? -1 : 1));
    expect(mine).toEqual([
      expect.objectContaining({ SourceName: 'batch', Action: 'deny', Description: 'batch goes through the queue', Precedence: 9 }),
      expect.objectContaining({ ID: webId, SourceName: 'web', Permissions: [{ Action: 'allow', HTTP: { PathPrefix: '/v2/', Methods: ['GET', 'PUT'] } }] }),
    ]);

    const r = await cli('config', 'read', '-kind', 'service-intentions', '-name', 'api');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      Kind: 'service-intentions',
      Name: 'api',
      Meta: { owner: 'team-a' },
      Sources: [
        expect.objectContaining({ Name: 'batch', Action: 'deny', Precedence: 9, Type: 'consul', LegacyID: mine[0].ID }),
        expect.objectContaining({ Name: 'web', Permissions: mine[1].Permissions, Precedence: 9, Type: 'consul', LegacyID: webId }),
      ],
      CreateIndex: expect.any(Number),
      ModifyIndex: expect.any(Number),
    });
    const l = await cli('config', 'list', '-kind', 'service-intentions');
    expect(l.stdout.trim().split('\n')).toContain('api');

    // An invalid entry names the source's field and changes nothing.
    const before = await intentions();
    const bad = await api(srv.url, 'PUT', '/v1/config', {
      Kind: 'service-intentions',
      Name: 'api',
      Sources: [{ Name: 'web', Action: 'allow', Permissions: l7 }],
    });
    expect([bad.status, bad.body.Violations[0].Field]).toEqual([400, 'Sources[0].Action']);
    const tcpDest = await api(srv.url, 'PUT', '/v1/config', { Kind: 'service-intentions', Name: 'web', Sources: [{ Name: 'api', Permissions: l7 }] });
    expect(tcpDest.body.Violations).toEqual([{ Field: 'Sources[0].Permissions', Message: expect.stringContaining('destination "web" speaks tcp') }]);
    expect(await intentions()).toEqual(before);

    const d = await cli('config', 'delete', '-kind', 'service-intentions', '-name', 'api');
    expect(d.stdout.trim(), d.stderr).toBe('Config entry deleted: service-intentions/api');
    expect((await intentions()).filter((i) => i.DestinationName === 'api')).toEqual([]);
    expect((await api(srv.url, 'GET', '/v1/config/service-intentions/api')).status).toBe(404);
    // With no L7 intention left, api may speak tcp again.
    expect((await api(srv.url, 'PUT', '/v1/config', { Kind: 'service-defaults', Name: 'api', Protocol: 'tcp' })).body).toBe(true);
  });
});
