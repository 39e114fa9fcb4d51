// The check runner follows the store (checks added and removed later), restarts the
// DeregisterCriticalServiceAfter clock on recovery, and leaves nothing running once stopped.
import { createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../store/index.js';
import { Catalog } from './catalog.js';
import { CheckRunner } from './check-runner.js';
import { CHECKS, serviceSchema } from './model.js';
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
});
