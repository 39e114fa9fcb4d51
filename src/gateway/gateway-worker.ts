// Entry of a GatewayCluster worker process: one Gateway on the shared listener, configured from
// ISTHMUS_GATEWAY_WORKER; routes and its ID come from the primary, flow records and connection
// counts go back to it, and its metrics registry answers the primary's aggregation requests.
import { AggregatorRegistry } from 'prom-client';
import { createLogger, createRegistry } from '../telemetry/index.js';
import { Gateway } from './gateway.js';
import type { GatewayPrimaryMessage, GatewayWorkerConfig, GatewayWorkerMessage } from './gateway-cluster.js';

const config = JSON.parse(process.env.ISTHMUS_GATEWAY_WORKER ?? '{}') as GatewayWorkerConfig;
const send = (m: GatewayWorkerMessage) => process.send?.(m);
const registry = createRegistry({ dc: config.dc, node: config.id });
AggregatorRegistry.setRegistries([registry]);
// Constructing one installs prom-client's answer to the primary's requests.
new AggregatorRegistry();

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
  onFlow: config.flows ? (record) => send({ type: 'isthmus:gateway:flow', record }) : undefined,
});

process.on('message', (m: GatewayPrimaryMessage) => {
  if (m.type === 'isthmus:gateway:routes') {
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
    setInterval(() => send({ type: 'isthmus:gateway:connections', count: gw.connections }), 1000).unref();
  },
  (err: NodeJS.ErrnoException) => {
    // Out before exiting: the primary reports why.
    const failed: GatewayWorkerMessage = { type: 'isthmus:gateway:failed', code: err.code, message: err.message };
    if (process.send) process.send(failed, () => process.exit(1));
    else process.exit(1);
  },
);
