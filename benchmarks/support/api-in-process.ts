// The API's own cost without sockets: app.fetch() of the full Isthmus app and of a bare hono handler
// for POST /v1/agent/connect/authorize, given a minimal request object (so building a Fetch Request
// does not drown the difference). Prints ns per request (best of 5 alternating runs).
// Run: node --import tsx benchmarks/support/api-in-process.ts
import { Registry } from 'prom-client';
import { bareAuthorizeApp, createApi, silentLogger, startAuthorizeRegion } from './authorize-region.js';

const { region, config } = await startAuthorizeRegion({ processMetrics: false });
// The same parts as the region's own app, on a registry of its own (metric names are per registry).
const full = createApi({
  store: region.store,
  catalog: region.catalog,
  intentions: region.intentions,
  configEntries: region.configEntries,
  acl: region.acl,
  ca: region.ca,
  leaves: region.leaves,
  flows: region.flows,
  registry: new Registry(),
  logger: silentLogger,
  dc: config.dc,
  primaryDc: config.primaryDc,
  nodeName: config.nodeName,
  version: 'bench',
  aclDefaultPolicy: config.aclDefaultPolicy,
  trustDomain: () => region.trustDomain,
  datacenters: () => [config.dc],
  federation: region.federation,
});
const bare = bareAuthorizeApp();

const body = JSON.stringify({ Target: 'api', ClientCertURI: `spiffe://${region.trustDomain}/ns/default/dc/dc1/svc/web`, ClientCertSerial: '01' });
const nodeHeaders = { host: '127.0.0.1:8500', 'content-type': 'application/json', 'content-length': String(body.length) };
const headers = new Headers(nodeHeaders);
// What the handlers read of @hono/node-server's request (method, url, headers, body) and of its env.
const request = () =>
  ({
    method: 'POST',
    url: 'http://127.0.0.1:8500/v1/agent/connect/authorize',
    headers,
    text: async () => body,
    json: async () => JSON.parse(body),
  }) as unknown as Request;
const env = { incoming: { headers: nodeHeaders } };

async function run(app: { fetch: (req: Request, env: unknown) => Response | Promise<Response> }, n: number): Promise<number> {
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const res = await app.fetch(request(), env);
    if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`);
  }
  return Number(process.hrtime.bigint() - t) / n;
}

for (const app of [bare, full]) await run(app, 50_000);
const best = { bare: Infinity, full: Infinity };
for (let i = 0; i < 5; i++) {
  best.bare = Math.min(best.bare, await run(bare, 200_000));
  best.full = Math.min(best.full, await run(full, 200_000));
}
console.log(
  JSON.stringify({ name: 'api-in-process', bareNs: Math.round(best.bare), fullNs: Math.round(best.full), diffNs: Math.round(best.full - best.bare) }),
);
await region.stop();
process.exit(0);
