// One validated ProxyConfig for `isthmus connect proxy` from a config file, the environment and
// flags (flags win, then env, then file), or one error that names every bad value and where it came from.
import { z } from 'zod';
import type { Violation } from '../core/errors.js';
import { REDACTED, type LogLevel } from '../telemetry/index.js';
import { PROXY_SETTINGS, type ProxyFlags } from './settings.js';
import { configError, gatherSources, issueViolations } from './sources.js';
import { dialAddress, logLevel, token } from './values.js';

export interface ProxyConfig {
  /** Catalog ID of the sidecar-proxy registration to serve (`--proxy-id`, or `<sidecar-for>-sidecar-proxy`). */
  proxyId: string | undefined;
  /** The service to proxy for when nothing is registered for it. */
  service: string | undefined;
  /** host:port of the local server's gRPC listener, which feeds the sidecar its configuration. */
  serverAddr: string;
  token: string | undefined;
  logLevel: LogLevel;
}

export interface ProxyLoadOptions {
  flags?: ProxyFlags;
  env?: NodeJS.ProcessEnv;
  configFile?: string;
}

type ProxyKey = keyof typeof PROXY_SETTINGS;

const DEFAULTS: Partial<Record<ProxyKey, string>> = { grpc_addr: '127.0.0.1:8502', log_level: 'info' };

const name = () => z.string({ error: 'must be a string' }).max(256, { error: 'must be at most 256 characters' }).optional();

const schema = z.object({
  sidecar_for: name(),
  proxy_id: name(),
  service: name(),
  grpc_addr: dialAddress("host:port of the server's gRPC listener (e.g. 127.0.1.1:8502)"),
  token: token().optional(),
  log_level: logLevel(),
});

export function loadProxyConfig(opts: ProxyLoadOptions = {}): ProxyConfig {
  const violations: Violation[] = [];
  const sources = gatherSources(PROXY_SETTINGS, opts, violations);
  const merged: Record<string, unknown> = {};
  for (const k of Object.keys(PROXY_SETTINGS) as ProxyKey[]) merged[k] = sources.has(k) ? sources.get(k)!.value : DEFAULTS[k];
  const r = schema.safeParse(merged);
  if (!r.success) violations.push(...issueViolations(r.error.issues, sources));
  // An empty value names nothing, as if it were not given.
  const d = r.success
    ? { ...r.data, sidecar_for: r.data.sidecar_for || undefined, proxy_id: r.data.proxy_id || undefined, service: r.data.service || undefined }
    : undefined;
  if (d && !d.sidecar_for && !d.proxy_id && !d.service) {
    violations.push({ Field: '--sidecar-for', Message: 'or --service is required' });
  }
  if (violations.length > 0 || !d) throw configError(violations);
  return {
    proxyId: d.proxy_id ?? (d.sidecar_for ? `${d.sidecar_for}-sidecar-proxy` : undefined),
    service: d.service,
    serverAddr: d.grpc_addr,
    token: d.token,
    logLevel: d.log_level,
  };
}

/** A copy safe to log or print: the token masked. */
export function redactProxyConfig(config: ProxyConfig): ProxyConfig {
  return { ...config, token: config.token ? REDACTED : config.token };
}
