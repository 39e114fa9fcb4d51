import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../store/index.js';
import { Catalog } from './catalog.js';
import { CheckRunner } from './check-runner.js';
import { parseServiceDefinition } from './definition.js';
import { serviceSchema, CHECKS } from './model.js';
import { normalizeKeys } from './normalize.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function setup(withRunner = false) {
  const store = new MemoryStore({ dc: 'dc1', advertiseAddr: 'x' });
  await store.start();
  const catalog = new Catalog({ store, dc: 'dc1', nodeName: 'node-1', nodeAddress: '127.0.0.1' });
  await catalog.start();
  cleanups.push(
    () => store.stop(),
    () => catalog.stop(),
  );
  let runner: CheckRunner | undefined;
  if (withRunner) {
    runner = new CheckRunner({ store, catalog, nodeName: 'node-1' });
    await runner.start();
    cleanups.push(() => runner!.stop());
  }
  return { store, catalog, runner };
}

const reg = (x: unknown) => serviceSchema.parse(normalizeKeys(x));
const until = async (fn: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('Catalog', () => {
  it('registers a service with a nested sidecar in one commit, with a port from 21000', async () => {
    const { catalog, store } = await setup();
    const before = store.index();
    await catalog.registerService(
      reg({ name: 'web', port: 8080, connect: { sidecar_service: { proxy: { upstreams: [{ destination_name: 'api', local_bind_port: 9191 }] } } } }),
    );
    expect(store.index()).toBe(before + 1);
    const sc = catalog.agentService('web-sidecar-proxy')!;
    expect(sc).toMatchObject({
      Kind: 'connect-proxy',
      Port: 21000,
      Service: 'web-sidecar-proxy',
      Proxy: { DestinationServiceName: 'web', DestinationServiceID: 'web', LocalServicePort: 8080 },
    });
    expect(sc.Proxy!.Upstreams![0]).toMatchObject({ DestinationName: 'api', LocalBindPort: 9191 });
    expect(catalog.connectInstances('web').map((e) => e.service.ID)).toEqual(['web-sidecar-proxy']);
    await catalog.registerService(reg({ name: 'api', port: 1, connect: { sidecar_service: {} } }));
    expect(catalog.agentService('api-sidecar-proxy')!.Port).toBe(21001);
    await catalog.deregisterService('web');
    expect(catalog.agentService('web-sidecar-proxy')).toBeUndefined();
  });

  it("gives a sidecar its service's Tags and Meta unless it has its own, as Consul does (issue 21)", async () => {
    const { catalog } = await setup();
    await catalog.registerService(reg({ name: 'web', port: 8080, tags: ['v2', 'canary'], meta: { version: '2' }, connect: { sidecar_service: {} } }));
    expect(catalog.agentService('web-sidecar-proxy')).toMatchObject({ Tags: ['v2', 'canary'], Meta: { version: '2' } });
    expect(catalog.connectInstances('web')[0].service).toMatchObject({ Tags: ['v2', 'canary'], Meta: { version: '2' } });
    await catalog.registerService(reg({ name: 'api', port: 1, tags: ['a'], meta: { team: 'x' }, connect: { sidecar_service: { tags: ['own'], meta: {} } } }));
    expect(catalog.agentService('api-sidecar-proxy')).toMatchObject({ Tags: ['own'], Meta: {} });
  });

  it('frees a sidecar port when its service goes, and skips ports other proxies hold', async () => {
    const { catalog } = await setup();
    await catalog.registerService(reg({ name: 'a', port: 1, connect: { sidecar_service: {} } }));
    await catalog.registerService(reg({ name: 'gw', kind: 'connect-proxy', port: 21001, proxy: { destination_service_name: 'x' } }));
    await catalog.registerService(reg({ name: 'b', port: 2, connect: { sidecar_service: {} } }));
    expect(catalog.agentService('b-sidecar-proxy')!.Port).toBe(21002);
    await catalog.deregisterService('a');
    await catalog.registerService(reg({ name: 'c', port: 3, connect: { sidecar_service: {} } }));
    expect(catalog.agentService('c-sidecar-proxy')!.Port).toBe(21000);
    // Re-registering keeps the port the sidecar already has.
    await catalog.registerService(reg({ name: 'b', port: 2, tags: ['new'], connect: { sidecar_service: {} } }));
    expect(catalog.agentService('b-sidecar-proxy')!.Port).toBe(21002);
    expect(catalog.connectInstances('x').map((e) => e.service.ID)).toEqual(['gw']);
  });

  it('names every invalid field with its path', () => {
    const r = serviceSchema.safeParse(
      normalizeKeys({ name: 'a/b', port: 70000, check: { http: 'ftp://x', interval: 'soon' }, proxy: { upstreams: [{ destination_name: 'db' }] } }),
    );
    expect(r.success).toBe(false);
    const fields = r.error!.issues.map((i) => i.path.join('.'));
    expect(fields).toEqual(expect.arrayContaining(['Name', 'Port', 'Check.HTTP', 'Check.Interval', 'Proxy.Upstreams.0.LocalBindPort']));
    expect(() => parseServiceDefinition({ service: { name: 'ok', port: 'x' } })).toThrow(/service\.Port/);
    try {
      parseServiceDefinition({ services: [{ name: 'ok' }, { name: 'bad', proxy: { upstreams: [{ destination_name: 'db', local_bind_port: -1 }] } }] });
      expect.unreachable();
    } catch (err) {
      expect((err as { violations: { Field: string }[] }).violations.map((v) => v.Field)).toEqual(['services[1].Proxy.Upstreams[0].LocalBindPort']);
    }
    expect(parseServiceDefinition({ Name: 'bare', Port: 1 })[0]).toMatchObject({ Name: 'bare', Port: 1 });
  });

  it('aggregates health: critical beats warning beats passing, and ?passing filters', async () => {
    const { catalog } = await setup();
    await catalog.registerService(
      reg({
        name: 'db',
        id: 'db-1',
        checks: [
          { ttl: '1m', status: 'passing' },
          { ttl: '1m', status: 'warning' },
        ],
      }),
    );
    await catalog.registerService(reg({ name: 'db', id: 'db-2', check: { ttl: '1m', status: 'passing' } }));
    expect(catalog.instances('db').map((e) => e.checks.map((c) => c.CheckID).sort())).toEqual([['service:db-1:1', 'service:db-1:2'], ['service:db-2']]);
    expect(catalog.instances('db', { passingOnly: true }).map((e) => e.service.ID)).toEqual(['db-2']);
    await catalog.updateTtl('service:db-2', 'critical', 'down');
    expect(catalog.instances('db', { passingOnly: true })).toHaveLength(0);
  });

  it('expires a TTL check to critical, and writes nothing for unchanged updates', async () => {
    const { catalog, store } = await setup(true);
    await catalog.registerService(reg({ name: 'cache', check: { ttl: '300ms' } }));
    await catalog.updateTtl('service:cache', 'passing', 'ok');
    const idx = store.index();
    for (let i = 0; i < 5; i++) await catalog.updateTtl('service:cache', 'passing', 'ok');
    expect(store.index()).toBe(idx);
    await until(() => catalog.checksOf('node-1', 'cache')[0].Status === 'critical');
    expect(catalog.checksOf('node-1', 'cache')[0].Output).toMatch(/TTL expired/);
  });

  it('runs HTTP checks against a real server: passing, then critical when it fails', async () => {
    let status = 200;
    const srv: Server = createServer((_req, res) => {
      res.statusCode = status;
      res.end('hi');
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => srv.close(() => r())));
    const port = (srv.address() as AddressInfo).port;
    const { catalog, store } = await setup(true);
    await catalog.registerService(reg({ name: 'site', check: { http: `http://127.0.0.1:${port}/health`, interval: '100ms' } }));
    await until(() => catalog.checksOf('node-1', 'site')[0].Status === 'passing');
    const idx = store.tableIndex(CHECKS);
    await new Promise((r) => setTimeout(r, 350));
    expect(store.tableIndex(CHECKS)).toBe(idx);
    status = 500;
    await until(() => catalog.checksOf('node-1', 'site')[0].Status === 'critical');
    status = 429;
    await until(() => catalog.checksOf('node-1', 'site')[0].Status === 'warning');
  });

  it('runs TCP checks and deregisters a service critical longer than DeregisterCriticalServiceAfter', async () => {
    const { catalog } = await setup(true);
    await catalog.registerService(
      reg({ name: 'gone', check: { tcp: '127.0.0.1:1', interval: '100ms', timeout: '200ms', deregister_critical_service_after: '300ms' } }),
    );
    await until(() => /TCP connect 127\.0\.0\.1:1: ECONNREFUSED/.test(catalog.checksOf('node-1', 'gone')[0]?.Output ?? ''));
    await until(() => catalog.agentService('gone') === undefined);
  });

  it('offers its index, waits and changes by part: a services watch does not move on a check update', async () => {
    const { catalog } = await setup();
    await catalog.registerService(reg({ name: 'web', port: 80, check: { ttl: '30s' } }));
    const services = catalog.watch('services');
    const checks = catalog.watch('checks');
    const [s0, k0, all0] = [services.index(), checks.index(), catalog.index()];
    expect(all0).toBe(Math.max(s0, k0, catalog.watch('nodes').index()));
    let changes = 0;
    const off = catalog.onChange(() => void changes++);
    let woke = false;
    const waiting = services.waitForChange(s0, 5000).then((i) => ((woke = true), i));
    await catalog.updateTtl('service:web', 'passing', 'ok');
    expect([services.index(), checks.index() > k0, catalog.index() > all0, changes]).toEqual([s0, true, true, 1]);
    await new Promise((r) => setTimeout(r, 20));
    expect(woke).toBe(false);
    await catalog.registerService(reg({ name: 'web', port: 81, check: { ttl: '30s' } }));
    expect(await waiting).toBe(services.index());
    expect(services.index()).toBeGreaterThan(s0);
    off();
    await catalog.updateTtl('service:web', 'critical', 'down');
    expect(changes).toBe(2);
    expect(catalog.nodeService('node-1', 'web')?.Port).toBe(81);
    expect(catalog.nodeServices('node-1').map((s) => s.ID)).toEqual(['web']);
    expect(catalog.nodeServices('node-2')).toEqual([]);
  });
});
