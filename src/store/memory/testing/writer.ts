// Test child: commits writes as fast as it can, printing each acknowledged number; it is killed mid-stream.
import { MemoryStore } from '../memory-store.js';

const store = new MemoryStore({ dc: 'dc1', advertiseAddr: 'x', dataDir: process.argv[2], compactEvery: 250 });
await store.start();
for (let i = 0; ; i++) {
  await store.commit([{ op: 'put', table: 'w', key: `k${i}`, value: { i, pad: 'x'.repeat(100) } }]);
  process.stdout.write(`${i}\n`);
}
