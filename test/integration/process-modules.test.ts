// Issue 14: each process loads what it runs. `isthmus connect proxy` loads the sidecar, its client
// and its config, and nothing of the server (catalog, ACL, CA, federation, store, API, the
// data-plane server, flow stores); `isthmus gateway` likewise, without the sidecar; `isthmus --help`
// and a client command load only the CLI. Each runs the built CLI under a loader hook that writes
// down every module it loads (test/harness/module-trace.mjs).
import { readFileSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, freePort, ROOT, runCli, startCli, startServer, tempDir, type ServerProcess } from '../harness/server-process.js';

const DIST = join(ROOT, 'dist');
const HOOK = pathToFileURL(join(ROOT, 'test', 'harness', 'module-trace.mjs')).href;
const dir = tempDir('isthmus-modules-');
let traces = 0;

/** The environment that traces a process, and the project modules it loaded (paths under dist/), read once it is done. */
function traced(): { env: NodeJS.ProcessEnv; modules(): string[] } {
  const file = join(dir, `trace-${traces++}.txt`);
  return {
    env: { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${HOOK}`.trim(), MODULE_TRACE_FILE: file },
    modules: () =>
      readFileSync(file, 'utf8')
        .split('\n')
        .filter((u) => u.startsWith('file:'))
        .map((u) => relative(DIST, fileURLToPath(u)))
        .filter((p) => !p.startsWith('..')),
  };
}

const folder = (p: string) => p.split('/')[0];
/** What only the server runs. */
const SERVER = ['catalog', 'acl', 'ca', 'federation', 'store', 'api', 'region', 'dataplane', 'dataflow'];
const loadedFrom = (modules: string[], folders: string[]) => modules.filter((m) => folders.includes(folder(m)));

let srv: ServerProcess;
let grpcAddr = '';

beforeAll(async () => {
  srv = await startServer('dev', []);
  grpcAddr = /gRPC: (\S+)/.exec(srv.output())![1];
  await api(srv.url, 'PUT', '/v1/agent/service/register', { Name: 'web', Port: await freePort(), Connect: { SidecarService: { Port: await freePort() } } });
});

afterAll(async () => {
  await srv?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('what each process loads', () => {
  it('a sidecar (connect proxy) loads the sidecar and its client, none of the server', async () => {
    const t = traced();
    const proxy = await startCli(['connect', 'proxy', '--sidecar-for', 'web', '--grpc-addr', grpcAddr], /Sidecar for web/, t.env);
    await proxy.stop();
    const modules = t.modules();
    expect(modules).toContain('sidecar/sidecar.js');
    expect(modules).toContain('sidecar-process/start-sidecar-proxy.js');
    expect(modules).toContain('dataplane-client/client.js');
    expect(loadedFrom(modules, [...SERVER, 'gateway', 'gateway-process'])).toEqual([]);
    // Its own config loader, not the server's (which decodes join tokens with federation/).
    expect(modules.filter((m) => folder(m) === 'config').sort()).toEqual([
      'config/proxy-config.js',
      'config/settings.js',
      'config/sources.js',
      'config/values.js',
    ]);
  });

  it('a gateway loads the gateway and its client, none of the server and no sidecar', async () => {
    const t = traced();
    const gw = await startCli(['gateway', '--addr', '127.0.0.1:0', '--server', grpcAddr, '--id', 'modules-gw'], /"routes received"/, t.env);
    await gw.stop();
    const modules = t.modules();
    expect(modules).toContain('gateway/gateway.js');
    expect(modules).toContain('gateway-process/start-gateway.js');
    expect(modules).toContain('dataplane-client/gateway-client.js');
    expect(loadedFrom(modules, [...SERVER, 'sidecar', 'sidecar-process', 'intentions'])).toEqual([]);
    expect(modules).not.toContain('config/region-config.js');
  });

  it('help and a client command load only the CLI', async () => {
    for (const args of [['--help'], ['catalog', 'services', '--http-addr', srv.addr]]) {
      const t = traced();
      const r = await runCli(args, t.env);
      expect(r.code, r.stderr).toBe(0);
      const modules = t.modules();
      expect(modules).toContain('cli/main.js');
      expect(
        modules.filter((m) => !['cli', 'core'].includes(folder(m)) && m !== 'config/settings.js'),
        args.join(' '),
      ).toEqual([]);
    }
  });
});
