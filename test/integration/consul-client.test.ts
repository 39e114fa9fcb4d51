// A Consul HTTP client library (node-consul) pointed at `isthmus dev` works for catalog, health,
// agent services, checks and blocking queries (watch).
import Consul from 'consul';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type ServerProcess } from '../harness/server-process.js';

let srv: ServerProcess;
let consul: InstanceType<typeof Consul>;

beforeAll(async () => {
  srv = await startServer('dev', []);
  const [host, port] = srv.addr.split(':');
  consul = new Consul({ host, port: Number(port) });
});
afterAll(async () => {
  await srv?.stop();
});

describe('node-consul against isthmus', () => {
  it('registers through the agent and reads catalog, health and agent services', async () => {
    await consul.agent.service.register({ name: 'billing', id: 'billing-1', port: 7000, tags: ['blue'], check: { ttl: '60s' } } as any);
    const services = await consul.catalog.service.list();
    expect(services).toMatchObject({ billing: ['blue'] });
    const nodes = await consul.catalog.service.nodes('billing');
    expect(nodes[0]).toMatchObject({ ServiceID: 'billing-1', ServicePort: 7000 });
    const agentServices = await consul.agent.service.list();
    expect(agentServices['billing-1']).toMatchObject({ Service: 'billing', Port: 7000 });

    expect(await consul.health.service({ service: 'billing', passing: true })).toHaveLength(0);
    await consul.agent.check.pass({ id: 'service:billing-1', note: 'fine' } as any);
    const passing = await consul.health.service({ service: 'billing', passing: true });
    expect(passing).toHaveLength(1);
    const checks = await consul.health.checks('billing');
    expect(checks.find((c: any) => c.CheckID === 'service:billing-1')).toMatchObject({ Status: 'passing', Output: 'fine' });
    await consul.agent.check.fail({ id: 'service:billing-1', note: 'down' } as any);
    expect(await consul.health.service({ service: 'billing', passing: true })).toHaveLength(0);
  });

  it('sees a change through a blocking watch', async () => {
    const watch = consul.watch({ method: consul.health.service, options: { service: 'orders', wait: '5s' } as any, backoffFactor: 100 } as any);
    const seen: number[] = [];
    const gotTwo = new Promise<void>((resolve, reject) => {
      watch.on('change', (data: any[]) => {
        seen.push(data.length);
        if (data.length === 2) resolve();
      });
      watch.on('error', reject);
    });
    await new Promise((r) => setTimeout(r, 300));
    await consul.agent.service.register({ name: 'orders', id: 'orders-1', port: 1 } as any);
    await consul.agent.service.register({ name: 'orders', id: 'orders-2', port: 2 } as any);
    await gotTwo;
    watch.end();
    expect(seen[0]).toBe(0);
    expect(seen.at(-1)).toBe(2);
  });
});
