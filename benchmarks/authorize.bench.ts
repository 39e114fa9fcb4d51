// authorize() decisions per second with 10,000 intentions (exact, wildcard sources, wildcard
// destinations, some L7), over a spread of source/destination pairs. Target: >= 2,000,000/s.
import { MemoryStore } from '../src/store/memory/index.js';
import { Intentions } from '../src/intentions/index.js';

const TD = 'bench.isthmus';
const store = new MemoryStore({ dc: 'dc1', advertiseAddr: 'bench' });
await store.start();
const intentions = new Intentions({ store, dc: 'dc1', defaultAllow: () => false, trustDomain: () => TD });
await intentions.start();
const actor = { accessorId: 'bench', description: 'bench', dc: 'dc1' };

const N = 10_000;
const services = 2_000;
let made = 0;
for (let i = 0; made < N && i < 10 * N; i++) {
  const src = `svc-${i % services}`;
  const dst = `svc-${((i % services) + 1 + Math.floor(i / services) * 37) % services}`;
  const kind = i % 20;
  try {
    if (kind === 0 && i % 200 === 0) await intentions.upsertExact('*', dst, { Action: 'deny' }, actor);
    else if (kind === 1 && i % 100 === 1) await intentions.upsertExact(src, '*', { Action: 'allow' }, actor);
    else if (kind === 2) await intentions.upsertExact(src, dst, { Permissions: [{ Action: 'allow', HTTP: { PathPrefix: '/api', Methods: ['GET'] } }] }, actor);
    else await intentions.upsertExact(src, dst, { Action: i % 3 ? 'allow' : 'deny' }, actor);
    made++;
  } catch {
    // The pair exists already; pick another.
  }
}
const pairs = Array.from({ length: 4096 }, (_, i) => ({
  uri: `spiffe://${TD}/ns/default/dc/dc1/svc/svc-${(i * 31) % services}`,
  dst: { name: `svc-${(i * 17 + 5) % services}` },
}));

function run(ms: number): number {
  let n = 0;
  let allowed = 0;
  const end = performance.now() + ms;
  while (performance.now() < end) {
    for (let k = 0; k < 1000; k++) {
      const p = pairs[n & 4095];
      if (intentions.authorize(p.uri, p.dst).allowed) allowed++;
      n++;
    }
  }
  if (allowed < 0) console.log(allowed);
  return n / (ms / 1000);
}

run(500); // warm-up (fills the decision cache, JIT)
const rates = [run(2000), run(2000), run(2000)].sort((a, b) => a - b);
console.log(
  JSON.stringify({ name: 'authorize', intentions: intentions.list().length, pairs: pairs.length, decisionsPerSec: Math.round(rates[1]), target: 2_000_000 }),
);
await intentions.stop();
await store.stop();
