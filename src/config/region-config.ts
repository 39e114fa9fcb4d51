// One validated RegionConfig from a config file, the environment and flags (flags win, then env, then file).
// Every violation names where the bad value came from: the flag, the variable or the file key.
import { hostname } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { ErrorCodes, IsthmusError, type Violation } from '../core/errors.js';
import { parseDuration } from '../core/duration.js';
import {
  DATACENTER_NAME_RE,
  DATACENTER_NAME_RULE,
  formatHostPort,
  parseHostPort,
  readHostPort,
  REDACTED,
  redactUrl,
  type HostPort,
  type HostPortRules,
} from '../core/names.js';
import { decodeJoinToken, type JoinToken } from '../federation/index.js';
import { REGION_SETTINGS, type ConfigFlags, type ConfigKey } from './settings.js';
import { gatherSources, issueViolations } from './sources.js';

export type Mode = 'dev' | 'server';

export interface RegionConfig {
  mode: Mode;
  dc: string;
  primaryDc: string;
  nodeName: string;
  /** host:port the HTTP API listens on. */
  httpAddr: string;
  /** host:port the gRPC (data plane) listener uses, plaintext on loopback like Consul's 8502. */
  grpcAddr: string;
  /** host:port of the federation listener (gRPC over mutual TLS; the gateways route server.<dc>.<td> to it). */
  grpcTlsAddr: string;
  /** Heartbeat period of the peer streams; a peer silent for three is redialed. */
  federationHeartbeatMs: number;
  /** A secondary's join token (decoded); used once, at the first start. */
  joinToken: JoinToken | undefined;
  /** host:port other parts use to reach this server's HTTP API. */
  advertiseAddr: string;
  /** Where the memory store keeps its log and snapshots; absent = nothing persisted (dev only). */
  dataDir: string | undefined;
  store: 'memory' | 'redis';
  redisUrl: string | undefined;
  aclDefaultPolicy: 'allow' | 'deny';
  logLevel: 'debug' | 'info' | 'warn' | 'error';
}

/** Listen and advertise addresses: a host name or IP literal, and a port (0: any free one). */
const ADDRESS: HostPortRules = { host: 'address', portZero: true };

const hostPort = z.string().superRefine((v, ctx) => {
  const r = readHostPort(v, ADDRESS);
  if ('problem' in r)
    ctx.addIssue({ code: 'custom', message: r.problem === 'port out of range' ? 'port must be 0..65535' : 'must be host:port, e.g. 127.0.0.1:8500' });
});

const schema = z.object({
  datacenter: z.string().regex(DATACENTER_NAME_RE, `must be ${DATACENTER_NAME_RULE} (e.g. dc1)`),
  primary_datacenter: z.string().regex(DATACENTER_NAME_RE, `must be ${DATACENTER_NAME_RULE} (e.g. dc1)`),
  node_name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, 'must be letters, digits, dots, dashes, underscores'),
  http_addr: hostPort,
  grpc_addr: hostPort,
  grpc_tls_addr: hostPort,
  join_token: z.string().optional(),
  federation_heartbeat: z.string().transform((v, ctx) => {
    try {
      const ms = parseDuration(v, 'federation_heartbeat');
      if (ms >= 100 && ms <= 60_000) return ms;
    } catch {
      // reported below
    }
    ctx.addIssue({ code: 'custom', message: 'must be a duration between 100ms and 60s (e.g. 5s)' });
    return z.NEVER;
  }),
  advertise_addr: hostPort,
  data_dir: z.string().min(1).optional(),
  store: z.enum(['memory', 'redis'], { message: 'must be memory or redis' }),
  redis_url: z
    .string()
    .regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL')
    .optional(),
  acl_default_policy: z.enum(['allow', 'deny'], { message: 'must be allow or deny' }),
  log_level: z.enum(['debug', 'info', 'warn', 'error'], { message: 'must be debug, info, warn or error' }),
});

export interface LoadOptions {
  mode: Mode;
  flags?: ConfigFlags;
  env?: NodeJS.ProcessEnv;
  /** Path of a JSON config file (`--config`). */
  configFile?: string;
}

export function loadRegionConfig(opts: LoadOptions): RegionConfig {
  const violations: Violation[] = [];
  const sources = gatherSources(REGION_SETTINGS, opts, violations);

  const dev = opts.mode === 'dev';
  let joinToken: JoinToken | undefined;
  const rawToken = sources.get('join_token');
  if (rawToken !== undefined) {
    try {
      joinToken = decodeJoinToken(String(rawToken.value), rawToken.where);
    } catch (err) {
      for (const v of (err as IsthmusError).violations ?? []) violations.push(v);
    }
  }
  const dc = (sources.get('datacenter')?.value as string | undefined) ?? joinToken?.dc ?? 'dc1';
  const httpAddr = (sources.get('http_addr')?.value as string | undefined) ?? '127.0.0.1:8500';
  // Federation listens next to the data-plane gRPC port (8502 -> 8503, as Consul's grpc_tls), or on any port when that is 0.
  const httpHost = parseHostPort(httpAddr, ADDRESS)?.host ?? '127.0.0.1';
  const grpcDefault = formatHostPort({ host: httpHost, port: 8502 });
  const tlsDefault = () => {
    const g = parseHostPort(String(sources.get('grpc_addr')?.value ?? grpcDefault), ADDRESS);
    if (!g) return '127.0.0.1:8503';
    return formatHostPort({ host: g.host, port: g.port === 0 ? 0 : g.port + 1 });
  };
  const defaults: Record<ConfigKey, unknown> = {
    datacenter: dc,
    primary_datacenter: joinToken?.primary ?? dc,
    node_name: `${
      hostname()
        .split('.')[0]
        .replace(/[^A-Za-z0-9_.-]/g, '-') || 'node'
    }-${dc}`,
    http_addr: '127.0.0.1:8500',
    grpc_addr: grpcDefault,
    grpc_tls_addr: tlsDefault(),
    join_token: undefined,
    federation_heartbeat: '5s',
    advertise_addr: httpAddr,
    data_dir: dev ? undefined : join('.isthmus', dc),
    store: 'memory',
    redis_url: undefined,
    acl_default_policy: dev ? 'allow' : 'deny',
    log_level: 'info',
  };
  const merged: Record<string, unknown> = {};
  for (const k of Object.keys(REGION_SETTINGS) as ConfigKey[]) merged[k] = sources.has(k) ? sources.get(k)!.value : defaults[k];

  const r = schema.safeParse(merged);
  if (!r.success) violations.push(...issueViolations(r.error.issues, sources));
  if (r.success && r.data.store === 'redis' && !r.data.redis_url) {
    violations.push({ Field: sources.get('store')?.where ?? 'store', Message: 'store redis needs --redis-url (or ISTHMUS_REDIS_URL)' });
  }
  if (violations.length > 0 || !r.success) {
    const text = violations.map((v) => `${v.Field}: ${v.Message}`).join('; ');
    throw new IsthmusError(ErrorCodes.BAD_CONFIG, `invalid configuration: ${text}`, { violations });
  }
  const d = r.data;
  return {
    mode: opts.mode,
    dc: d.datacenter,
    primaryDc: d.primary_datacenter,
    nodeName: d.node_name,
    httpAddr: d.http_addr,
    grpcAddr: d.grpc_addr,
    grpcTlsAddr: d.grpc_tls_addr,
    joinToken,
    federationHeartbeatMs: d.federation_heartbeat,
    advertiseAddr: d.advertise_addr,
    dataDir: d.data_dir,
    store: d.store,
    redisUrl: d.redis_url,
    aclDefaultPolicy: d.acl_default_policy,
    logLevel: d.log_level,
  };
}

/** A copy safe to log or print: credentials in URLs masked. */
export function redactConfig(config: RegionConfig): RegionConfig {
  return {
    ...config,
    redisUrl: config.redisUrl === undefined ? undefined : redactUrl(config.redisUrl),
    joinToken: config.joinToken ? { ...config.joinToken, secret: REDACTED, root: `${REDACTED} (pinned root)` } : undefined,
  };
}

/** A validated config address -> host (without brackets) and port. */
export function splitHostPort(addr: string): HostPort {
  const r = readHostPort(addr, ADDRESS);
  if ('problem' in r) throw new IsthmusError(ErrorCodes.BAD_CONFIG, `${addr} is not host:port`);
  return r;
}
