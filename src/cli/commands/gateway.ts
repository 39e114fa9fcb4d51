// `isthmus gateway`: runs a mesh gateway fed with routes by the local server over the data-plane
// stream; it registers as Kind mesh-gateway, keeps routing on its last routes while the server is
// away, serves /metrics, and stops on SIGINT/SIGTERM with nothing left bound.
import http from 'node:http';
import { networkInterfaces } from 'node:os';
import { parseDuration } from '../../core/duration.js';
import { DATACENTER_NAME_RULE, formatHostPort, isDatacenterName, isServiceName, parseHostPort, type HostPort } from '../../core/names.js';
import { VERSION } from '../../core/version.js';
import { GatewayClient } from '../../dataplane/index.js';
import { Gateway, GatewayCluster } from '../../gateway/index.js';
import type { FlowRecord } from '../../dataflow/index.js';
import { createLogger, createRegistry, type LogLevel } from '../../telemetry/index.js';
import { intFlag, str } from '../args.js';
import { CliError } from '../cli-error.js';
import type { Command } from '../command.js';

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;

function hostPortFlag(value: string, flag: string, allowPortZero: boolean): HostPort {
  const t = parseHostPort(value, { portZero: allowPortZero });
  if (!t) throw new CliError(`--${flag} must be host:port (e.g. 127.0.1.1:8443), got "${value}"`);
  return t;
}

function durationFlag(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  try {
    const ms = parseDuration(value);
    if (ms > 0) return ms;
  } catch {
    // Named below.
  }
  throw new CliError(`--${flag} must be a positive duration (e.g. 10s, 1m), got "${value}"`);
}

const unspecified = (host: string) => host === '0.0.0.0' || host === '::' || host === '';

/** An address other machines can reach for a wildcard bind: the first non-internal IPv4, else loopback. */
function reachableHost(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

export const gatewayCommand: Command = {
  name: 'gateway',
  summary: 'Run a mesh gateway: routes TLS by SNI to local sidecars and to other datacenters, never decrypting',
  usage:
    'isthmus gateway [--dc DC] [--addr HOST:PORT] [--wan-addr HOST:PORT] [--server HOST:PORT] [--token TOKEN] [--id ID] [--name NAME] [--metrics-addr HOST:PORT] [--max-connections N] [--workers N] [--hello-timeout DURATION] [--idle-timeout DURATION] [--fast-path on|off] [--log-level LEVEL]',
  options: {
    dc: { type: 'string' },
    addr: { type: 'string' },
    'wan-addr': { type: 'string' },
    server: { type: 'string' },
    'grpc-addr': { type: 'string' },
    token: { type: 'string' },
    id: { type: 'string' },
    name: { type: 'string' },
    'metrics-addr': { type: 'string' },
    'max-connections': { type: 'string' },
    workers: { type: 'string' },
    'hello-timeout': { type: 'string' },
    'idle-timeout': { type: 'string' },
    'fast-path': { type: 'string' },
    'log-level': { type: 'string' },
  },
  async run(p, io) {
    if (p.positionals.length) throw new CliError(`unexpected argument "${p.positionals[0]}"\nUsage: ${this.usage}`);
    const dc = str(p.values.dc) ?? io.env.ISTHMUS_DATACENTER ?? 'dc1';
    if (!isDatacenterName(dc)) throw new CliError(`--dc must be ${DATACENTER_NAME_RULE} (e.g. dc1), got "${dc}"`);
    const bind = hostPortFlag(str(p.values.addr) ?? '0.0.0.0:8443', 'addr', true);
    const wanFlag = str(p.values['wan-addr']);
    const wanGiven = wanFlag === undefined ? undefined : hostPortFlag(wanFlag, 'wan-addr', false);
    const serverFlag = str(p.values.server) !== undefined ? 'server' : 'grpc-addr';
    const serverAddr = str(p.values.server) ?? str(p.values['grpc-addr']) ?? io.env.ISTHMUS_GRPC_ADDR ?? '127.0.0.1:8502';
    if (!parseHostPort(serverAddr)) throw new CliError(`--${serverFlag} must be host:port of the server's gRPC listener (e.g. 127.0.1.1:8502), got "${serverAddr}"`);
    const idFlag = str(p.values.id);
    if (idFlag !== undefined && !ID_RE.test(idFlag)) throw new CliError(`--id must be 1-128 letters, digits, dots, colons, dashes or underscores, got "${idFlag}"`);
    const name = str(p.values.name) ?? 'mesh-gateway';
    if (!isServiceName(name)) throw new CliError(`--name must be a service name, got "${name}"`);
    const metricsFlag = str(p.values['metrics-addr']);
    const metricsAddr = metricsFlag === undefined ? undefined : hostPortFlag(metricsFlag, 'metrics-addr', true);
    const maxConnections = intFlag(str(p.values['max-connections']), 'max-connections', 1, 1_000_000);
    const workers = intFlag(str(p.values.workers), 'workers', 1, 64) ?? 1;
    const helloTimeoutMs = durationFlag(str(p.values['hello-timeout']), 'hello-timeout');
    const idleTimeoutMs = durationFlag(str(p.values['idle-timeout']), 'idle-timeout');
    // Unset: as ISTHMUS_FAST_PATH says (see netio/).
    const fastPathFlag = str(p.values['fast-path']);
    if (fastPathFlag !== undefined && fastPathFlag !== 'on' && fastPathFlag !== 'off') throw new CliError(`--fast-path must be on or off, got "${fastPathFlag}"`);
    const level = str(p.values['log-level']) ?? 'info';
    if (!['debug', 'info', 'warn', 'error'].includes(level)) throw new CliError(`--log-level must be debug, info, warn or error, got "${level}"`);

    const logger = createLogger({ level: level as LogLevel });
    const registry = createRegistry({ dc, node: idFlag ?? name });
    let client: GatewayClient | undefined;
    const gwOpts = { id: idFlag ?? name, dc, host: bind.host, port: bind.port, logger, maxConnections, helloTimeoutMs, idleTimeoutMs, fastPath: fastPathFlag === undefined ? undefined : fastPathFlag === 'on', onFlow: (r: FlowRecord) => client?.report(r) };
    // Several workers: processes sharing the listener (one per core), their metrics summed here.
    const gw = workers > 1 ? new GatewayCluster({ ...gwOpts, workers, logLevel: level as LogLevel }) : new Gateway({ ...gwOpts, registry });
    try {
      await gw.start();
    } catch (err) {
      throw new CliError(`cannot listen on --addr ${formatHostPort(bind)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    const lan = { host: unspecified(bind.host) ? reachableHost() : bind.host, port: gw.port };
    const wan = wanGiven ?? lan;
    // The default ID holds the bound port (known only now): two gateways on one host stay apart.
    const id = idFlag ?? `${name}-${lan.host.replace(/:/g, '.')}-${lan.port}`;
    gw.id = id;
    registry.setDefaultLabels({ dc, node: id });

    let metrics: http.Server | undefined;
    const stopAll = async () => {
      // The gateway first: the flows of the connections it closes still go out with the client's last flush.
      await gw.stop();
      client?.stop();
      if (metrics) {
        const m = metrics;
        m.closeAllConnections();
        await new Promise<void>((r) => m.close(() => r()));
      }
    };

    let fatal: string | undefined;
    let wake: () => void = () => {};
    const stopped = new Promise<void>((r) => (wake = r));
    let firstRoutes = true;
    client = new GatewayClient({
      serverAddr,
      id,
      name,
      dc,
      lanAddress: formatHostPort(lan),
      wanAddress: formatHostPort(wan),
      token: str(p.values.token) ?? io.env.ISTHMUS_HTTP_TOKEN,
      version: VERSION,
      logger,
      onRoutes: (routes) => {
        gw.update(routes);
        const counts = { services: routes.services.length, remoteDatacenters: routes.remotes.length, servers: routes.serverAddresses.length };
        if (firstRoutes) logger.info('routes received', counts);
        else logger.debug('routes updated', counts);
        firstRoutes = false;
      },
      onFatal: (code, message) => {
        fatal = `${message} (${code})`;
        wake();
      },
    });

    if (metricsAddr) {
      metrics = http.createServer((req, res) => {
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
          metrics!.once('error', reject);
          metrics!.listen(metricsAddr.port, metricsAddr.host, () => resolve());
        });
      } catch (err) {
        metrics = undefined;
        await gw.stop();
        throw new CliError(`cannot listen on --metrics-addr ${formatHostPort(metricsAddr)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
    }

    client.start();
    io.out(`==> Mesh gateway ${id} (datacenter ${dc}) listening on ${gw.address}`);
    io.out(`    LAN: ${formatHostPort(lan)}   WAN: ${formatHostPort(wan)}   server: ${serverAddr}${metrics ? `   metrics: http://${formatHostPort({ host: metricsAddr!.host, port: (metrics.address() as { port: number }).port })}/metrics` : ''}`);

    const onSignal = () => wake();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    await stopped;
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    io.out('==> Shutting down');
    await stopAll();
    if (fatal) throw new CliError(fatal);
    return 0;
  },
};
