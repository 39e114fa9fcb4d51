// The two servers the API benchmark compares, in one child process: a full Isthmus region (dev mode)
// and a bare hono handler for the same route. Prints their addresses as one JSON line.
import { Hono } from 'hono';
import { serve } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import { loadRegionConfig } from '../../src/config/index.js';
import { startRegion } from '../../src/region/index.js';
import { silentLogger } from '../../src/telemetry/index.js';

const config = loadRegionConfig({ mode: 'dev', env: {}, flags: { 'http-addr': '127.0.0.1:0', 'grpc-addr': '127.0.0.1:0' } });
const region = await startRegion(config, { logger: silentLogger });
// 1,000 intentions so the decision is not trivially the default.
for (let i = 0; i < 1000; i++) {
  await region.intentions.upsertExact(`svc-${i}`, 'api', { Action: i % 2 ? 'allow' : 'deny' }, { accessorId: 'bench', description: 'bench', dc: 'dc1' });
}
await region.intentions.upsertExact('web', 'api', { Action: 'allow' }, { accessorId: 'bench', description: 'bench', dc: 'dc1' });

const bare = new Hono();
bare.post('/v1/agent/connect/authorize', async (c) => {
  const body = await c.req.json();
  return c.json({ Authorized: typeof body.Target === 'string', Reason: 'bare handler' });
});
const server = serve({ fetch: bare.fetch, hostname: '127.0.0.1', port: 0 }, (info: AddressInfo) => {
  process.stdout.write(JSON.stringify({ isthmus: region.httpAddress, bare: `127.0.0.1:${info.port}`, trustDomain: region.trustDomain }) + '\n');
});
process.on('SIGTERM', async () => {
  server.close();
  await region.stop();
  process.exit(0);
});
