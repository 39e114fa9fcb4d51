// The embedded store keeps every acknowledged write across kill -9 of the server process.
import { afterAll, describe, expect, it } from 'vitest';
import { api, startServer, tempDir, type ServerProcess } from '../harness/server-process.js';

const running: ServerProcess[] = [];
afterAll(async () => {
  for (const s of running) await s.stop();
});

describe('memory store durability', () => {
  it('keeps acknowledged registrations and intentions after kill -9', async () => {
    const dir = tempDir();
    const args = ['--data-dir', dir, '--acl-default-policy', 'allow'];
    const first = await startServer('server', args);
    running.push(first);
    const acked: string[] = [];
    // Writes in flight while the process dies: only the acknowledged ones are promised.
    let stop = false;
    const writer = (async () => {
      for (let i = 0; !stop && i < 2000; i++) {
        try {
          const r = await api(first.url, 'PUT', '/v1/agent/service/register', { Name: `svc-${i}`, Port: 1000 + (i % 1000) });
          if (r.status === 200) acked.push(`svc-${i}`);
        } catch {
          break;
        }
      }
    })();
    await new Promise((r) => setTimeout(r, 800));
    await first.kill9();
    stop = true;
    await writer;
    expect(acked.length).toBeGreaterThan(10);

    const second = await startServer('server', args);
    running.push(second);
    const services = (await api(second.url, 'GET', '/v1/catalog/services')).body as Record<string, string[]>;
    const missing = acked.filter((n) => !(n in services));
    expect(missing).toEqual([]);
    const td1 = (await api(second.url, 'GET', '/v1/connect/ca/roots')).body.TrustDomain;
    await second.stop();
    const third = await startServer('server', args);
    running.push(third);
    expect((await api(third.url, 'GET', '/v1/connect/ca/roots')).body.TrustDomain).toBe(td1);
  });
});
