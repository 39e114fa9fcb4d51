// Benchmark child: the mesh gateway alone in its process (its CPU and RSS are its own, workers
// included), routing the services given as JSON in argv[3] ({ trustDomain, services: { name: port },
// workers, bufferSweepMs }) on port argv[2]. One worker is a plain Gateway; more are a GatewayCluster. Plain
// JavaScript on the build in dist/ (`npm run build`), as `isthmus gateway` runs: a TypeScript loader
// in the process would add its own memory and, per closure made, a call naming it.
// Prints { port, pid } as one JSON line.
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
const opts = { id: 'bench-gateway', dc: 'dc1', host: '127.0.0.1', port, maxConnections: 20_000, routes, bufferSweepMs: spec.bufferSweepMs };
// With its metrics, as `isthmus gateway` runs (a cluster's workers make their own registries).
const gw =
  (spec.workers ?? 1) > 1
    ? new GatewayCluster({ ...opts, workers: spec.workers })
    : new Gateway({ ...opts, registry: createRegistry({ dc: 'dc1', node: 'bench-gateway' }) });
await gw.start();
process.stdout.write(JSON.stringify({ port: gw.port, pid: process.pid }) + '\n');
process.on('SIGTERM', async () => {
  await gw.stop();
  process.exit(0);
});
