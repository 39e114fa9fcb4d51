// Config entries in Consul's shape (PascalCase, as `PUT /v1/config` takes them): one zod schema per
// kind, every violation named by its field path, unknown fields refused by name.
import { RE2JS } from 're2js';
import { z } from 'zod';
import { parseDuration } from '../core/duration.js';
import { invalid, type Violation } from '../core/errors.js';
import { isDatacenterRef, isServiceName, DATACENTER_REF_MESSAGE, SERVICE_NAME_RULE } from '../core/names.js';
import { serviceIntentionsSchema, type ServiceIntentions } from '../intentions/index.js';

export const CONFIG_KINDS = ['proxy-defaults', 'service-defaults', 'service-resolver', 'service-splitter', 'service-router', 'service-intentions'] as const;
export type ConfigKind = (typeof CONFIG_KINDS)[number];

export function isConfigKind(k: unknown): k is ConfigKind {
  return typeof k === 'string' && (CONFIG_KINDS as readonly string[]).includes(k);
}

export const PROTOCOLS = ['tcp', 'http', 'http2', 'grpc'] as const;
export type Protocol = (typeof PROTOCOLS)[number];

/** The one name a proxy-defaults entry may have (Consul's). */
export const PROXY_DEFAULTS_NAME = 'global';

const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'];
/** Envoy's retry conditions, as Consul's `RetryOn` lists them. */
const RETRY_ON = [
  '5xx',
  'gateway-error',
  'reset',
  'connect-failure',
  'envoy-ratelimited',
  'retriable-4xx',
  'refused-stream',
  'cancelled',
  'deadline-exceeded',
  'internal',
  'resource-exhausted',
  'unavailable',
];

const serviceName = z.string().refine(isServiceName, `must be a service name (${SERVICE_NAME_RULE})`);
/** Subset names become part of an SNI name (`<subset>.<service>...`), so they are DNS labels. */
const SUBSET_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const subsetName = z.string().regex(SUBSET_RE, 'must be a subset name (lowercase letters, digits and dashes, at most 63 characters)');
const datacenter = z.string().refine(isDatacenterRef, DATACENTER_REF_MESSAGE);
/** Consul Enterprise's namespace and partition: only the default one exists here. */
const defaultOnly = z.string().refine((v) => v === '' || v === 'default', 'only "default" is supported');
const meta = z.record(z.string(), z.string());

/** Go durations as Consul writes them ("5s", "500ms", "1m30s"). */
const duration = z.string().superRefine((v, ctx) => {
  try {
    parseDuration(v);
  } catch {
    ctx.addIssue({ code: 'custom', message: `"${v}" is not a duration (use e.g. 5s, 500ms, 1m30s)` });
  }
});

/**
 * RE2, as intentions' regexes are (src/intentions/regex.ts says why): a route's PathRegex is run by
 * every client sidecar against every request, so backtracking patterns are refused when written.
 */
const regex = z.string().superRefine((v, ctx) => {
  try {
    RE2JS.compile(v);
  } catch (err) {
    ctx.addIssue({
      code: 'custom',
      message: `not a valid RE2 regular expression (lookarounds and backreferences are not supported): ${(err as Error).message}`,
    });
  }
});

function parsesToNonZero(v: string): boolean {
  try {
    return parseDuration(v) !== 0;
  } catch {
    return false;
  }
}

const nonNegativeInt = z.number().int('must be an integer').min(0, 'must be 0 or more');
/** Envoy's cap on ring_hash's minimum_ring_size and maximum_ring_size. */
const RING_SIZE_CAP = 8 * 1024 * 1024;
const ringSize = nonNegativeInt.max(RING_SIZE_CAP, `must be at most ${RING_SIZE_CAP} (Envoy's cap)`);
const meshGateway = z.strictObject({ Mode: z.enum(['', 'none', 'local', 'remote'], { message: 'must be none, local or remote' }).optional() });

/** Fields every kind has; the indexes are Consul's read-back fields, taken (and ignored) so an entry read can be written back. */
const common = {
  Name: serviceName,
  Namespace: defaultOnly.optional(),
  Partition: defaultOnly.optional(),
  Meta: meta.optional(),
  CreateIndex: z.number().optional(),
  ModifyIndex: z.number().optional(),
};

// ---- proxy-defaults ----

export const proxyDefaultsSchema = z.strictObject({
  ...common,
  Kind: z.literal('proxy-defaults'),
  Name: z.literal(PROXY_DEFAULTS_NAME, { message: `must be "${PROXY_DEFAULTS_NAME}"` }),
  // Free-form as in Consul (it is the proxy's opaque config); `protocol` is the one key read here.
  Config: z.looseObject({ protocol: z.enum(PROTOCOLS, { message: `must be one of ${PROTOCOLS.join(', ')}` }).optional() }).optional(),
  MeshGateway: meshGateway.optional(),
});

// ---- service-defaults ----

const upstreamConfig = {
  Protocol: z.enum(PROTOCOLS, { message: `must be one of ${PROTOCOLS.join(', ')}` }).optional(),
  ConnectTimeoutMs: nonNegativeInt.optional(),
  MeshGateway: meshGateway.optional(),
  Limits: z
    .strictObject({
      MaxConnections: nonNegativeInt.optional(),
      MaxPendingRequests: nonNegativeInt.optional(),
      MaxConcurrentRequests: nonNegativeInt.optional(),
    })
    .optional(),
  PassiveHealthCheck: z
    .strictObject({
      Interval: duration.optional(),
      MaxFailures: nonNegativeInt.optional(),
      EnforcingConsecutive5xx: nonNegativeInt.max(100, 'is a percentage (0 to 100)').optional(),
      MaxEjectionPercent: nonNegativeInt.max(100, 'is a percentage (0 to 100)').optional(),
      BaseEjectionTime: duration.optional(),
    })
    .optional(),
};

export const serviceDefaultsSchema = z.strictObject({
  ...common,
  Kind: z.literal('service-defaults'),
  Protocol: z.enum(PROTOCOLS, { message: `must be one of ${PROTOCOLS.join(', ')}` }).optional(),
  MeshGateway: meshGateway.optional(),
  UpstreamConfig: z
    .strictObject({
      Defaults: z.strictObject(upstreamConfig).optional(),
      Overrides: z.array(z.strictObject({ Name: serviceName, Namespace: defaultOnly.optional(), ...upstreamConfig })).optional(),
    })
    .optional(),
});

// ---- service-resolver ----

const target = z.strictObject({
  Service: serviceName.optional(),
  ServiceSubset: subsetName.optional(),
  Namespace: defaultOnly.optional(),
  Datacenter: datacenter.optional(),
});

export const serviceResolverSchema = z
  .strictObject({
    ...common,
    Kind: z.literal('service-resolver'),
    DefaultSubset: subsetName.optional(),
    Subsets: z.record(subsetName, z.strictObject({ Filter: z.string().optional(), OnlyPassing: z.boolean().optional() })).optional(),
    Redirect: target.optional(),
    Failover: z
      .record(
        z.string().refine((k) => k === '*' || SUBSET_RE.test(k), 'must be "*" or a subset name'),
        z.strictObject({
          Service: serviceName.optional(),
          ServiceSubset: subsetName.optional(),
          Namespace: defaultOnly.optional(),
          Datacenters: z.array(datacenter).optional(),
          Targets: z.array(target).optional(),
        }),
      )
      .optional(),
    ConnectTimeout: duration.optional(),
    RequestTimeout: duration.optional(),
    LoadBalancer: z
      .strictObject({
        Policy: z
          .enum(['', 'round_robin', 'least_request', 'random', 'ring_hash', 'maglev'], {
            message: 'must be round_robin, least_request, random, ring_hash or maglev',
          })
          .optional(),
        // Envoy's bounds: choice_count >= 2 (0 is Consul's unset: Envoy's default of 2), ring sizes <= 8M.
        LeastRequestConfig: z
          .strictObject({ ChoiceCount: nonNegativeInt.refine((n) => n === 0 || n >= 2, 'must be 2 or more (0 means the default, 2)').optional() })
          .optional(),
        RingHashConfig: z.strictObject({ MinimumRingSize: ringSize.optional(), MaximumRingSize: ringSize.optional() }).optional(),
        HashPolicies: z
          .array(
            z.strictObject({
              Field: z.enum(['header', 'cookie', 'query_parameter'], { message: 'must be header, cookie or query_parameter' }).optional(),
              FieldValue: z.string().optional(),
              CookieConfig: z.strictObject({ Session: z.boolean().optional(), TTL: duration.optional(), Path: z.string().optional() }).optional(),
              SourceIP: z.boolean().optional(),
              Terminal: z.boolean().optional(),
            }),
          )
          .optional(),
      })
      .optional(),
  })
  .superRefine((e, ctx) => {
    const subsets = new Set(Object.keys(e.Subsets ?? {}));
    const add = (path: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', path, message });
    if (e.DefaultSubset && !subsets.has(e.DefaultSubset)) add(['DefaultSubset'], `"${e.DefaultSubset}" is not one of the Subsets`);
    if (e.Redirect) {
      const r = e.Redirect;
      if (!r.Service && !r.ServiceSubset && !r.Datacenter) add(['Redirect'], 'names none of Service, ServiceSubset, Datacenter');
      if (subsets.size > 0) add(['Redirect'], 'cannot be set together with Subsets');
      if (e.DefaultSubset) add(['Redirect'], 'cannot be set together with DefaultSubset');
      if (e.Failover) add(['Redirect'], 'cannot be set together with Failover');
    }
    for (const [key, f] of Object.entries(e.Failover ?? {})) {
      if (key !== '*' && !subsets.has(key)) add(['Failover', key], `"${key}" is not one of the Subsets (or "*")`);
      const hasTargets = (f.Targets?.length ?? 0) > 0;
      if (hasTargets && (f.Service || f.ServiceSubset || (f.Datacenters?.length ?? 0) > 0))
        add(['Failover', key, 'Targets'], 'cannot be set together with Service, ServiceSubset or Datacenters');
      if (!hasTargets && !f.Service && !f.ServiceSubset && !(f.Datacenters?.length ?? 0))
        add(['Failover', key], 'names none of Service, ServiceSubset, Datacenters, Targets');
    }
    const lb = e.LoadBalancer;
    if (lb?.HashPolicies?.length && lb.Policy !== 'ring_hash' && lb.Policy !== 'maglev')
      add(['LoadBalancer', 'HashPolicies'], 'only apply with Policy ring_hash or maglev');
    // Consul's rules (ServiceResolverConfigEntry.Validate), each at its field.
    if (lb?.RingHashConfig && lb.Policy !== 'ring_hash') add(['LoadBalancer', 'RingHashConfig'], 'only applies with Policy ring_hash');
    if (lb?.LeastRequestConfig && lb.Policy !== 'least_request') add(['LoadBalancer', 'LeastRequestConfig'], 'only applies with Policy least_request');
    const ring = lb?.RingHashConfig;
    if (ring?.MinimumRingSize && ring.MaximumRingSize && ring.MinimumRingSize > ring.MaximumRingSize)
      add(['LoadBalancer', 'RingHashConfig', 'MinimumRingSize'], `must not be more than MaximumRingSize (${ring.MaximumRingSize})`);
    lb?.HashPolicies?.forEach((h, i) => {
      if (h.Field && h.SourceIP) add(['LoadBalancer', 'HashPolicies', i, 'SourceIP'], 'cannot be set together with Field');
      if (h.SourceIP && h.FieldValue) add(['LoadBalancer', 'HashPolicies', i, 'FieldValue'], 'cannot be set when hashing SourceIP');
      if (!h.Field && !h.SourceIP) add(['LoadBalancer', 'HashPolicies', i, 'Field'], 'is required unless SourceIP is set');
      if (h.Field && !h.FieldValue) add(['LoadBalancer', 'HashPolicies', i, 'FieldValue'], `is required with Field ${h.Field}`);
      if (h.CookieConfig && h.Field !== 'cookie') add(['LoadBalancer', 'HashPolicies', i, 'CookieConfig'], 'only applies with Field cookie');
      if (h.CookieConfig?.Session && h.CookieConfig.TTL && parsesToNonZero(h.CookieConfig.TTL))
        add(['LoadBalancer', 'HashPolicies', i, 'CookieConfig', 'TTL'], 'a session cookie cannot have a TTL');
    });
  });

// ---- service-splitter ----

const headerEdits = z
  .strictObject({
    Add: z.record(z.string(), z.string()).optional(),
    Set: z.record(z.string(), z.string()).optional(),
    Remove: z.array(z.string()).optional(),
  })
  .optional();

export const serviceSplitterSchema = z
  .strictObject({
    ...common,
    Kind: z.literal('service-splitter'),
    Splits: z
      .array(
        z.strictObject({
          Weight: z
            .number()
            .min(0, 'must be between 0 and 100')
            .max(100, 'must be between 0 and 100')
            .refine((w) => Math.abs(w * 100 - Math.round(w * 100)) < 1e-6, 'has at most two decimals'),
          Service: serviceName.optional(),
          ServiceSubset: subsetName.optional(),
          Namespace: defaultOnly.optional(),
          RequestHeaders: headerEdits,
          ResponseHeaders: headerEdits,
        }),
      )
      .min(1, 'at least one split is required'),
  })
  .superRefine((e, ctx) => {
    // In hundredths, as Consul sums them, so that 33.33 + 33.33 + 33.34 is exactly 100.
    const total = e.Splits.reduce((sum, s) => sum + Math.round(s.Weight * 100), 0);
    if (total !== 10_000) ctx.addIssue({ code: 'custom', path: ['Splits'], message: `weights must sum to 100 (they sum to ${total / 100})` });
  });

// ---- service-router ----

const oneOf = (names: string[], value: Record<string, unknown>) => names.filter((k) => value[k] !== undefined);

const headerMatch = z
  .strictObject({
    Name: z.string().min(1, 'is required'),
    Present: z.boolean().optional(),
    Exact: z.string().optional(),
    Prefix: z.string().optional(),
    Suffix: z.string().optional(),
    Regex: regex.optional(),
    Invert: z.boolean().optional(),
  })
  .superRefine((h, ctx) => {
    const set = oneOf(['Present', 'Exact', 'Prefix', 'Suffix', 'Regex'], h);
    if (set.length > 1) ctx.addIssue({ code: 'custom', message: `at most one of Present, Exact, Prefix, Suffix, Regex (${set.join(', ')} given)` });
  });

const queryMatch = z
  .strictObject({ Name: z.string().min(1, 'is required'), Present: z.boolean().optional(), Exact: z.string().optional(), Regex: regex.optional() })
  .superRefine((q, ctx) => {
    const set = oneOf(['Present', 'Exact', 'Regex'], q);
    if (set.length > 1) ctx.addIssue({ code: 'custom', message: `at most one of Present, Exact, Regex (${set.join(', ')} given)` });
  });

const httpMatch = z
  .strictObject({
    PathExact: z.string().startsWith('/', 'must start with /').optional(),
    PathPrefix: z.string().startsWith('/', 'must start with /').optional(),
    PathRegex: regex.optional(),
    CaseInsensitive: z.boolean().optional(),
    Header: z.array(headerMatch).optional(),
    QueryParam: z.array(queryMatch).optional(),
    Methods: z
      .array(z.string().refine((m) => HTTP_METHODS.includes(m), `must be one of ${HTTP_METHODS.join(', ')}`))
      .refine((ms) => new Set(ms).size === ms.length, 'lists a method twice')
      .optional(),
  })
  .superRefine((m, ctx) => {
    const set = oneOf(['PathExact', 'PathPrefix', 'PathRegex'], m);
    if (set.length > 1) ctx.addIssue({ code: 'custom', message: `at most one of PathExact, PathPrefix, PathRegex (${set.join(', ')} given)` });
  });

export const serviceRouterSchema = z
  .strictObject({
    ...common,
    Kind: z.literal('service-router'),
    Routes: z
      .array(
        z.strictObject({
          Match: z.strictObject({ HTTP: httpMatch.optional() }).optional(),
          Destination: z
            .strictObject({
              Service: serviceName.optional(),
              ServiceSubset: subsetName.optional(),
              Namespace: defaultOnly.optional(),
              PrefixRewrite: z.string().optional(),
              RequestTimeout: duration.optional(),
              IdleTimeout: duration.optional(),
              NumRetries: nonNegativeInt.optional(),
              RetryOnConnectFailure: z.boolean().optional(),
              RetryOn: z.array(z.string().refine((r) => RETRY_ON.includes(r), `must be one of ${RETRY_ON.join(', ')}`)).optional(),
              RetryOnStatusCodes: z
                .array(z.number().int('must be an integer').min(100, 'must be an HTTP status').max(599, 'must be an HTTP status'))
                .optional(),
              RequestHeaders: headerEdits,
              ResponseHeaders: headerEdits,
            })
            .optional(),
        }),
      )
      .optional(),
  })
  .superRefine((e, ctx) => {
    e.Routes?.forEach((r, i) => {
      const http = r.Match?.HTTP;
      if (r.Destination?.PrefixRewrite !== undefined && !http?.PathExact && !http?.PathPrefix)
        ctx.addIssue({ code: 'custom', path: ['Routes', i, 'Destination', 'PrefixRewrite'], message: 'requires Match.HTTP.PathExact or PathPrefix' });
    });
  });

export type ProxyDefaults = z.output<typeof proxyDefaultsSchema>;
export type ServiceDefaults = z.output<typeof serviceDefaultsSchema>;
export type ServiceResolver = z.output<typeof serviceResolverSchema>;
export type ServiceSplitter = z.output<typeof serviceSplitterSchema>;
export type ServiceRouter = z.output<typeof serviceRouterSchema>;
/** An entry as stored and answered (with Consul's indexes in answers). */
// service-intentions is parsed here with the other kinds but stored as intentions (src/intentions/service-intentions.ts).
export type ConfigEntry = ProxyDefaults | ServiceDefaults | ServiceResolver | ServiceSplitter | ServiceRouter | ServiceIntentions;

/** Each kind's entry type, for reads by kind. */
export interface ConfigEntryByKind {
  'proxy-defaults': ProxyDefaults;
  'service-defaults': ServiceDefaults;
  'service-resolver': ServiceResolver;
  'service-splitter': ServiceSplitter;
  'service-router': ServiceRouter;
  'service-intentions': ServiceIntentions;
}

export const CONFIG_SCHEMAS: Record<ConfigKind, z.ZodType<ConfigEntry>> = {
  'proxy-defaults': proxyDefaultsSchema,
  'service-defaults': serviceDefaultsSchema,
  'service-resolver': serviceResolverSchema,
  'service-splitter': serviceSplitterSchema,
  'service-router': serviceRouterSchema,
  'service-intentions': serviceIntentionsSchema,
};

function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? String(p) : `.${String(p)}`;
  return out;
}

/** Every issue with its field path; an unknown field is one violation naming that field. */
function violationsOf(error: z.ZodError): Violation[] {
  return error.issues.flatMap((i) =>
    i.code === 'unrecognized_keys'
      ? i.keys.map((k) => ({ Field: fieldPath([...i.path, k]), Message: 'is not a field of this kind' }))
      : [{ Field: fieldPath(i.path) || 'body', Message: i.message }],
  );
}

/** Parses a body as the config entry its `Kind` names, or throws ISTHMUS_ERR_INVALID listing every violation. */
export function parseConfigEntry(body: unknown): ConfigEntry {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw invalid([{ Field: 'body', Message: 'must be a config entry (a JSON object)' }]);
  const kind = (body as { Kind?: unknown }).Kind;
  if (!isConfigKind(kind)) {
    throw invalid([{ Field: 'Kind', Message: kind === undefined ? 'is required' : `must be one of ${CONFIG_KINDS.join(', ')}` }]);
  }
  const r = CONFIG_SCHEMAS[kind].safeParse(body);
  if (!r.success) throw invalid(violationsOf(r.error));
  const { CreateIndex: _c, ModifyIndex: _m, ...entry } = r.data as ConfigEntry;
  return entry as ConfigEntry;
}

/** The protocol a service speaks: its service-defaults, else proxy-defaults' `Config.protocol`, else tcp (Consul's order). */
export function protocolOf(
  service: string,
  lookup: { serviceDefaults(name: string): ServiceDefaults | undefined; proxyDefaults(): ProxyDefaults | undefined },
): Protocol {
  return lookup.serviceDefaults(service)?.Protocol ?? lookup.proxyDefaults()?.Config?.protocol ?? 'tcp';
}

/**
 * The protocol the config entries give a service, and which entry gave it; undefined when neither
 * service-defaults nor proxy-defaults sets one (the caller then asks the catalog, or defaults to tcp).
 */
export function protocolSourceOf(
  service: string,
  lookup: { serviceDefaults(name: string): ServiceDefaults | undefined; proxyDefaults(): ProxyDefaults | undefined },
): { protocol: Protocol; from: 'service-defaults' | 'proxy-defaults' } | undefined {
  const own = lookup.serviceDefaults(service)?.Protocol;
  if (own) return { protocol: own, from: 'service-defaults' };
  const global = lookup.proxyDefaults()?.Config?.protocol;
  if (global) return { protocol: global, from: 'proxy-defaults' };
  return undefined;
}

/** Consul's words for a router or splitter in front of a service that speaks tcp. */
export function protocolRefusal(service: string, protocol: Protocol): string {
  return `discovery chain "${service}" uses a protocol "${protocol}" that does not permit advanced routing or splitting behavior`;
}
