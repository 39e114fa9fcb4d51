// One validated GatewayConfig for `isthmus gateway` from a config file, the environment and flags
// (flags win, then env, then file), or one error that names every bad value and where it came from.
import { z } from 'zod';
import type { Violation } from '../core/errors.js';
import { DATACENTER_NAME_RE, DATACENTER_NAME_RULE, REDACTED, SERVICE_NAME_RE, SERVICE_NAME_RULE, type HostPort } from '../core/names.js';
import type { PumpSetting } from '../gateway/index.js';
import type { LogLevel } from '../telemetry/index.js';
import { GATEWAY_SETTINGS, type GatewayFlags } from './settings.js';
import { configError, gatherSources, issueViolations } from './sources.js';
import { dialAddress, hostPort, logLevel, oneOf, onOff, pattern, positiveDuration, token, wholeNumber } from './values.js';

export interface GatewayConfig {
  dc: string;
  /** Where the gateway listens; port 0 takes any free port, host 0.0.0.0 every interface. */
  addr: HostPort;
  /** What other DCs' gateways dial; absent: the LAN address. */
  wanAddr: HostPort | undefined;
  /** host:port of the local server's gRPC listener, which feeds the gateway its routes. */
  serverAddr: string;
  token: string | undefined;
  /** The gateway's catalog ID; absent: `<name>-<LAN host>-<port>`, known once bound. */
  id: string | undefined;
  name: string;
  /** Where /metrics is served; absent: nowhere. */
  metricsAddr: HostPort | undefined;
  maxConnections: number | undefined;
  /** Processes on the one port (one per core; see GatewayCluster); 1 runs the gateway in this process. */
  workers: number;
  helloTimeoutMs: number | undefined;
  idleTimeoutMs: number | undefined;
  /** Drive connections on the fast data path (on) or plain net.Sockets (off); unset: as ISTHMUS_FAST_PATH says (see netio/). */
  fastPath: boolean | undefined;
  /**
   * Who moves routed connections' bytes: the native byte pump (on: a start-up error where it does
   * not load; auto: where it loads) or the data path (off); unset: the gateway's default.
   */
  pump: PumpSetting | undefined;
  /** Where `pump` was set (`--pump`, ISTHMUS_PUMP, `<file>: pump`), for the gateway's error when `on` cannot be had. */
  pumpSetBy: string | undefined;
  logLevel: LogLevel;
}

export interface GatewayLoadOptions {
  flags?: GatewayFlags;
  env?: NodeJS.ProcessEnv;
  configFile?: string;
}

type GatewayKey = keyof typeof GATEWAY_SETTINGS;

const DEFAULTS: Partial<Record<GatewayKey, string>> = {
  datacenter: 'dc1',
  addr: '0.0.0.0:8443',
  server: '127.0.0.1:8502',
  name: 'mesh-gateway',
  workers: '1',
  log_level: 'info',
};

const PUMP_SETTINGS: readonly PumpSetting[] = ['on', 'auto', 'off'];

const LISTEN = 'host:port (e.g. 127.0.1.1:8443)';

const schema = z.object({
  datacenter: pattern(DATACENTER_NAME_RE, `${DATACENTER_NAME_RULE} (e.g. dc1)`),
  addr: hostPort(LISTEN, true),
  wan_addr: hostPort(LISTEN, false).optional(),
  server: dialAddress("host:port of the server's gRPC listener (e.g. 127.0.1.1:8502)"),
  token: token().optional(),
  id: pattern(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/, '1-128 letters, digits, dots, colons, dashes or underscores').optional(),
  name: pattern(SERVICE_NAME_RE, `a service name (${SERVICE_NAME_RULE})`),
  metrics_addr: hostPort(LISTEN, true).optional(),
  max_connections: wholeNumber(1, 1_000_000).optional(),
  workers: wholeNumber(1, 64),
  hello_timeout: positiveDuration().optional(),
  idle_timeout: positiveDuration().optional(),
  fast_path: onOff().optional(),
  pump: oneOf(PUMP_SETTINGS, 'on, auto or off').optional(),
  log_level: logLevel(),
});

export function loadGatewayConfig(opts: GatewayLoadOptions = {}): GatewayConfig {
  const violations: Violation[] = [];
  const sources = gatherSources(GATEWAY_SETTINGS, opts, violations);
  const merged: Record<string, unknown> = {};
  for (const k of Object.keys(GATEWAY_SETTINGS) as GatewayKey[]) merged[k] = sources.has(k) ? sources.get(k)!.value : DEFAULTS[k];
  const r = schema.safeParse(merged);
  if (!r.success) violations.push(...issueViolations(r.error.issues, sources));
  if (violations.length > 0 || !r.success) throw configError(violations);
  const d = r.data;
  return {
    dc: d.datacenter,
    addr: d.addr,
    wanAddr: d.wan_addr,
    serverAddr: d.server,
    token: d.token,
    id: d.id,
    name: d.name,
    metricsAddr: d.metrics_addr,
    maxConnections: d.max_connections,
    workers: d.workers,
    helloTimeoutMs: d.hello_timeout,
    idleTimeoutMs: d.idle_timeout,
    fastPath: d.fast_path,
    pump: d.pump,
    pumpSetBy: sources.get('pump')?.where,
    logLevel: d.log_level,
  };
}

/** A copy safe to log or print: the token masked. */
export function redactGatewayConfig(config: GatewayConfig): GatewayConfig {
  return { ...config, token: config.token ? REDACTED : config.token };
}
