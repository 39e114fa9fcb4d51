// Federation figures, three regions in one process on 127.0.1.1 / 127.0.2.1 / 127.0.3.1:
// - write-to-enforcement: an intention written through the primary's HTTP API until both
//   secondaries hold it in their compiled intentions (p50/p99 over BENCH_WRITES writes);
// - exported catalog: BENCH_EXPORT services registered in dc3 before it joins, then the time until
//   the primary holds all of them, and the bytes that crossed the WAN link for it (TLS included).
// Target: write-to-enforcement p99 < 250 ms across three DCs.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadRegionConfig } from '../src/config/index.js';
import { startRegion, type Region } from '../src/region/index.js';
import { serviceSchema } from '../src/catalog/index.js';
import { WanLink } from '../test/harness/wan-link.js';

const WRITES = Number(process.env.BENCH_WRITES ?? 300);
const EXPORT = Number(process.env.BENCH_EXPORT ?? 10_000);

async function region(dc: string, host: string, extra: Record<string, string> = {}, dataDir?: string): Promise<Region> {
  const config = loadRegionConfig({
    mode: 'server',
    flags: {
      dc,
      'http-addr': `${host}:0`,
      'grpc-addr': `${host}:0`,
      'grpc-tls-addr': `${host}:0`,
      'acl-default-policy': 'allow',
      'log-level': 'error',
      ...extra,
    },
    env: {},
  });
  return startRegion({ ...config, dataDir }, { processMetrics: false });
}

async function token(primary: Region, dc: string, via?: string): Promise<string> {
  const r = await fetch(`http://${primary.httpAddress}/v1/federation/token`, { method: 'POST', body: JSON.stringify({ Datacenter: dc }) });
  const t = ((await r.json()) as { Token: string }).Token;
  if (!via) return t;
  const body = JSON.parse(Buffer.from(t.slice('isthmus-join.'.length), 'base64url').toString());
  body.servers = [via];
  body.gateways = [];
  return 'isthmus-join.' + Buffer.from(JSON.stringify(body)).toString('base64url');
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

const dirs = [
  mkdtempSync(join(tmpdir(), 'isthmus-bench-dc1-')),
  mkdtempSync(join(tmpdir(), 'isthmus-bench-dc2-')),
  mkdtempSync(join(tmpdir(), 'isthmus-bench-dc3-')),
];
const dc1 = await region('dc1', '127.0.1.1', {}, dirs[0]);
const dc2 = await region('dc2', '127.0.2.1', { 'join-token': await token(dc1, 'dc2') }, dirs[1]);

// dc3 has its catalog before it joins, and reaches the primary through a link that counts bytes.
const [fedHost, fedPort] = dc1.federation.address.split(':');
const link = new WanLink({ listen: { host: '127.0.3.1' }, target: { host: fedHost, port: Number(fedPort) } });
await link.start();
const dc3Token = await token(dc1, 'dc3', link.address);
const staging = await region('dc3', '127.0.3.1', { 'join-token': dc3Token }, dirs[2]);
for (let i = 0; i < EXPORT; i++) {
  await staging.catalog.registerService(serviceSchema.parse({ Name: `svc-${i}`, ID: `svc-${i}`, Port: 8080, Tags: ['v1'], Meta: { team: `t${i % 50}` } }));
}
await staging.stop();
const before = link.stats();
const exportStart = performance.now();
const dc3 = await region('dc3', '127.0.3.1', {}, dirs[2]);
let exportMs = 0;
for (;;) {
  if (dc1.federation.exportedServices('dc3').length >= EXPORT) {
    exportMs = performance.now() - exportStart;
    break;
  }
  if (performance.now() - exportStart > 120_000) throw new Error('export did not converge in 120 s');
  await new Promise((r) => setTimeout(r, 5));
}
await new Promise((r) => setTimeout(r, 500));
const after = link.stats();
const exportBytes = after.bytesToClient + after.bytesToTarget - before.bytesToClient - before.bytesToTarget;

// Write-to-enforcement.
const waitFor = (r: Region, src: string) =>
  new Promise<void>((resolve) => {
    const has = () => r.intentions.list().some((i) => i.SourceName === src);
    if (has()) return resolve();
    const off = r.intentions.onChange(() => {
      if (has()) {
        off();
        resolve();
      }
    });
  });
while (dc1.federation.status().Peers.filter((p) => p.State === 'up').length < 2) await new Promise((r) => setTimeout(r, 20));
const lags: number[] = [];
for (let i = 0; i < WRITES; i++) {
  const src = `bench-src-${i}`;
  const t0 = performance.now();
  const seen = Promise.all([waitFor(dc2, src), waitFor(dc3, src)]);
  const res = await fetch(`http://${dc1.httpAddress}/v1/connect/intentions/exact?source=${src}&destination=db`, {
    method: 'PUT',
    body: JSON.stringify({ Action: i % 2 ? 'allow' : 'deny' }),
  });
  if (!res.ok) throw new Error(`write failed: ${res.status}`);
  await seen;
  lags.push(performance.now() - t0);
}
lags.sort((a, b) => a - b);

console.log(
  JSON.stringify({
    name: 'replication',
    writes: WRITES,
    writeToEnforcementMs: { p50: +pct(lags, 50).toFixed(1), p99: +pct(lags, 99).toFixed(1), max: +lags[lags.length - 1].toFixed(1) },
    exportedServices: EXPORT,
    exportConvergeMs: Math.round(exportMs),
    exportWireBytes: exportBytes,
    exportWireBytesPerService: +(exportBytes / EXPORT).toFixed(1),
    targets: { writeToEnforcementP99Ms: 250 },
  }),
);

await dc3.stop();
await dc2.stop();
await dc1.stop();
await link.stop();
for (const d of dirs) rmSync(d, { recursive: true, force: true });
