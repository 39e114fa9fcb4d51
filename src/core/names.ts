// The names the mesh puts on the wire (DESIGN.md, "Names"), built and read here and nowhere else:
// SNI and SPIFFE IDs of services and servers, the datacenter and service name rules, host:port, and
// the masking of credentials in URLs.

// ---- name rules ----

/**
 * A datacenter's own name, as a DC is named (config, join tokens, `--dc`): a DNS label in lowercase.
 * It is a label of every SNI and DNS name of that DC, so it starts and ends with a letter or digit.
 */
export const DATACENTER_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** The rule in words, for messages: `must be ${DATACENTER_NAME_RULE} (e.g. dc1)`. */
export const DATACENTER_NAME_RULE = 'lowercase letters, digits and dashes, at most 63 characters';

export function isDatacenterName(s: unknown): s is string {
  return typeof s === 'string' && DATACENTER_NAME_RE.test(s);
}

/**
 * The looser shape taken where a DC is only referred to (ACL policies, failover lists, hellos): it
 * admits every datacenter name, and a few no DC can have (a leading or trailing dash), which then
 * match nothing. Kept apart so those inputs accept what they always did.
 */
export const DATACENTER_REF_RE = /^[a-z0-9-]{1,63}$/;
/** The message of a refused reference. */
export const DATACENTER_REF_MESSAGE = 'must be a datacenter name';

export function isDatacenterRef(s: unknown): s is string {
  return typeof s === 'string' && DATACENTER_REF_RE.test(s);
}

/** Service and namespace names: a label of the service's SNI, so at most 63 characters. */
export const SERVICE_NAME_RE = /^[a-zA-Z0-9]([a-zA-Z0-9_-]{0,62})$/;
/** The rule in words, for messages: `must be a service name (${SERVICE_NAME_RULE})`. */
export const SERVICE_NAME_RULE = 'letters, digits, dashes and underscores, starting with a letter or digit, at most 63 characters';

export function isServiceName(s: unknown): s is string {
  return typeof s === 'string' && SERVICE_NAME_RE.test(s);
}

/** Trust domains (`<cluster-id>.isthmus`): lowercase letters, digits, dots and dashes. */
export const TRUST_DOMAIN_RE = /^[a-z0-9.-]+$/;

// ---- SNI ----

export interface ServiceSni {
  kind: 'service';
  service: string;
  namespace: string;
  dc: string;
  subset?: string;
  trustDomain: string;
}

export interface ServerSni {
  kind: 'server';
  dc: string;
  trustDomain: string;
}

export interface InvalidSni {
  kind: 'invalid';
  reason: string;
}

export type SniName = ServiceSni | ServerSni;

/** The SNI of service traffic: `[<subset>.]<service>.<ns>.<dc>.internal.<trust-domain>`. */
export function serviceSni(n: Omit<ServiceSni, 'kind'>): string {
  return `${n.subset ? `${n.subset}.` : ''}${n.service}.${n.namespace}.${n.dc}.internal.${n.trustDomain}`;
}

/** The SNI of control-plane traffic between DCs, and the DNS name of a server's certificate: `server.<dc>.<trust-domain>`. */
export function serverSni(n: Omit<ServerSni, 'kind'>): string {
  return `server.${n.dc}.${n.trustDomain}`;
}

const LABEL_RE = /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})$/;

/**
 * Parses an SNI of the mesh in `trustDomain` (the trust domain is a suffix of several labels, so it
 * must be known to split the name without guessing). Names of another trust domain, or of no shape
 * the mesh uses, come back as `invalid` with the reason.
 */
export function parseSni(sni: string, trustDomain: string): SniName | InvalidSni {
  const td = trustDomain.toLowerCase();
  const lower = sni.toLowerCase();
  if (!lower.endsWith(`.${td}`) || lower.length === td.length + 1) {
    return { kind: 'invalid', reason: `SNI ${sni} is not in trust domain ${trustDomain}` };
  }
  const labels = sni.slice(0, sni.length - td.length - 1).split('.');
  if (!labels.every((l) => LABEL_RE.test(l))) return { kind: 'invalid', reason: `SNI ${sni} has an empty or malformed label` };
  const last = labels[labels.length - 1].toLowerCase();
  if (last === 'internal' && labels.length === 4) {
    return { kind: 'service', service: labels[0], namespace: labels[1], dc: labels[2].toLowerCase(), trustDomain };
  }
  if (last === 'internal' && labels.length === 5) {
    return { kind: 'service', subset: labels[0], service: labels[1], namespace: labels[2], dc: labels[3].toLowerCase(), trustDomain };
  }
  if (labels.length === 2 && labels[0].toLowerCase() === 'server') return { kind: 'server', dc: labels[1].toLowerCase(), trustDomain };
  return {
    kind: 'invalid',
    reason: `SNI ${sni} is neither <service>.<ns>.<dc>.internal.<trust-domain>, <subset>.<service>.<ns>.<dc>.internal.<trust-domain> nor server.<dc>.<trust-domain>`,
  };
}

// ---- SPIFFE IDs ----

export interface ServiceSpiffeId {
  trustDomain: string;
  namespace: string;
  dc: string;
  service: string;
}

export interface ServerSpiffeId {
  trustDomain: string;
  dc: string;
}

/** `spiffe://<trust-domain>`: the trust domain's own ID, the URI SAN of its CA certificates. */
export function trustDomainSpiffeId(trustDomain: string): string {
  return `spiffe://${trustDomain}`;
}

/** `spiffe://<trust-domain>/ns/<ns>/dc/<dc>/svc/<service>`: the URI SAN of every service leaf. */
export function serviceSpiffeId(id: ServiceSpiffeId): string {
  return `spiffe://${id.trustDomain}/ns/${id.namespace}/dc/${id.dc}/svc/${id.service}`;
}

/** `spiffe://<trust-domain>/agent/server/dc/<dc>`: the URI SAN of a DC's servers. */
export function serverSpiffeId(id: ServerSpiffeId): string {
  return `spiffe://${id.trustDomain}/agent/server/dc/${id.dc}`;
}

const SERVICE_ID_RE = /^spiffe:\/\/([a-z0-9.-]+)\/ns\/([A-Za-z0-9_-]+)\/dc\/([a-z0-9-]+)\/svc\/([A-Za-z0-9_-]+)$/;
const SERVER_ID_RE = /^spiffe:\/\/([a-z0-9.-]+)\/agent\/server\/dc\/([a-z0-9-]+)$/;

export function parseServiceSpiffeId(uri: string): ServiceSpiffeId | undefined {
  const m = SERVICE_ID_RE.exec(uri);
  return m ? { trustDomain: m[1], namespace: m[2], dc: m[3], service: m[4] } : undefined;
}

export function parseServerSpiffeId(uri: string): ServerSpiffeId | undefined {
  const m = SERVER_ID_RE.exec(uri);
  return m ? { trustDomain: m[1], dc: m[2] } : undefined;
}

/** The DNS SAN of a service leaf, Consul's `<service>.svc.<ns>.<dc>.<trust-domain>`. */
export function serviceDnsName(id: ServiceSpiffeId): string {
  return `${id.service}.svc.${id.namespace}.${id.dc}.${id.trustDomain}`;
}

/** The URIs of a certificate's subjectAltName as Node writes it ("DNS:a, URI:spiffe://..."). */
export function uriSans(subjectAltName: string | undefined): string[] {
  const out: string[] = [];
  for (const part of (subjectAltName ?? '').split(/,\s*/)) if (part.startsWith('URI:')) out.push(part.slice(4));
  return out;
}

/** The first SPIFFE URI of a subjectAltName, or undefined. */
export function spiffeIdOfSan(subjectAltName: string | undefined): string | undefined {
  if (!subjectAltName) return undefined;
  for (const part of subjectAltName.split(/,\s*/)) if (part.startsWith('URI:spiffe://')) return part.slice(4);
  return undefined;
}

// ---- host:port ----

export interface HostPort {
  host: string;
  port: number;
}

export interface HostPortRules {
  /** Also take port 0: a listen address, where the system picks a free port. */
  portZero?: boolean;
  /**
   * `any` (the default): a host of anything but spaces, colons and brackets, as a dialer takes it.
   * `address`: letters, digits, dots and dashes only, as configuration writes its addresses.
   * Both take a bracketed IPv6 literal.
   */
  host?: 'any' | 'address';
}

export type HostPortProblem = 'not host:port' | 'port out of range';

const ANY_HOST_PORT_RE = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/;
const ADDRESS_HOST_PORT_RE = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/;

/** "host:port" or "[v6]:port" -> the host (without brackets) and port, or what is wrong with it. */
export function readHostPort(addr: string, rules: HostPortRules = {}): HostPort | { problem: HostPortProblem } {
  const m = (rules.host === 'address' ? ADDRESS_HOST_PORT_RE : ANY_HOST_PORT_RE).exec(addr);
  if (!m) return { problem: 'not host:port' };
  const port = Number(m[3]);
  if (port > 65535 || (port === 0 && !rules.portZero)) return { problem: 'port out of range' };
  return { host: m[1] ?? m[2], port };
}

/** "host:port" or "[v6]:port" -> host and port; undefined when it is neither (or the port is not 1..65535, 0 too with `portZero`). */
export function parseHostPort(addr: string, rules: HostPortRules = {}): HostPort | undefined {
  const r = readHostPort(addr, rules);
  return 'problem' in r ? undefined : r;
}

export function isHostPort(addr: unknown, rules: HostPortRules = {}): addr is string {
  return typeof addr === 'string' && parseHostPort(addr, rules) !== undefined;
}

/** host and port -> "host:port", with an IPv6 host in brackets. */
export function formatHostPort(t: HostPort): string {
  return t.host.includes(':') ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}

// ---- credentials in URLs ----

export const REDACTED = '*****';

/** One URL with its password masked: redis://user:pass@host -> redis://user:*****@host. */
export function redactUrl(url: string): string {
  return url.replace(/(\/\/[^:/@]*:)[^@]+@/, `$1${REDACTED}@`);
}

/** Every `scheme://user:pass@` in free text (a log line, an error message) with its password masked. */
export function redactUrlsIn(text: string): string {
  return text.replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:)[^@\s]+@/gi, `$1${REDACTED}@`);
}
