// A request's hash for ring_hash and maglev, from the resolver's HashPolicies as Envoy computes it:
// the policies in order, each one that yields a value folded in (hash = rotl(hash, 1) XOR h), until
// a Terminal one once there is a hash. Values are hashed with xxHash64, as Envoy hashes them.
import type { ChainResolverNode } from '../config-entries/index.js';
import { parseDuration } from '../core/duration.js';
import { xxHash64 } from '../core/xxhash64.js';

type HashPolicy = NonNullable<NonNullable<ChainResolverNode['LoadBalancer']>['HashPolicies']>[number];

/** What the balancer sees of a request (a tcp connection has only `sourceIp`). */
export interface LbRequest {
  headers: Record<string, string | string[] | undefined>;
  /** The request target as sent (path and query). */
  path?: string;
  /** The caller's address (the local app's), without the port. */
  sourceIp?: string;
  /**
   * The downstream connection's addresses: a cookie the sidecar makes up is named after them, as
   * Envoy names it, so requests racing on one connection get the same cookie. Random without.
   */
  connection?: string;
}

export interface RequestHash {
  /** Undefined when no policy yielded a value (the balancer then draws one at random, as Envoy does). */
  hash: bigint | undefined;
  /** `Set-Cookie` values for the answer: cookies a policy with CookieConfig made up. */
  setCookies: string[];
}

const M64 = 0xffffffffffffffffn;

export function requestHash(policies: HashPolicy[], req: LbRequest): RequestHash {
  let hash: bigint | undefined;
  const setCookies: string[] = [];
  for (const p of policies) {
    const h = policyHash(p, req, setCookies);
    if (h !== undefined) hash = hash === undefined ? h : (((hash << 1n) | (hash >> 63n)) & M64) ^ h;
    // Envoy stops at a Terminal policy once any policy so far has yielded a hash.
    if (p.Terminal && hash !== undefined) break;
  }
  return { hash, setCookies };
}

function policyHash(p: HashPolicy, req: LbRequest, setCookies: string[]): bigint | undefined {
  if (p.SourceIP) return req.sourceIp ? xxHash64(req.sourceIp) : undefined;
  const name = p.FieldValue ?? '';
  if (p.Field === 'header') {
    const v = first(req.headers[name.toLowerCase()]);
    return v === undefined ? undefined : xxHash64(v);
  }
  if (p.Field === 'query_parameter') {
    const q = req.path?.indexOf('?') ?? -1;
    if (q < 0) return undefined;
    const v = new URLSearchParams(req.path!.slice(q + 1)).get(name);
    return v === null ? undefined : xxHash64(v);
  }
  if (p.Field === 'cookie') {
    const v = cookieValue(req.headers.cookie, name);
    if (v) return xxHash64(v);
    const cc = p.CookieConfig;
    // Consul hands Envoy a ttl only for a TTL or Session (zero): only then is a cookie made up.
    if (!cc || (!cc.Session && !ttlMs(cc.TTL))) return undefined;
    const made = madeUpCookieValue(req.connection);
    // Envoy's Max-Age is whole seconds: a TTL under one second makes a session cookie too.
    setCookies.push(setCookieValue(name, made, cc.Path ?? '', cc.Session ? 0 : Math.floor(ttlMs(cc.TTL) / 1000)));
    return xxHash64(made);
  }
  return undefined;
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** Envoy's parseCookieValue: the first `name=value` among the Cookie headers' pairs, quotes taken off. */
export function cookieValue(header: string | string[] | undefined, name: string): string | undefined {
  for (const line of Array.isArray(header) ? header : header === undefined ? [] : [header]) {
    for (const pair of line.split(';')) {
      const eq = pair.indexOf('=');
      if (eq < 0 || pair.slice(0, eq).trim() !== name) continue;
      const v = pair.slice(eq + 1).trim();
      return v.length >= 2 && v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v;
    }
  }
  return undefined;
}

function ttlMs(ttl: string | undefined): number {
  if (!ttl) return 0;
  try {
    return parseDuration(ttl);
  } catch {
    return 0;
  }
}

/** Envoy's: the hex xxHash64 of the downstream connection's remote and local addresses. */
function madeUpCookieValue(connection: string | undefined): string {
  const seed = connection ?? `${Math.random()}/${Date.now()}`;
  return xxHash64(seed).toString(16).padStart(16, '0');
}

/**
 * Envoy's makeSetCookieValue: the value quoted, Max-Age only when not zero (zero: a session
 * cookie), Path when set, HttpOnly always.
 */
export function setCookieValue(name: string, value: string, path: string, maxAgeSeconds: number): string {
  let s = `${name}="${value}"`;
  if (maxAgeSeconds > 0) s += `; Max-Age=${maxAgeSeconds}`;
  if (path) s += `; Path=${path}`;
  return `${s}; HttpOnly`;
}
