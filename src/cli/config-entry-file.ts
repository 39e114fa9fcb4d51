// Reads a config entry file (Consul's HCL or JSON) into the JSON entry `PUT /v1/config` takes, as
// `consul config write` decodes it: HCL v1, snake_case or PascalCase keys, blocks unwrapped.
import { readFileSync } from 'node:fs';
import { CliError } from './cli-error.js';

export type ConfigEntry = Record<string, unknown> & { Kind: string; Name: string };

/**
 * Fields whose value is a list. HCL v1 gives every block as a list of objects; Consul's decoder
 * (mapstructure with `HookWeakDecodeFromSlice`) unwraps a one-element list wherever its struct
 * field is not a slice, and wraps a lone value where it is. We have no structs, so the slices are named.
 */
const LIST_FIELDS = new Set([
  'Routes',
  'Splits',
  'Datacenters',
  'Targets',
  'Methods',
  'Header',
  'QueryParam',
  'RetryOn',
  'RetryOnStatusCodes',
  'HashPolicies',
  'Sources',
  'Permissions',
  'Remove',
  'Overrides',
  'Paths',
  'EnvoyExtensions',
  'Listeners',
  'Services',
  'Hosts',
]);

/** Maps whose keys are the user's (header names, meta keys, opaque proxy config): never renamed. */
const OPAQUE_MAPS = new Set(['Meta', 'Config', 'Add', 'Set', 'Arguments', 'ServiceMeta', 'NodeMeta']);

/** Maps whose keys are the user's (subset names, `*`) and whose values are entries' structs. */
const NAMED_MAPS = new Set(['Subsets', 'Failover']);

/**
 * Consul's field names, so that a key in any casing finds its own: mapstructure matches field
 * names regardless of case and the `alias` tags give the snake_case forms (`path_prefix`, `http`).
 */
const KNOWN = [
  'Kind',
  'Name',
  'Namespace',
  'Partition',
  'Protocol',
  'Mode',
  'MeshGateway',
  'Expose',
  'Checks',
  'Paths',
  'ExternalSNI',
  'TransparentProxy',
  'OutboundListenerPort',
  'DialedDirectly',
  'UpstreamConfig',
  'Defaults',
  'Overrides',
  'ConnectTimeoutMs',
  'Limits',
  'MaxConnections',
  'MaxPendingRequests',
  'MaxConcurrentRequests',
  'PassiveHealthCheck',
  'Interval',
  'MaxFailures',
  'EnforcingConsecutive5xx',
  'MaxEjectionPercent',
  'BaseEjectionTime',
  'BalanceInboundConnections',
  'LocalConnectTimeoutMs',
  'LocalRequestTimeoutMs',
  'MaxInboundConnections',
  'DefaultSubset',
  'Subsets',
  'Filter',
  'OnlyPassing',
  'Redirect',
  'Service',
  'ServiceSubset',
  'Datacenter',
  'Peer',
  'SamenessGroup',
  'Failover',
  'Datacenters',
  'Targets',
  'Policy',
  'ConnectTimeout',
  'RequestTimeout',
  'IdleTimeout',
  'LoadBalancer',
  'RingHashConfig',
  'MinimumRingSize',
  'MaximumRingSize',
  'LeastRequestConfig',
  'ChoiceCount',
  'HashPolicies',
  'Field',
  'FieldValue',
  'CookieConfig',
  'Session',
  'TTL',
  'Path',
  'SourceIP',
  'Terminal',
  'Splits',
  'Weight',
  'RequestHeaders',
  'ResponseHeaders',
  'Add',
  'Set',
  'Remove',
  'Routes',
  'Match',
  'HTTP',
  'PathExact',
  'PathPrefix',
  'PathRegex',
  'Methods',
  'Header',
  'QueryParam',
  'Present',
  'Exact',
  'Prefix',
  'Suffix',
  'Regex',
  'Invert',
  'Contains',
  'IgnoreCase',
  'Destination',
  'PrefixRewrite',
  'NumRetries',
  'RetryOnConnectFailure',
  'RetryOn',
  'RetryOnStatusCodes',
  'Sources',
  'Action',
  'Permissions',
  'Precedence',
  'Type',
  'Description',
  'LegacyID',
  'LegacyMeta',
  'Meta',
  'Config',
  'EnvoyExtensions',
  'Required',
  'Arguments',
];
const BY_FOLDED = new Map(KNOWN.map((k) => [fold(k), k]));

function fold(key: string): string {
  return key.replace(/_/g, '').toLowerCase();
}

/** Words Consul spells in capitals when a snake_case key is not one we know. */
const ACRONYMS: Record<string, string> = { http: 'HTTP', tls: 'TLS', sni: 'SNI', ip: 'IP', ttl: 'TTL', id: 'ID', uri: 'URI', acl: 'ACL', grpc: 'GRPC' };

/** The CamelCase field name for `key`, as Consul's decoder would find it. */
export function fieldName(key: string): string {
  const known = BY_FOLDED.get(fold(key));
  if (known) return known;
  if (!key.includes('_') && /^[A-Z]/.test(key)) return key;
  return key
    .split('_')
    .filter(Boolean)
    .map((w) => ACRONYMS[w.toLowerCase()] ?? w[0].toUpperCase() + w.slice(1))
    .join('');
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A block (a one-element list of an object) as its object; anything else as it is. */
function unwrap(v: unknown): unknown {
  return Array.isArray(v) && v.length === 1 && isObject(v[0]) ? v[0] : v;
}

/** A struct of an entry: its keys renamed, its blocks unwrapped, its lists made lists. */
function struct(obj: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, raw] of Object.entries(obj)) {
    const name = fieldName(key);
    out[name] = field(name, raw);
  }
  return out;
}

function field(name: string, raw: unknown): unknown {
  if (LIST_FIELDS.has(name)) {
    const list = Array.isArray(raw) ? raw : [raw];
    return list.map((item) => (isObject(item) ? struct(item) : item));
  }
  const v = unwrap(raw);
  if (OPAQUE_MAPS.has(name)) return isObject(v) ? opaque(v) : v;
  if (NAMED_MAPS.has(name) && isObject(v)) {
    const out: Record<string, unknown> = {};
    for (const [k, inner] of Object.entries(v)) {
      const u = unwrap(inner);
      out[k] = isObject(u) ? struct(u) : u;
    }
    return out;
  }
  return isObject(v) ? struct(v) : v;
}

/** A user's map: keys kept; a nested block still unwrapped (HCL v1 `Config { x { ... } }`). */
function opaque(obj: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, raw] of Object.entries(obj)) {
    const v = unwrap(raw);
    out[k] = isObject(v) ? opaque(v) : v;
  }
  return out;
}

/** The decoded document (from HCL or JSON) as the entry the API takes, or a refusal naming `file`. */
export function toConfigEntry(doc: unknown, file: string): ConfigEntry {
  if (!isObject(doc)) throw new CliError(`${file}: a config entry must be an object with Kind and Name`);
  const entry = struct(doc);
  if (typeof entry.Kind !== 'string' || entry.Kind === '') throw new CliError(`${file}: the config entry has no Kind (Kind = "service-defaults", ...)`);
  if (typeof entry.Name !== 'string' || entry.Name === '') throw new CliError(`${file}: the ${entry.Kind} entry has no Name`);
  return entry as ConfigEntry;
}

/** Parses `text` (JSON when it starts with `{` or `[`, Consul's HCL otherwise) from `file` into an entry. */
export async function parseConfigEntry(text: string, file: string): Promise<ConfigEntry> {
  if (/^\s*[[{]/.test(text)) {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      throw new CliError(`${file}: not valid JSON: ${jsonWhere(text, (err as Error).message)}`);
    }
    return toConfigEntry(doc, file);
  }
  // Loaded here, not at the top: it is 1.6 MB that only this command needs.
  const hcl = (await import('js-hcl-parser')).default;
  const out = hcl.parse(text);
  let doc: unknown;
  try {
    doc = JSON.parse(out);
  } catch {
    // Not JSON: the parser's own error line, "unable to parse JSON: At 5:11: <what>".
    const m = /At (\d+):(\d+): (.*)$/s.exec(out);
    throw new CliError(m ? `${file}:${m[1]}:${m[2]}: not valid HCL: ${m[3].trim()}` : `${file}: not valid HCL: ${out.trim()}`);
  }
  return toConfigEntry(doc, file);
}

/** V8 says where JSON broke as a character position; a line and column is what an editor wants. */
function jsonWhere(text: string, message: string): string {
  const m = /at position (\d+)/.exec(message);
  if (!m || /\(line \d+/.test(message)) return message;
  const before = text.slice(0, Number(m[1]));
  const line = before.split('\n').length;
  const col = Number(m[1]) - before.lastIndexOf('\n');
  return `${message} (line ${line} column ${col})`;
}

/** Reads FILE (or standard input for `-`) and parses it; nothing is sent when this throws. */
export async function readConfigEntryFile(file: string): Promise<ConfigEntry> {
  let text: string;
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return parseConfigEntry(text, file === '-' ? '<stdin>' : file);
}
