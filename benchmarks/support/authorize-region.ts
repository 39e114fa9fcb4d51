// What the authorize benchmarks compare: a dev region holding 1,001 intentions for `api` (so the
// decision is not trivially the default) and a bare hono handler for the same route.
import { Hono } from 'hono';
import { loadRegionConfig } from '../../src/config/index.js';
import { startRegion, type Region } from '../../src/region/index.js';
import { silentLogger } from '../../src/telemetry/index.js';

export async function startAuthorizeRegion(opts: { processMetrics?: boolean } = {}): Promise<{ region: Region; config: ReturnType<typeof loadRegionConfig> }> {
  const config = loadRegionConfig({ mode: 'dev', env: {}, flags: { 'http-addr': '127.0.0.1:0', 'grpc-addr': '127.0.0.1:0' } });
  const region = await startRegion(config, { logger: silentLogger, ...opts });
  const who = { accessorId: 'bench', description: 'bench', dc: 'dc1' };
  for (let i = 0; i < 1000; i++) await region.intentions.upsertExact(`svc-${i}`, 'api', { Action: i % 2 ? 'allow' : 'deny' }, who);
  await region.intentions.upsertExact('web', 'api', { Action: 'allow' }, who);
  return { region, config };
}

/** The same route with nothing but hono: read the JSON body, answer JSON. */
export function bareAuthorizeApp(): Hono {
  const bare = new Hono();
  bare.post('/v1/agent/connect/authorize', async (c) => {
    const body = await c.req.json();
    return c.json({ Authorized: typeof body.Target === 'string', Reason: 'bare handler' });
  });
  return bare;
}
