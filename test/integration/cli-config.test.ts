// `isthmus config write|read|list|delete` against a dev server's /v1/config (issue 15, point 1),
// through the built CLI, with Consul's outputs and its check-and-set.
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, runCli, startServer, tempDir, type ServerProcess } from '../harness/server-process.js';

let srv: ServerProcess;
const dir = tempDir('isthmus-cli-config-');
const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};
const cli = (...args: string[]) => runCli([...args, '-http-addr', srv.addr]);

beforeAll(async () => {
  srv = await startServer('dev', []);
});

afterAll(async () => {
  await srv?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('isthmus config', () => {
  it('writes an HCL entry, reads it back as JSON, lists it and deletes it', async () => {
    const hcl = file('web-defaults.hcl', 'kind = "service-defaults"\nname = "cfgcli-web"\nprotocol = "http"\nmesh_gateway {\n  mode = "local"\n}\n');
    const w = await cli('config', 'write', hcl);
    expect(w.stdout.trim(), w.stderr).toBe('Config entry written: service-defaults/cfgcli-web');
    expect(w.code).toBe(0);

    const r = await cli('config', 'read', '-kind', 'service-defaults', '-name', 'cfgcli-web');
    expect(r.code, r.stderr).toBe(0);
    const entry = JSON.parse(r.stdout);
    expect(entry).toMatchObject({ Kind: 'service-defaults', Name: 'cfgcli-web', Protocol: 'http', MeshGateway: { Mode: 'local' } });
    expect(r.stdout).toContain('\n    "Kind"');

    const json = file('api-defaults.json', JSON.stringify({ Kind: 'service-defaults', Name: 'cfgcli-api', Protocol: 'grpc' }));
    expect((await cli('config', 'write', json)).code).toBe(0);
    const l = await cli('config', 'list', '--kind', 'service-defaults');
    expect(l.code, l.stderr).toBe(0);
    const names = l.stdout.trim().split('\n');
    expect(names).toEqual(expect.arrayContaining(['cfgcli-web', 'cfgcli-api']));

    const d = await cli('config', 'delete', '--kind', 'service-defaults', '--name', 'cfgcli-web');
    expect(d.stdout.trim(), d.stderr).toBe('Config entry deleted: service-defaults/cfgcli-web');
    const gone = await cli('config', 'read', '-kind', 'service-defaults', '-name', 'cfgcli-web');
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain('Error: reading config entry "service-defaults" / "cfgcli-web"');
    expect((await cli('config', 'list', '-kind', 'service-defaults')).stdout.split('\n')).not.toContain('cfgcli-web');
  });

  it('-cas writes only at the current ModifyIndex, and -cas -modify-index 0 only when the entry is new', async () => {
    const path = file('cas.hcl', 'Kind = "service-defaults"\nName = "cfgcli-cas"\nProtocol = "http"\n');
    expect((await cli('config', 'write', '-cas', '-modify-index', '0', path)).code).toBe(0);
    const again = await cli('config', 'write', '-cas', '-modify-index=0', path);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('Config entry not updated: service-defaults/cfgcli-cas');

    const current = (await api(srv.url, 'GET', '/v1/config/service-defaults/cfgcli-cas')).body as { ModifyIndex: number };
    const stale = await cli('config', 'write', '-cas', '-modify-index', String(current.ModifyIndex + 1000), path);
    expect(stale.code).toBe(1);
    const ok = await cli('config', 'write', '-cas', '-modify-index', String(current.ModifyIndex), path);
    expect(ok.stdout.trim(), ok.stderr).toBe('Config entry written: service-defaults/cfgcli-cas');

    const now = (await api(srv.url, 'GET', '/v1/config/service-defaults/cfgcli-cas')).body as { ModifyIndex: number };
    const staleDelete = await cli(
      'config',
      'delete',
      '-kind',
      'service-defaults',
      '-name',
      'cfgcli-cas',
      '-cas',
      '-modify-index',
      String(now.ModifyIndex + 1000),
    );
    expect(staleDelete.code).toBe(1);
    expect(staleDelete.stderr).toContain('Config entry not deleted: service-defaults/cfgcli-cas');
    const del = await cli('config', 'delete', '-kind', 'service-defaults', '-name', 'cfgcli-cas', '-cas', '-modify-index', String(now.ModifyIndex));
    expect(del.stdout.trim(), del.stderr).toBe('Config entry deleted: service-defaults/cfgcli-cas');
  });

  it('a router and a resolver from HCL in Consul block syntax reach the server as Consul JSON', async () => {
    const defaults = file('r-defaults.hcl', 'Kind = "service-defaults"\nName = "cfgcli-r"\nProtocol = "http"\n');
    expect((await cli('config', 'write', defaults)).code).toBe(0);
    const resolver = file(
      'r-resolver.hcl',
      'Kind = "service-resolver"\nName = "cfgcli-r"\nSubsets = {\n  v1 = { Filter = "Service.Meta.version == v1" }\n}\nFailover = {\n  "*" = { Datacenters = ["dc2"] }\n}\n',
    );
    const w1 = await cli('config', 'write', resolver);
    expect(w1.code, w1.stderr).toBe(0);
    const router = file(
      'r-router.hcl',
      'Kind = "service-router"\nName = "cfgcli-r"\nRoutes = [\n  {\n    Match {\n      HTTP {\n        PathPrefix = "/v1"\n      }\n    }\n    Destination {\n      ServiceSubset = "v1"\n    }\n  },\n]\n',
    );
    const w2 = await cli('config', 'write', '--wait', 'all', router);
    expect(w2.stdout, w2.stderr).toMatch(/^Config entry written: service-router\/cfgcli-r\n {2}enforced in dc1 at /);
    const got = (await api(srv.url, 'GET', '/v1/config/service-router/cfgcli-r')).body;
    expect(got).toMatchObject({ Routes: [{ Match: { HTTP: { PathPrefix: '/v1' } }, Destination: { ServiceSubset: 'v1' } }] });
    const res = (await api(srv.url, 'GET', '/v1/config/service-resolver/cfgcli-r')).body;
    expect(res).toMatchObject({ Subsets: { v1: { Filter: 'Service.Meta.version == v1' } }, Failover: { '*': { Datacenters: ['dc2'] } } });
  });

  it('refuses a file that does not parse or names no Kind, and sends nothing', async () => {
    const bad = file('bad.hcl', 'Kind = "service-defaults"\nName = "cfgcli-bad"\nProtocol = "http\n');
    const r = await cli('config', 'write', bad);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toMatch(/^Error: .*bad\.hcl:3:\d+: not valid HCL: /);
    const noKind = file('nokind.json', JSON.stringify({ Name: 'cfgcli-bad' }));
    expect((await cli('config', 'write', noKind)).stderr).toContain('nokind.json: the config entry has no Kind');
    expect((await api(srv.url, 'GET', '/v1/config/service-defaults/cfgcli-bad')).status).toBe(404);
  });

  it('a resolver closing a redirect loop answers 400 naming the field and the loop, through the API and through config write, and is not stored', async () => {
    const a = await api(srv.url, 'PUT', '/v1/config', { Kind: 'service-resolver', Name: 'cfgcli-loop-a', Redirect: { Service: 'cfgcli-loop-b' } });
    expect([a.status, a.body]).toEqual([200, true]);
    const loop = { Kind: 'service-resolver', Name: 'cfgcli-loop-b', Redirect: { Service: 'cfgcli-loop-a' } };
    const r = await api(srv.url, 'PUT', '/v1/config', loop);
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({
      Error: 'ISTHMUS_ERR_INVALID',
      Violations: [
        {
          Field: 'Redirect.Service',
          Message: 'detected circular resolver redirect: [cfgcli-loop-a.default.dc1 -> cfgcli-loop-b.default.dc1 -> cfgcli-loop-a.default.dc1]',
        },
      ],
    });
    const w = await cli('config', 'write', file('loop.json', JSON.stringify(loop)));
    expect(w.code).toBe(1);
    expect(w.stderr).toContain('Redirect.Service: detected circular resolver redirect: [cfgcli-loop-a.default.dc1 -> cfgcli-loop-b.default.dc1');
    expect((await api(srv.url, 'GET', '/v1/config/service-resolver/cfgcli-loop-b')).status).toBe(404);
    // The chain that was there still compiles.
    const chain = await api(srv.url, 'GET', '/v1/discovery-chain/cfgcli-loop-a');
    expect([chain.status, chain.body.Chain.StartNode]).toEqual([200, 'resolver:cfgcli-loop-b.default.dc1']);
  });

  it('read and list name the missing flag as Consul does', async () => {
    const r = await cli('config', 'read', '-kind', 'service-defaults');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('Must specify the -name parameter');
    expect((await cli('config', 'list')).stderr).toContain('Must specify the -kind parameter');
  });
});
