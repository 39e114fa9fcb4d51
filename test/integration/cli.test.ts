// The built `isthmus` command against a real server: help, register, intentions, check exit codes, errors.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startServer, tempDir, type ServerProcess } from '../harness/server-process.js';

let srv: ServerProcess;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  srv = await startServer('dev', []);
  env = { ISTHMUS_HTTP_ADDR: srv.addr };
});
afterAll(async () => {
  await srv?.stop();
});

describe('isthmus CLI', () => {
  it('says at start where the store persists (a dev server: nowhere)', () => {
    expect(srv.output()).toContain('store: memory, persisted nowhere: in memory only, lost when it stops');
  });

  it('lists every command in --help', async () => {
    const r = await runCli(['--help']);
    expect(r.code).toBe(0);
    for (const cmd of [
      'dev',
      'server',
      'services register',
      'services deregister',
      'catalog services',
      'intention create',
      'intention delete',
      'intention get',
      'intention list',
      'intention check',
      'acl bootstrap',
      'acl token create',
    ]) {
      expect(r.stdout).toContain(`  ${cmd} `);
    }
  });

  it('registers by flags and by a definition file, and lists the catalog', async () => {
    const a = await runCli(['services', 'register', '--name', 'cart', '--port', '5000', '--tag', 'v2', '--meta', 'team=shop'], env);
    expect(a.stderr).toBe('');
    expect(a.stdout.trim()).toBe('Registered service: cart');
    const dir = tempDir();
    const file = join(dir, 'pay.json');
    writeFileSync(file, JSON.stringify({ service: { name: 'pay', port: 6000, tags: ['x'] } }));
    const b = await runCli(['services', 'register', file], env);
    expect(b.code).toBe(0);
    const list = await runCli(['catalog', 'services', '--tags'], env);
    expect(list.stdout).toMatch(/^cart\s+v2$/m);
    expect(list.stdout).toMatch(/^pay\s+x$/m);
    const d = await runCli(['services', 'deregister', '-id=cart'], env);
    expect(d.code).toBe(0);
    expect((await runCli(['catalog', 'services'], env)).stdout).not.toMatch(/^cart$/m);
  });

  it('creates, checks, lists and deletes intentions the Consul way', async () => {
    const c = await runCli(['intention', 'create', '-deny', 'cart', 'pay'], env);
    expect(c.stdout.trim()).toBe('Created: cart => pay (deny)');
    const again = await runCli(['intention', 'create', '--deny', 'cart', 'pay'], env);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('--replace');
    const denied = await runCli(['intention', 'check', 'cart', 'pay'], env);
    expect(denied.stdout.trim()).toBe('Denied');
    expect(denied.code).toBe(2);
    const replaced = await runCli(['intention', 'create', '--replace', 'cart', 'pay'], env);
    // It said "Created" for an update before (issue 21).
    expect(replaced.stdout.trim()).toBe('Updated: cart => pay (allow)');
    const allowed = await runCli(['intention', 'check', 'cart', 'pay'], env);
    expect([allowed.stdout.trim(), allowed.code]).toEqual(['Allowed', 0]);
    const list = await runCli(['intention', 'list'], env);
    expect(list.stdout).toMatch(/cart\s+allow\s+pay/);
    const get = await runCli(['intention', 'get', 'cart', 'pay'], env);
    expect(get.stdout).toMatch(/Action:\s+allow/);
    expect((await runCli(['intention', 'delete', 'cart', 'pay'], env)).stdout.trim()).toBe('Intention deleted.');
    const gone = await runCli(['intention', 'get', 'cart', 'pay'], env);
    expect(gone.code).toBe(1);
  });

  it('prints one clear line and exits non-zero on errors', async () => {
    const unknown = await runCli(['frobnicate'], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr.trim().split('\n')).toHaveLength(1);
    const badFlag = await runCli(['services', 'register', '--name', 'x', '--port', 'eighty'], env);
    expect(badFlag.code).toBe(1);
    expect(badFlag.stderr).toContain('--port');
    const invalid = await runCli(['services', 'register', '--name', 'bad/name'], env);
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toMatch(/^Error: .*Name/);
    const down = await runCli(['catalog', 'services'], { ISTHMUS_HTTP_ADDR: '127.0.0.1:1' });
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/cannot reach the Isthmus API at http:\/\/127\.0\.0\.1:1/);
    const badConfig = await runCli(['server', '--dc', 'Not_A_DC', '--http-addr', '127.0.0.1:0']);
    expect(badConfig.code).toBe(1);
    expect(badConfig.stderr).toContain('--dc');
  });
});
