// The check runner follows the store (checks added and removed later), restarts the
// DeregisterCriticalServiceAfter clock on recovery, and leaves nothing running once stopped.
import { createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../store/index.js';
import { Catalog } from './catalog.js';
import { CheckRunner } from './check-runner.js';
import { CHECKS, checkSchema, serviceSchema } from './model.js';
import { normalizeKeys } from './normalize.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const reg = (x: unknown) => serviceSchema.parse(normalizeKeys(x));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const until = async (fn: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(20);
  }
};

async function setup() {
  const store = new MemoryStore({ dc: 'dc1', advertiseAddr: 'x' });
  await store.start();
  const catalog = new Catalog({ store, dc: 'dc1', nodeName: 'node-1', nodeAddress: '127.0.0.1' });
  await catalog.start();
  const runner = new CheckRunner({ store, catalog, nodeName: 'node-1' });
  await runner.start();
  cleanups.push(
    () => store.stop(),
    () => catalog.stop(),
    () => runner.stop(),
  );
  return { store, catalog, runner };
}

describe('CheckRunner', () => {
  it('runs checks registered after start, forgets removed ones, and ignores other nodes', async () => {
    const { catalog, runner } = await setup();
    expect(runner.size()).toBe(0);
    await catalog.registerService(reg({ name: 'a', checks: [{ ttl: '1m' }, { ttl: '1m' }] }));
    expect(runner.size()).toBe(2);
    await catalog.catalogRegister({
      Node: 'elsewhere',
      Address: '10.9.9.9',
      Service: { Service: 'ext' } as never,
      Check: { CheckID: 'ext', Status: 'passing', ServiceID: 'ext' } as never,
    });
    expect(runner.size()).toBe(2);
    await catalog.deregisterService('a');
    expect(runner.size()).toBe(0);
  });

  it('reports a TCP listener as passing, writing once while it stays up, and critical once it is gone', async () => {
    const srv: Server = createServer((s) => s.destroy());
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as AddressInfo).port;
    const { catalog, store } = await setup();
    await catalog.registerService(reg({ name: 'tcp', check: { tcp: `127.0.0.1:${port}`, interval: '100ms', timeout: '1s' } }));
    await until(() => catalog.checksOf('node-1', 'tcp')[0].Status === 'passing');
    const idx = store.tableIndex(CHECKS);
    await sleep(350);
    expect(store.tableIndex(CHECKS)).toBe(idx);
    await new Promise<void>((r) => srv.close(() => r()));
    await until(() => catalog.checksOf('node-1', 'tcp')[0].Status === 'critical');
  });

  it('restarts the DeregisterCriticalServiceAfter clock when the check recovers', async () => {
    const { catalog } = await setup();
    await catalog.registerService(reg({ name: 'flappy', check: { ttl: '1m', deregister_critical_service_after: '400ms' } }));
    await sleep(250);
    await catalog.updateTtl('service:flappy', 'passing', '');
    await sleep(50);
    await catalog.updateTtl('service:flappy', 'critical', '');
    // The first critical spell would have ended at 400 ms; the second one started at ~300 ms.
    await sleep(250);
    expect(catalog.agentService('flappy')).toBeDefined();
    await until(() => catalog.agentService('flappy') === undefined, 2000);
  });

  it('stops with nothing left running and writes nothing afterwards', async () => {
    const { catalog, store, runner } = await setup();
    await catalog.registerService(reg({ name: 'quiet', check: { ttl: '150ms' } }));
    await catalog.registerService(reg({ name: 'loud', check: { tcp: '127.0.0.1:1', interval: '100ms' } }));
    await runner.stop();
    expect(runner.size()).toBe(0);
    const idx = store.index();
    await sleep(300);
    expect(store.index()).toBe(idx);
    expect(catalog.checksOf('node-1', 'quiet')[0].Output).toBe('');
  });

  it("gives a nested sidecar without checks Consul's listening and aliasing checks, and only its own when it has some", async () => {
    const { catalog } = await setup();
    await catalog.registerService(reg({ name: 'api', id: 'api-1', port: 8080, connect: { sidecar_service: { port: 21500 } } }));
    const checks = catalog.checksOf('node-1', 'api-1-sidecar-proxy');
    expect(checks.map((c) => [c.CheckID, c.Name, c.Type])).toEqual([
      ['service:api-1-sidecar-proxy:1', 'Connect Sidecar Listening', 'tcp'],
      ['service:api-1-sidecar-proxy:2', 'Connect Sidecar Aliasing api-1', 'alias'],
    ]);
    expect(checks[0].Definition).toMatchObject({ TCP: '127.0.0.1:21500', Interval: 10_000 });
    expect(checks[1].Definition).toMatchObject({ AliasService: 'api-1' });
    // A sidecar with an address of its own is dialled there.
    await catalog.registerService(reg({ name: 'db', port: 5432, connect: { sidecar_service: { port: 21501, address: '127.0.0.2' } } }));
    expect(catalog.checksOf('node-1', 'db-sidecar-proxy')[0].Definition.TCP).toBe('127.0.0.2:21501');
    await catalog.registerService(
      reg({ name: 'api', id: 'api-1', port: 8080, connect: { sidecar_service: { port: 21500, check: { ttl: '1m', status: 'passing' } } } }),
    );
    expect(catalog.checksOf('node-1', 'api-1-sidecar-proxy').map((c) => c.CheckID)).toEqual(['service:api-1-sidecar-proxy']);
  });

  it("turns a sidecar critical the moment its app's check fails, and passing again when it recovers", async () => {
    const proxy: Server = createServer((s) => s.destroy());
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => proxy.close(() => r())));
    const port = (proxy.address() as AddressInfo).port;
    const { catalog } = await setup();
    await catalog.registerService(
      reg({ name: 'api', port: 8080, check: { ttl: '1m', status: 'passing', name: 'app' }, connect: { sidecar_service: { port } } }),
    );
    const alias = () => catalog.agentCheck('service:api-sidecar-proxy:2')!;
    const endpoints = () => catalog.connectInstances('api', { passingOnly: true }).map((e) => e.service.ID);
    expect(alias()).toMatchObject({ Status: 'passing', Output: 'All checks passing.' });
    await until(() => endpoints().length === 1);
    await catalog.updateTtl('service:api', 'critical', 'connection refused');
    // The alias follows the store's change, not a poll: the first read after the app's change sees it.
    await until(() => alias().Status === 'critical');
    expect(alias().Output).toBe('Aliased check "app" failing: connection refused');
    expect(endpoints()).toEqual([]);
    await catalog.updateTtl('service:api', 'warning', 'slow');
    await until(() => alias().Status === 'warning');
    expect(alias().Output).toBe('Aliased check "app" failing: slow');
    await catalog.updateTtl('service:api', 'passing', '');
    await until(() => endpoints().length === 1);
  });

  it("counts the node's own checks, and is critical when the aliased service is gone", async () => {
    const { catalog } = await setup();
    await catalog.registerService(reg({ name: 'api', port: 8080 }));
    await catalog.registerService(
      reg({ name: 'api-proxy', kind: 'connect-proxy', port: 21000, proxy: { destination_service_name: 'api' }, check: { alias_service: 'api' } }),
    );
    const alias = () => catalog.agentCheck('service:api-proxy')!;
    expect(alias()).toMatchObject({ Type: 'alias', Status: 'passing', Output: 'No checks found.' });
    // As Consul: only a nested sidecar gets automatic checks, not a proxy registered on its own.
    await catalog.registerService(reg({ name: 'bare-proxy', kind: 'connect-proxy', port: 21001, proxy: { destination_service_name: 'api' } }));
    expect(catalog.checksOf('node-1', 'bare-proxy')).toEqual([]);
    await catalog.registerCheck(checkSchema.parse({ Name: 'disk', TTL: '1m', Status: 'critical' }));
    await until(() => alias().Status === 'critical');
    expect(alias().Output).toBe('Aliased check "disk" failing: ');
    await catalog.deregisterCheck('disk');
    await until(() => alias().Status === 'passing');
    await catalog.deregisterService('api');
    await until(() => alias().Status === 'critical');
    expect(alias().Output).toBe('Service api could not be found on node node-1');
  });

  it('aliases another node by AliasNode, and refuses an alias that is also another kind of check', async () => {
    const { catalog } = await setup();
    await catalog.catalogRegister({ Node: 'db-host', Address: '10.0.0.9', Check: { CheckID: 'serfHealth', Name: 'Serf', Status: 'passing' } as never });
    const rec = await catalog.registerCheck(checkSchema.parse({ Name: 'db-host up', AliasNode: 'db-host' }));
    expect(rec).toMatchObject({ Type: 'alias', Status: 'passing', Output: 'All checks passing.' });
    await catalog.catalogRegister({ Node: 'db-host', Address: '10.0.0.9', Check: { CheckID: 'serfHealth', Name: 'Serf', Status: 'critical' } as never });
    await until(() => catalog.agentCheck('db-host up')!.Status === 'critical');
    // An alias in a catalog registration starts from its target's state too.
    await catalog.catalogRegister({
      Node: 'db-host',
      Address: '10.0.0.9',
      Service: { Service: 'db' } as never,
      Checks: [{ CheckID: 'db-alias', ServiceID: 'db', AliasService: 'db' } as never],
    });
    expect(catalog.nodeChecks('db-host').find((c) => c.CheckID === 'db-alias')).toMatchObject({
      Type: 'alias',
      Status: 'critical',
      Output: 'Aliased check "Serf" failing: ',
    });
    await catalog.catalogDeregister({ Node: 'db-host' });
    await until(() => catalog.agentCheck('db-host up')!.Output === 'Node db-host could not be found');
    const bad = checkSchema.safeParse({ Name: 'x', AliasService: 'api', TTL: '10s' });
    expect(bad.success).toBe(false);
    expect(bad.error!.issues[0].message).toBe('exactly one of TTL, HTTP, TCP, AliasService/AliasNode must be set');
  });

  it('retries a check that has not passed yet sooner than its interval, so a sidecar started after its registration is seen', async () => {
    const { catalog } = await setup();
    const port = await new Promise<number>((resolve) => {
      const probe = createServer();
      probe.listen(0, '127.0.0.1', () => {
        const p = (probe.address() as AddressInfo).port;
        probe.close(() => resolve(p));
      });
    });
    await catalog.registerService(reg({ name: 'api', port: 8080, connect: { sidecar_service: { port } } }));
    const listening = () => catalog.agentCheck('service:api-sidecar-proxy:1')!;
    await until(() => listening().Output !== '');
    expect(listening().Status).toBe('critical');
    const proxy: Server = createServer((s) => s.destroy());
    await new Promise<void>((r) => proxy.listen(port, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => proxy.close(() => r())));
    // Well inside the check's 10 s interval.
    await until(() => listening().Status === 'passing', 5000);
    expect(listening().Output).toBe(`TCP connect 127.0.0.1:${port}: Success`);
  });

  it("runs an instance's checks at once when asked to recheck it, rather than at its next interval", async () => {
    const proxy: Server = createServer((s) => s.destroy());
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const port = (proxy.address() as AddressInfo).port;
    const { catalog } = await setup();
    await catalog.registerService(reg({ name: 'api', port: 8080, connect: { sidecar_service: { port } } }));
    const listening = () => catalog.agentCheck('service:api-sidecar-proxy:1')!;
    await until(() => listening().Status === 'passing');
    await new Promise<void>((r) => proxy.close(() => r()));
    catalog.recheck('api-sidecar-proxy');
    catalog.recheck('api-sidecar-proxy');
    // Its interval is 10 s: only the recheck can have run it this soon.
    await until(() => listening().Status === 'critical', 3000);
    expect(listening().Output).toBe(`TCP connect 127.0.0.1:${port}: ECONNREFUSED`);
    catalog.recheck('no-such-service');
  });
});
