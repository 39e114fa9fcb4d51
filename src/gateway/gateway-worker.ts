// Entry of a GatewayCluster worker process: one Gateway, on a SO_REUSEPORT listener of its own or on
// the cluster's shared one, configured from ISTHMUS_GATEWAY_WORKER; routes and its ID come from the
// primary, flow records and connection counts go back to it, and its metrics registry answers the
// primary's aggregation requests. On the shared listener, a connection accepted while this worker
// holds clearly more than another goes to that one (balance.ts).
import { AggregatorRegistry, Counter, Gauge } from 'prom-client';
import { closeAccepted, type Accepted } from '../netio/index.js';
import { createLogger, createRegistry } from '../telemetry/index.js';
import { AcceptBalance } from './balance.js';
import { Gateway } from './gateway.js';
import type { GatewayPrimaryMessage, GatewayWorkerConfig, GatewayWorkerMessage } from './gateway-cluster.js';

const config = JSON.parse(process.env.ISTHMUS_GATEWAY_WORKER ?? '{}') as GatewayWorkerConfig;
const send = (m: GatewayWorkerMessage) => process.send?.(m);
const balance = new AcceptBalance(process.pid);
/**
 * Passes not yet on their way, at most: Node sends one descriptor at a time and waits for its
 * receipt, so a burst would otherwise queue hundreds, each connection waiting for all before it.
 */
const MAX_PASSING = 8;
let passing = 0;

/** Passes a just-accepted connection on through the primary; kept here if it cannot go. */
function passOn(handle: Accepted, open: number): boolean {
  if (passing >= MAX_PASSING || !process.send || !process.connected) return false;
  const to = balance.passTo(open, gw.closed, performance.now());
  if (to === undefined) return false;
  passed.inc(workerLabel);
  passing++;
  const message: GatewayWorkerMessage = { type: 'isthmus:gateway:pass', to, open };
  // Closed here once the descriptor is on its way (the primary then holds a copy).
  process.send(message, handle as never, undefined, (err) => {
    passing--;
    if (err) gw.adopt(handle);
    else closeAccepted(handle);
  });
  return true;
}
const registry = createRegistry({ dc: config.dc, node: config.id });
AggregatorRegistry.setRegistries([registry]);
// Constructing one installs prom-client's answer to the primary's requests.
new AggregatorRegistry();
// Per worker, so the sum the primary serves still shows how the connections are shared.
const workerLabel = { worker: String(process.pid) };
new Gauge({
  name: 'isthmus_gateway_worker_connections',
  help: 'Connections open in one worker of the gateway',
  labelNames: ['worker'],
  registers: [registry],
  collect() {
    this.set(workerLabel, gw.connections);
  },
});
new Counter({
  name: 'isthmus_gateway_worker_accepted_total',
  help: 'Connections one worker of the gateway took: accepted and kept, or passed to it by another',
  labelNames: ['worker'],
  registers: [registry],
  collect() {
    this.reset();
    this.inc(workerLabel, gw.accepted);
  },
});
const passed = new Counter({
  name: 'isthmus_gateway_worker_passed_total',
  help: 'Connections a worker accepted and passed to a less loaded worker',
  labelNames: ['worker'],
  registers: [registry],
});

const gw = new Gateway({
  id: config.id,
  dc: config.dc,
  host: config.host,
  port: config.port,
  routes: config.routes,
  registry,
  logger: createLogger({ level: config.logLevel ?? 'info', fields: { worker: process.pid } }),
  helloTimeoutMs: config.helloTimeoutMs,
  maxHelloBytes: config.maxHelloBytes,
  idleTimeoutMs: config.idleTimeoutMs,
  connectTimeoutMs: config.connectTimeoutMs,
  maxAttempts: config.maxAttempts,
  maxConnections: config.maxConnections,
  bufferSweepMs: config.bufferSweepMs,
  fastPath: config.fastPath,
  pump: config.pump,
  pumpAfterMs: config.pumpAfterMs,
  pumpSetBy: config.pumpSetBy,
  reusePort: config.reusePort,
  // With a listener each, the kernel spreads the connections: none is passed on.
  passOn: config.reusePort ? undefined : passOn,
  onFlow: config.flows ? (record) => send({ type: 'isthmus:gateway:flow', record }) : undefined,
});

process.on('message', (m: GatewayPrimaryMessage, handle?: Accepted) => {
  if (m.type === 'isthmus:gateway:adopt') {
    // Passed on by a worker that holds more than it knew of this one: not to be passed back.
    balance.heard(m.from, m.open);
    if (handle) gw.adopt(handle);
  } else if (m.type === 'isthmus:gateway:loads') {
    balance.reported(m.loads);
  } else if (m.type === 'isthmus:gateway:routes') {
    gw.update(m.routes);
  } else if (m.type === 'isthmus:gateway:id') {
    gw.id = m.id;
    registry.setDefaultLabels({ dc: config.dc, node: m.id });
  } else if (m.type === 'isthmus:gateway:stop') {
    void gw.stop().then(() => process.exit(0));
  }
});
// The primary going away leaves no worker behind.
process.on('disconnect', () => void gw.stop().then(() => process.exit(0)));

gw.start().then(
  () => {
    send({ type: 'isthmus:gateway:listening', port: gw.port });
    // Reported when it changed, every 100 ms at most, and every second anyway: the other workers
    // balance on it, and a worker that falls silent is passed nothing (it may be stuck).
    let reported = -1;
    let reportedAccepted = -1;
    let reportedAt = 0;
    setInterval(() => {
      const now = Date.now();
      if (gw.connections === reported && gw.accepted === reportedAccepted && now - reportedAt < 1000) return;
      reported = gw.connections;
      reportedAccepted = gw.accepted;
      reportedAt = now;
      send({ type: 'isthmus:gateway:connections', count: reported, accepted: reportedAccepted });
    }, 100).unref();
  },
  (err: NodeJS.ErrnoException) => {
    // Out before exiting: the primary reports why.
    const failed: GatewayWorkerMessage = { type: 'isthmus:gateway:failed', code: err.code, message: err.message };
    if (process.send) process.send(failed, () => process.exit(1));
    else process.exit(1);
  },
);
