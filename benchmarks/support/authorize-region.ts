// What the authorize benchmarks compare: a dev region holding 1,001 intentions for `api` (so the
// decision is not trivially the default) and a bare hono handler for the same route. The region is
// the build in dist/ (what `isthmus server` runs), not the sources through tsx: tsx's esbuild names
// every function it creates (`__name`, a defineProperty per closure made), a cost the build does
// not have and the bare handler, made once, does not pay.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Hono } from 'hono';
import type * as ApiModule from '../../src/api/index.js';
import type * as ConfigModule from '../../src/config/index.js';
import type * as RegionModule from '../../src/region/index.js';
import type { Region } from '../../src/region/index.js';
import type * as TelemetryModule from '../../src/telemetry/index.js';

const dist = (path: string) => new URL(`../../dist/${path}`, import.meta.url);
if (!existsSync(fileURLToPath(dist('region/index.js')))) throw new Error('dist/ is missing: run `npm run build` first');
const { loadRegionConfig } = (await import(dist('config/index.js').href)) as typeof ConfigModule;
const { startRegion } = (await import(dist('region/index.js').href)) as typeof RegionModule;
export const { silentLogger } = (await import(dist('telemetry/index.js').href)) as typeof TelemetryModule;
export const { createApi } = (await import(dist('api/index.js').href)) as typeof ApiModule;

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
