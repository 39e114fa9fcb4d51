// The composition root of `isthmus gateway`: from a GatewayConfig, a mesh gateway (one process, or a
// cluster of workers on its port) fed with routes by the local server over the data-plane
// stream, registered as Kind mesh-gateway, routing on its last routes while the server is away, with
// /metrics when asked; stopped in reverse. A folder of its own beside region/ (as Kuma has one
// bootstrap per binary under app/), so that a gateway process loads none of the server.
import http from 'node:http';
import { networkInterfaces } from 'node:os';
import { ErrorCodes, IsthmusError, isIsthmusError } from '../core/errors.js';
import { VERSION } from '../core/version.js';
import { redactGatewayConfig, type GatewayConfig } from '../config/gateway-config.js';
import { GatewayClient, refusal } from '../dataplane-client/index.js';
import type { FlowRecord } from '../dataflow/index.js';
import { Gateway, GatewayCluster } from '../gateway/index.js';
import { createLogger, createRegistry, type Logger } from '../telemetry/index.js';

export interface GatewayProcess {
  readonly config: GatewayConfig;
  /** The catalog ID it registered under. */
  readonly id: string;
  /** host:port it is bound to (port 0 resolved). */
  readonly address: string;
  /** host:port this DC's sidecars reach it on, and the one other DCs' gateways dial. */
  readonly lanAddress: string;
  readonly wanAddress: string;
  /** http://host:port/metrics, when it serves metrics. */
  readonly metricsUrl: string | undefined;
  /**
   * Settles (never rejects) when the server refuses the gateway for good (wrong DC, a token that may
   * not write its service): the typed error the server sent. The gateway is still up; stop it.
   */
  readonly refused: Promise<IsthmusError>;
  stop(): Promise<void>;
}

export interface StartGatewayOptions {
  logger?: Logger;
}

type HostPort = GatewayConfig['addr'];

const formatAddr = (t: HostPort) => (t.host.includes(':') ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`);
const unspecified = (host: string) => host === '0.0.0.0' || host === '::' || host === '';

/** An address other machines can reach for a wildcard bind: the first non-internal IPv4, else loopback. */
function reachableHost(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

function cannotListen(what: string, addr: HostPort, err: unknown): IsthmusError {
  return new IsthmusError(
    ErrorCodes.UNAVAILABLE,
    `cannot listen on ${what} ${formatAddr(addr)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    { cause: err },
  );
}

export async function startGateway(config: GatewayConfig, opts: StartGatewayOptions = {}): Promise<GatewayProcess> {
  const { dc, name } = config;
  const logger = opts.logger ?? createLogger({ level: config.logLevel });
  const registry = createRegistry({ dc, node: config.id ?? name });
  let client: GatewayClient | undefined;
  const gwOpts = {
    id: config.id ?? name,
    dc,
    host: config.addr.host,
    port: config.addr.port,
    logger,
    maxConnections: config.maxConnections,
    helloTimeoutMs: config.helloTimeoutMs,
    idleTimeoutMs: config.idleTimeoutMs,
    fastPath: config.fastPath,
    pump: config.pump,
    pumpSetBy: config.pumpSetBy,
    onFlow: (r: FlowRecord) => client?.report(r),
  };
  // Several workers: processes on the one port (one per core), their metrics summed here.
  const gw = config.workers > 1 ? new GatewayCluster({ ...gwOpts, workers: config.workers, logLevel: config.logLevel }) : new Gateway({ ...gwOpts, registry });
  try {
    await gw.start();
  } catch (err) {
    // A setting the gateway refuses (a pump that cannot be had) is said as it is, not as a bind failure.
    if (isIsthmusError(err)) throw err;
    throw cannotListen('the gateway address', config.addr, err);
  }
  const lan = { host: unspecified(config.addr.host) ? reachableHost() : config.addr.host, port: gw.port };
  const wan = config.wanAddr ?? lan;
  // The default ID holds the bound port (known only now): two gateways on one host stay apart.
  const id = config.id ?? `${name}-${lan.host.replace(/:/g, '.')}-${lan.port}`;
  gw.id = id;
  registry.setDefaultLabels({ dc, node: id });

  let onRefused: (err: IsthmusError) => void = () => {};
  const refused = new Promise<IsthmusError>((r) => (onRefused = r));
  let firstRoutes = true;
  client = new GatewayClient({
    serverAddr: config.serverAddr,
    id,
    name,
    dc,
    lanAddress: formatAddr(lan),
    wanAddress: formatAddr(wan),
    token: config.token,
    version: VERSION,
    logger,
    onRoutes: (routes) => {
      gw.update(routes);
      const counts = { services: routes.services.length, remoteDatacenters: routes.remotes.length, servers: routes.serverAddresses.length };
      if (firstRoutes) logger.info('routes received', counts);
      else logger.debug('routes updated', counts);
      firstRoutes = false;
    },
    onFatal: (code, message) => onRefused(refusal(code, message)),
  });

  let metrics: http.Server | undefined;
  if (config.metricsAddr) {
    const server = http.createServer((req, res) => {
      if (req.url !== '/metrics' && !req.url?.startsWith('/metrics?')) {
        res.writeHead(404).end();
        return;
      }
      const text = gw instanceof GatewayCluster ? gw.metrics() : registry.metrics();
      text.then(
        (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
        () => res.writeHead(500).end(),
      );
    });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.metricsAddr!.port, config.metricsAddr!.host, () => resolve());
      });
    } catch (err) {
      await gw.stop();
      throw cannotListen('the metrics address', config.metricsAddr, err);
    }
    metrics = server;
  }

  client.start();
  const metricsPort = (metrics?.address() as { port: number } | null)?.port;
  logger.info('gateway started', { config: redactGatewayConfig(config), id, address: gw.address });
  return {
    config,
    id,
    address: gw.address,
    lanAddress: formatAddr(lan),
    wanAddress: formatAddr(wan),
    metricsUrl: metrics ? `http://${formatAddr({ host: config.metricsAddr!.host, port: metricsPort! })}/metrics` : undefined,
    refused,
    stop: async () => {
      // The gateway first: the flows of the connections it closes still go out with the client's last flush.
      await gw.stop();
      client.stop();
      if (metrics) {
        const m = metrics;
        m.closeAllConnections();
        await new Promise<void>((r) => m.close(() => r()));
      }
    },
  };
}
