// Registers 10,000 services x 5 instances (each with a TTL check) through the Catalog into a
// MemoryStore that writes its log to a temp dir. Targets: < 10 s, RSS < 300 MB.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryStore } from '../src/store/memory/index.js';
import { Catalog, serviceSchema } from '../src/catalog/index.js';

const dir = mkdtempSync(join(tmpdir(), 'isthmus-bench-'));
const store = new MemoryStore({ dc: 'dc1', advertiseAddr: 'bench', dataDir: dir });
await store.start();
const catalog = new Catalog({ store, dc: 'dc1', nodeName: 'node-1', nodeAddress: '127.0.0.1' });
await catalog.start();

const SERVICES = Number(process.env.BENCH_SERVICES ?? 10_000);
const INSTANCES = 5;
const rssBefore = process.memoryUsage().rss;
const t0 = performance.now();
for (let s = 0; s < SERVICES; s++) {
  for (let i = 0; i < INSTANCES; i++) {
    await catalog.registerService(
      serviceSchema.parse({
        Name: `svc-${s}`,
        ID: `svc-${s}-${i}`,
        Port: 20000 + i,
        Address: `10.0.${s % 250}.${i + 1}`,
        Tags: ['v1'],
        Meta: { team: `t${s % 50}` },
        Check: { TTL: '30s' },
      }),
    );
  }
}
const seconds = (performance.now() - t0) / 1000;
(globalThis as { gc?: () => void }).gc?.();
const rss = process.memoryUsage().rss;
const sample = catalog.instances('svc-42');
console.log(
  JSON.stringify({
    name: 'register',
    instances: SERVICES * INSTANCES,
    seconds: +seconds.toFixed(2),
    perSecond: Math.round((SERVICES * INSTANCES) / seconds),
    rssMB: Math.round(rss / 2 ** 20),
    rssGrowthMB: Math.round((rss - rssBefore) / 2 ** 20),
    check: sample.length === INSTANCES,
    targets: { seconds: 10, rssMB: 300 },
  }),
);
await catalog.stop();
await store.stop();
rmSync(dir, { recursive: true, force: true });
