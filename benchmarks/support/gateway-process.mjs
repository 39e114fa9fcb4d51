// Benchmark child: the mesh gateway alone in its process (its CPU and RSS are its own, workers
// included), routing the services given as JSON in argv[3] ({ trustDomain, services: { name: port },
// workers, bufferSweepMs, pump: 'on'|'auto'|'off', fastPath }) on port argv[2]. One worker is a plain
// Gateway; more are a GatewayCluster (whose workers take the pump setting from ISTHMUS_PUMP, which the
// benchmark sets to the same). Plain JavaScript on the build in dist/ (`npm run build`), as `isthmus
// gateway` runs: a TypeScript loader in the process would add its own memory and, per closure made, a
// call naming it.
// Prints { port, pid, nativePump, workerReports } as one JSON line (nativePump: 1 when a plain
// Gateway's bytes go through the native pump, 0 when not; absent for a cluster). workerReports: 1
// when a cluster answers SIGUSR2 with a line { workerConnections: [{ pid, connections }] }, what its
// workers last reported of their open connections.
import { Gateway, GatewayCluster } from '../../dist/gateway/index.js';
import { createRegistry } from '../../dist/telemetry/index.js';

const port = Number(process.argv[2]);
const spec = JSON.parse(process.argv[3]);
const routes = {
  dc: 'dc1',
  trustDomain: spec.trustDomain,
  services: Object.entries(spec.services).map(([name, p]) => ({ name, namespace: 'default', endpoints: [{ host: '127.0.0.1', port: p }] })),
  serverAddresses: [],
  remotes: [],
};
const opts = {
  id: 'bench-gateway',
  dc: 'dc1',
  host: '127.0.0.1',
  port,
  maxConnections: 20_000,
  routes,
  bufferSweepMs: spec.bufferSweepMs,
  pump: spec.pump,
  fastPath: spec.fastPath,
};
// With its metrics, as `isthmus gateway` runs (a cluster's workers make their own registries).
const gw =
  (spec.workers ?? 1) > 1
    ? new GatewayCluster({ ...opts, workers: spec.workers })
    : new Gateway({ ...opts, registry: createRegistry({ dc: 'dc1', node: 'bench-gateway' }) });
await gw.start();
const nativePump = gw instanceof Gateway ? { nativePump: gw.pump ? 1 : 0 } : {};
const reports = gw instanceof GatewayCluster && Array.isArray(gw.workerConnections);
if (reports) process.on('SIGUSR2', () => process.stdout.write(JSON.stringify({ workerConnections: gw.workerConnections }) + '\n'));
process.stdout.write(JSON.stringify({ port: gw.port, pid: process.pid, ...nativePump, ...(reports ? { workerReports: 1 } : {}) }) + '\n');
process.on('SIGTERM', async () => {
  await gw.stop();
  process.exit(0);
});
