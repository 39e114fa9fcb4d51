// The catalog's records (as kept in the Store) and the schemas of what clients send.
import { z } from 'zod';
import { parseDuration } from '../core/duration.js';
import { DATACENTER_REF_MESSAGE, DATACENTER_REF_RE, SERVICE_NAME_RE, SERVICE_NAME_RULE } from '../core/names.js';

export const NODES = 'nodes';
export const SERVICES = 'services';
export const CHECKS = 'checks';

export type HealthStatus = 'passing' | 'warning' | 'critical';
export type ServiceKind = '' | 'connect-proxy' | 'mesh-gateway';

export interface NodeRecord {
  Node: string;
  Address: string;
  Datacenter: string;
  Meta: Record<string, string>;
  TaggedAddresses: Record<string, string>;
}

export interface Upstream {
  DestinationName: string;
  DestinationNamespace?: string;
  DestinationType?: string;
  Datacenter?: string;
  LocalBindAddress?: string;
  LocalBindPort: number;
  /** Opaque proxy settings; Isthmus reads `failover` (datacenter names, tried in order). */
  Config?: Record<string, unknown>;
}

export interface ProxyConfig {
  DestinationServiceName?: string;
  DestinationServiceID?: string;
  LocalServiceAddress?: string;
  LocalServicePort?: number;
  Upstreams?: Upstream[];
  Mode?: string;
  Config?: Record<string, unknown>;
}

export interface ServiceRecord {
  Node: string;
  ID: string;
  Service: string;
  Namespace: string;
  Tags: string[];
  Address: string;
  Port: number;
  Meta: Record<string, string>;
  Kind: ServiceKind;
  Proxy?: ProxyConfig;
  TaggedAddresses?: Record<string, unknown>;
  /** The sidecar registered along with this service, if any. */
  SidecarID?: string;
}

export interface CheckDefinition {
  TTL?: number;
  HTTP?: string;
  Method?: string;
  Header?: Record<string, string[]>;
  Body?: string;
  TCP?: string;
  /** Alias checks: the instance (ID, not name) whose health this check mirrors, and its node. */
  AliasService?: string;
  AliasNode?: string;
  Interval?: number;
  Timeout?: number;
  DeregisterCriticalServiceAfter?: number;
}

export interface CheckRecord {
  Node: string;
  CheckID: string;
  Name: string;
  Status: HealthStatus;
  Notes: string;
  Output: string;
  ServiceID: string;
  ServiceName: string;
  ServiceTags: string[];
  Namespace: string;
  Type: 'ttl' | 'http' | 'tcp' | 'alias' | '';
  Definition: CheckDefinition;
}

export const NAME_RE = SERVICE_NAME_RE;
const NAME_MSG = `must be ${SERVICE_NAME_RULE}`;
export const serviceName = z.string().regex(NAME_RE, NAME_MSG);
/**
 * IDs of services, checks and nodes: they name keys, paths (`/v1/agent/service/deregister/:id`)
 * and log lines, so only letters, digits and `_ . : @ = + ~ -`, and never "..".
 */
const idString = z
  .string()
  .min(1, 'must not be empty')
  .max(128, 'at most 128 characters')
  .refine(
    (v) => /^[A-Za-z0-9_.:@=+~-]*$/.test(v) && !v.includes('..'),
    'must be letters, digits and _ . : @ = + ~ - only (no slashes, "..", spaces or control characters)',
  );
const port = z.number({ message: 'must be a number' }).int('must be a whole number').min(0, 'must be 0..65535').max(65535, 'must be 0..65535');
/** Consul's bounds on meta: at most 64 pairs, keys of up to 128 word characters, values of up to 512. */
const stringMap = z
  .record(
    z.string().regex(/^[A-Za-z0-9_-]{1,128}$/, 'keys must be 1-128 letters, digits, dashes or underscores'),
    z.string({ message: 'values must be strings' }).max(512, 'values must be at most 512 characters'),
  )
  .refine((m) => Object.keys(m).length <= 64, 'at most 64 entries');
/** Free text that ends up in answers and logs: no control characters (no CR/LF to smuggle lines). */
const plainText = (max: number) =>
  z
    .string()
    .max(max, `at most ${max} characters`)
    .refine((v) => !/[\u0000-\u001f\u007f]/.test(v), 'must not contain control characters');
/** A host name or IP address (not checked further: Consul takes any); no spaces, slashes or control characters. */
const address = z
  .string()
  .max(255, 'at most 255 characters')
  .refine((v) => !/[\s/\\\u0000-\u001f\u007f]/.test(v), 'must be a host name or IP address');

/** The longest check duration: what one Node timer can wait (2^31-1 ms); longer ones would fire at once. */
export const MAX_CHECK_DURATION_MS = 576 * 3_600_000;

/** Durations as Consul takes them: "10s" strings, or integers in nanoseconds (Go's encoding). */
export const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  let ms: number;
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v < 0) {
      ctx.addIssue({ code: 'custom', message: 'must be a non-negative duration' });
      return z.NEVER;
    }
    ms = Math.round(v / 1e6);
  } else {
    try {
      ms = parseDuration(v);
    } catch {
      ctx.addIssue({ code: 'custom', message: `"${v.length > 64 ? `${v.slice(0, 64)}...` : v}" is not a duration (e.g. 10s, 1m30s)` });
      return z.NEVER;
    }
  }
  if (ms > MAX_CHECK_DURATION_MS) {
    ctx.addIssue({ code: 'custom', message: 'must be at most 576h (24 days)' });
    return z.NEVER;
  }
  return ms;
});

const checkFields = z
  .object({
    CheckID: idString.optional(),
    ID: idString.optional(),
    Name: z.string().max(256).optional(),
    Notes: z.string().max(1024).optional(),
    ServiceID: idString.optional(),
    Status: z.enum(['passing', 'warning', 'critical'], { message: 'must be passing, warning or critical' }).optional(),
    TTL: duration.optional(),
    HTTP: z
      .string()
      .url('must be an http:// or https:// URL')
      .refine((u) => /^https?:\/\//.test(u), 'must be an http:// or https:// URL')
      .optional(),
    Method: z
      .string()
      .regex(/^[A-Z]+$/, 'must be an HTTP method')
      .optional(),
    Header: z.record(z.string(), z.array(z.string())).optional(),
    Body: z.string().optional(),
    TCP: z
      .string()
      .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'must be host:port')
      .optional(),
    AliasService: idString.optional(),
    AliasNode: idString.optional(),
    Interval: duration.optional(),
    Timeout: duration.optional(),
    DeregisterCriticalServiceAfter: duration.optional(),
    TLSSkipVerify: z.boolean().optional(),
  })
  .passthrough();

/** Checks of catalog registrations may carry only a status (external checks); agent checks need a kind. */
export const catalogCheckSchema = checkFields;

export const checkSchema = checkFields.superRefine((c, ctx) => {
  const kinds = ['TTL', 'HTTP', 'TCP', 'Alias'].filter((k) =>
    k === 'Alias' ? c.AliasService !== undefined || c.AliasNode !== undefined : (c as Record<string, unknown>)[k] !== undefined,
  );
  if (kinds.length !== 1) ctx.addIssue({ code: 'custom', message: 'exactly one of TTL, HTTP, TCP, AliasService/AliasNode must be set', path: [] });
  if ((c.HTTP !== undefined || c.TCP !== undefined) && c.Interval === undefined)
    ctx.addIssue({ code: 'custom', message: 'is required for HTTP and TCP checks', path: ['Interval'] });
  if (c.Interval !== undefined && c.Interval < 100) ctx.addIssue({ code: 'custom', message: 'must be at least 100ms', path: ['Interval'] });
});

export type CheckInput = z.infer<typeof checkSchema>;

const upstreamSchema = z
  .object({
    DestinationName: serviceName,
    DestinationNamespace: z.string().optional(),
    DestinationType: z.enum(['service', 'prepared_query']).optional(),
    Datacenter: z.string().regex(DATACENTER_REF_RE, DATACENTER_REF_MESSAGE).optional(),
    LocalBindAddress: z.string().optional(),
    LocalBindPort: port,
    // Isthmus' failover order: {"failover": ["dc2", "dc3"]}, the DCs tried in turn when the
    // upstream's own DC has no healthy instance.
    Config: z
      .object({
        failover: z
          .array(z.string().regex(DATACENTER_REF_RE, DATACENTER_REF_MESSAGE), { message: 'must be a list of datacenter names' })
          .max(16, 'at most 16 datacenters')
          .optional(),
      })
      .catchall(z.unknown())
      .optional(),
  })
  .passthrough();

const proxySchema = z
  .object({
    DestinationServiceName: serviceName.optional(),
    DestinationServiceID: idString.optional(),
    LocalServiceAddress: z.string().optional(),
    LocalServicePort: port.optional(),
    Upstreams: z.array(upstreamSchema).optional(),
    Mode: z.string().optional(),
    Config: z.record(z.string(), z.unknown()).optional(),
  })
  .passthrough();

const baseService = {
  ID: idString.optional(),
  Name: serviceName,
  Namespace: z.string().regex(NAME_RE, NAME_MSG).optional(),
  Tags: z.array(plainText(256)).max(64, 'at most 64 tags').optional(),
  Address: address.optional(),
  Port: port.optional(),
  Meta: stringMap.optional(),
  Kind: z.enum(['', 'connect-proxy', 'mesh-gateway'], { message: 'must be "", connect-proxy or mesh-gateway' }).optional(),
  Proxy: proxySchema.optional(),
  TaggedAddresses: z.record(z.string(), z.unknown()).optional(),
  Check: checkSchema.optional(),
  Checks: z.array(checkSchema).optional(),
  EnableTagOverride: z.boolean().optional(),
  Weights: z.unknown().optional(),
};

const sidecarSchema = z.object({ ...baseService, Name: serviceName.optional() }).passthrough();

export const serviceSchema = z
  .object({
    ...baseService,
    Connect: z.object({ SidecarService: sidecarSchema.optional(), Native: z.boolean().optional() }).passthrough().optional(),
  })
  .passthrough()
  .superRefine((s, ctx) => {
    if (s.Kind === 'connect-proxy' && !s.Proxy?.DestinationServiceName) {
      ctx.addIssue({ code: 'custom', message: 'is required for a connect-proxy', path: ['Proxy', 'DestinationServiceName'] });
    }
  });

export type ServiceInput = z.infer<typeof serviceSchema>;

export const catalogRegisterSchema = z
  .object({
    ID: idString.optional(),
    Node: idString,
    Address: address.pipe(z.string().min(1, 'is required')),
    Datacenter: z.string().regex(DATACENTER_REF_RE, DATACENTER_REF_MESSAGE).optional(),
    NodeMeta: stringMap.optional(),
    TaggedAddresses: z.record(z.string(), z.string()).optional(),
    Service: z
      .object({ ...baseService, Name: serviceName.optional(), Service: serviceName.optional() })
      .passthrough()
      .superRefine((s, ctx) => {
        if (!s.Name && !s.Service) ctx.addIssue({ code: 'custom', message: 'is required', path: ['Service'] });
      })
      .optional(),
    Check: catalogCheckSchema.optional(),
    Checks: z.array(catalogCheckSchema).optional(),
    SkipNodeUpdate: z.boolean().optional(),
  })
  .passthrough();

export const catalogDeregisterSchema = z
  .object({
    Node: idString,
    Datacenter: z.string().regex(DATACENTER_REF_RE, DATACENTER_REF_MESSAGE).optional(),
    ServiceID: idString.optional(),
    CheckID: idString.optional(),
  })
  .passthrough();
