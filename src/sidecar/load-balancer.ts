// How a call orders a target's endpoints: the resolver's LoadBalancer, Envoy's lb policies as Consul
// configures them (round_robin, random, least_request, ring_hash, maglev). The first endpoint is the
// pick; the rest, each at most once, are where a failed connect or a retry goes next.
import type { ChainResolverNode } from '../config-entries/index.js';
import { xxHash64 } from '../core/xxhash64.js';
import { requestHash, type LbRequest } from './load-balancer-hash.js';
import type { SidecarEndpoint } from './sidecar-config.js';

export { requestHash, type LbRequest, type RequestHash } from './load-balancer-hash.js';

export type LoadBalancer = NonNullable<ChainResolverNode['LoadBalancer']>;

/** Orders one target's usable endpoints for one call. */
export type EndpointOrder = (targetId: string, endpoints: SidecarEndpoint[]) => SidecarEndpoint[];

/** Envoy's ring_hash defaults (`minimum_ring_size`, `maximum_ring_size`, the latter also its cap). */
export const RING_MIN_DEFAULT = 1024;
export const RING_MAX_DEFAULT = 8 * 1024 * 1024;
/** Envoy's maglev table_size default: a prime, so every skip walks the whole table. */
export const MAGLEV_TABLE_SIZE = 65_537;
/** Envoy's least_request choice_count default. */
export const LEAST_REQUEST_CHOICES = 2;
/** Hash tables kept per upstream: an ejection and its end swap between two endpoint sets. */
const TABLE_CACHE = 16;

/** A built ring or maglev table over one endpoint set. */
interface HashTable {
  eps: SidecarEndpoint[];
  /** The endpoint indexes from a request hash on, each once. */
  order(hash: bigint): number[];
}

/** The balancer one upstream keeps: its hash tables by endpoint set and its in-flight counts. */
export class EndpointBalancer {
  readonly #tables = new Map<string, HashTable>();
  readonly #active = new Map<string, number>();

  constructor(
    private readonly keyOf: (ep: SidecarEndpoint) => string,
    private readonly random: () => number = Math.random,
  ) {}

  /**
   * The ordering one call uses for every target of its plan, and the cookies its answer sets (a
   * cookie hash policy with no cookie yet). `rotate` is the upstream's round-robin counter.
   */
  forCall(lb: LoadBalancer | undefined, req: LbRequest | undefined, rotate: number): { order: EndpointOrder; setCookies: string[] } {
    const policy = lb?.Policy || 'round_robin';
    if (policy === 'ring_hash' || policy === 'maglev') {
      const h = requestHash(lb?.HashPolicies ?? [], req ?? { headers: {} });
      // Envoy: a request that yields no hash gets a random one.
      const hash = h.hash ?? randomHash(this.random);
      return { order: (id, eps) => this.hashed(policy, lb, id, eps, hash), setCookies: h.setCookies };
    }
    if (policy === 'random') return { order: (_, eps) => shuffle(eps, this.random), setCookies: [] };
    if (policy === 'least_request') {
      const choices = lb?.LeastRequestConfig?.ChoiceCount || LEAST_REQUEST_CHOICES;
      return { order: (id, eps) => this.leastRequest(id, eps, choices, rotate), setCookies: [] };
    }
    return { order: (_, eps) => eps.map((__, k) => eps[(rotate + k) % eps.length]), setCookies: [] };
  }

  /** A request attempt went out to an endpoint (least_request counts them). */
  started(targetId: string, ep: SidecarEndpoint): void {
    const k = `${targetId}\n${this.keyOf(ep)}`;
    this.#active.set(k, (this.#active.get(k) ?? 0) + 1);
  }

  /** That attempt is over (answered in full, failed or abandoned). */
  finished(targetId: string, ep: SidecarEndpoint): void {
    const k = `${targetId}\n${this.keyOf(ep)}`;
    const n = (this.#active.get(k) ?? 0) - 1;
    if (n > 0) this.#active.set(k, n);
    else this.#active.delete(k);
  }

  active(targetId: string, ep: SidecarEndpoint): number {
    return this.#active.get(`${targetId}\n${this.keyOf(ep)}`) ?? 0;
  }

  /**
   * Envoy's least_request with equal weights: the fewest in flight of ChoiceCount endpoints drawn at
   * random (with replacement, as Envoy draws). The rest follow by fewest in flight, ties in rotation.
   */
  private leastRequest(targetId: string, eps: SidecarEndpoint[], choices: number, rotate: number): SidecarEndpoint[] {
    if (eps.length <= 1) return eps;
    const counts = eps.map((ep) => this.active(targetId, ep));
    let pick = -1;
    for (let c = 0; c < choices; c++) {
      const i = Math.floor(this.random() * eps.length);
      if (pick < 0 || counts[i] < counts[pick]) pick = i;
    }
    const rest = eps
      .map((_, k) => (rotate + k) % eps.length)
      .filter((i) => i !== pick)
      .sort((a, b) => counts[a] - counts[b]);
    return [pick, ...rest].map((i) => eps[i]);
  }

  private hashed(policy: 'ring_hash' | 'maglev', lb: LoadBalancer | undefined, targetId: string, eps: SidecarEndpoint[], hash: bigint): SidecarEndpoint[] {
    if (eps.length <= 1) return eps;
    const keys = eps.map(this.keyOf);
    const sorted = keys.map((k, i) => ({ k, i })).sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0));
    const sizes = policy === 'ring_hash' ? `${lb?.RingHashConfig?.MinimumRingSize ?? 0}/${lb?.RingHashConfig?.MaximumRingSize ?? 0}` : '';
    const cacheKey = `${policy}/${sizes}/${targetId}\n${sorted.map((s) => s.k).join('\n')}`;
    let table = this.#tables.get(cacheKey);
    if (table) {
      // Most recently used last: the oldest goes first when the cache is full.
      this.#tables.delete(cacheKey);
    } else {
      // Built over the endpoints in key order, so every sidecar builds the same table for the same set.
      const ordered = sorted.map((s) => eps[s.i]);
      const ordKeys = sorted.map((s) => s.k);
      table = policy === 'ring_hash' ? new Ring(ordered, ordKeys, lb?.RingHashConfig) : new Maglev(ordered, ordKeys);
      if (this.#tables.size >= TABLE_CACHE) this.#tables.delete(this.#tables.keys().next().value!);
    }
    this.#tables.set(cacheKey, table);
    const t = table;
    return t.order(hash).map((i) => t.eps[i]);
  }
}

const M64 = 0xffffffffffffffffn;
/** A ring point keeps its position in the top 48 bits and its endpoint's index in the low 16. */
const INDEX_BITS = 16n;
const INDEX_MASK = (1n << INDEX_BITS) - 1n;
const MAX_RING_ENDPOINTS = 1 << 16;

/**
 * A consistent-hash ring (Envoy's ring_hash lookup: the first point at or after the request's hash,
 * wrapping round). Deliberately unlike Envoy in how points are placed: Envoy gives each host its
 * share of MinimumRingSize, so a host leaving gives the others more points, which takes keys from
 * one survivor to another (about as many again as the leaving host had). Here each endpoint has
 * MinimumRingSize points of its own (fewer only once the ring would pass MaximumRingSize), drawn
 * from a splitmix64 stream seeded with xxHash64 of its key: an endpoint's points never depend on
 * the others, so only the keys of an endpoint that leaves move.
 */
export class Ring implements HashTable {
  /** Sorted points: position << 16 | endpoint index. */
  readonly points: BigUint64Array;

  constructor(
    readonly eps: SidecarEndpoint[],
    keys: string[],
    cfg?: { MinimumRingSize?: number; MaximumRingSize?: number },
  ) {
    const n = Math.min(eps.length, MAX_RING_ENDPOINTS);
    const max = Math.min(cfg?.MaximumRingSize || RING_MAX_DEFAULT, RING_MAX_DEFAULT);
    const per = Math.max(1, Math.min(cfg?.MinimumRingSize || RING_MIN_DEFAULT, Math.floor(max / n)));
    this.points = new BigUint64Array(n * per);
    let p = 0;
    for (let i = 0; i < n; i++) {
      let s = xxHash64(keys[i]);
      const idx = BigInt(i);
      for (let j = 0; j < per; j++) {
        s = (s + 0x9e3779b97f4a7c15n) & M64;
        this.points[p++] = (splitmix(s) & ~INDEX_MASK) | idx;
      }
    }
    this.points.sort();
  }

  /** The index of the point a hash lands on: the first at or after it, else the first. */
  find(hash: bigint): number {
    const h = hash & ~INDEX_MASK;
    let lo = 0;
    let hi = this.points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.points[mid] < h) lo = mid + 1;
      else hi = mid;
    }
    return lo === this.points.length ? 0 : lo;
  }

  order(hash: bigint): number[] {
    const start = this.find(hash);
    return distinctFrom(this.points.length, this.eps.length, start, (k) => Number(this.points[k] & INDEX_MASK));
  }
}

function splitmix(s: bigint): bigint {
  let z = s;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64;
  return z ^ (z >> 31n);
}

/**
 * Envoy's maglev table (Eisenbud et al., Maglev, NSDI 2016) with equal weights: each endpoint's
 * permutation of the 65,537 slots starts at xxHash64(key) mod M and steps by xxHash64(key, seed 1)
 * mod (M - 1) + 1, and the endpoints take turns claiming their next free slot. A request takes the
 * slot its hash mod M names.
 */
export class Maglev implements HashTable {
  readonly table: Int32Array;

  constructor(
    readonly eps: SidecarEndpoint[],
    keys: string[],
    readonly size = MAGLEV_TABLE_SIZE,
  ) {
    const n = Math.min(eps.length, size);
    const m = BigInt(size);
    const offset = keys.slice(0, n).map((k) => Number(xxHash64(k) % m));
    const skip = keys.slice(0, n).map((k) => Number(xxHash64(k, 1n) % (m - 1n)) + 1);
    const next = new Array<number>(n).fill(0);
    this.table = new Int32Array(size).fill(-1);
    let filled = 0;
    while (filled < size) {
      for (let i = 0; i < n && filled < size; i++) {
        let c = (offset[i] + next[i] * skip[i]) % size;
        while (this.table[c] >= 0) {
          next[i]++;
          c = (offset[i] + next[i] * skip[i]) % size;
        }
        this.table[c] = i;
        next[i]++;
        filled++;
      }
    }
  }

  order(hash: bigint): number[] {
    return distinctFrom(this.size, this.eps.length, Number(hash % BigInt(this.size)), (k) => this.table[k]);
  }
}

/** Walks a table round from `start`, keeping each endpoint index the first time it shows. */
function distinctFrom(length: number, endpoints: number, start: number, at: (k: number) => number): number[] {
  const seen = new Uint8Array(endpoints);
  const out: number[] = [];
  for (let step = 0; step < length && out.length < endpoints; step++) {
    const i = at((start + step) % length);
    if (i >= 0 && !seen[i]) {
      seen[i] = 1;
      out.push(i);
    }
  }
  // An endpoint past a table's capacity has no slot: it is still tried, last.
  for (let i = 0; i < endpoints; i++) if (!seen[i]) out.push(i);
  return out;
}

function shuffle<T>(xs: T[], random: () => number): T[] {
  const out = xs.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

function randomHash(random: () => number): bigint {
  return (BigInt(Math.floor(random() * 2 ** 32)) << 32n) | BigInt(Math.floor(random() * 2 ** 32));
}

/** Adds the cookies a hash policy made up to an answer's headers, after any the app set. */
export function addSetCookies(headers: Record<string, unknown>, cookies: string[]): void {
  if (cookies.length === 0) return;
  const had = headers['set-cookie'];
  headers['set-cookie'] = [...(Array.isArray(had) ? (had as unknown[]).map(String) : had === undefined ? [] : [String(had)]), ...cookies];
}

/**
 * What a hash policy may hash of a request from the local app: its fields and path, the app's
 * address (Envoy's downstream address, for SourceIP) and its connection (a made-up cookie is named
 * after it, so requests racing on one connection get the same one).
 */
export function lbRequestOf(
  headers: LbRequest['headers'],
  path: string,
  sock: { remoteAddress?: string; remotePort?: number; localAddress?: string; localPort?: number } | undefined,
): LbRequest {
  return {
    headers,
    path,
    sourceIp: sock?.remoteAddress,
    connection: sock ? `${sock.remoteAddress}:${sock.remotePort}/${sock.localAddress}:${sock.localPort}` : undefined,
  };
}
