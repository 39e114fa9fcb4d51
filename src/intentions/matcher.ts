// The compiled intention set: per destination, the candidates in evaluation order (precedence, deny
// first on ties), regexes compiled once, and a decision cache per source/destination pair.
// Sidecars compile the set they are pushed with the same code.
import type { HeaderMatch, Intention, Permission } from './model.js';
import { fullMatch } from './regex.js';

export interface HttpRequestInfo {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
}

export interface Decision {
  allowed: boolean;
  reason: string;
  /** The deciding intention's ID, or "default". */
  decidedBy: string;
  intention?: Intention;
  /** The intention has L7 permissions: an L4 connection is denied, requests are checked one by one. */
  l7?: boolean;
  /** The position (from 0, as the API's `Permissions[n]`) of the permission that decided a request. */
  permission?: number;
}

interface CompiledPermission {
  action: 'allow' | 'deny';
  test: (r: HttpRequestInfo) => boolean;
}

interface Candidate {
  intention: Intention;
  srcNS: string;
  srcName: string;
  permissions?: CompiledPermission[];
}

export interface CompiledIntentions {
  readonly size: number;
  decide(source: { namespace: string; service: string }, destination: { namespace: string; service: string }, request?: HttpRequestInfo): Decision;
}

function headerValue(h: HttpRequestInfo['headers'], name: string): string | undefined {
  const v = h[name.toLowerCase()];
  return Array.isArray(v) ? v.join(',') : v;
}

function compileHeader(m: HeaderMatch): (r: HttpRequestInfo) => boolean {
  // The whole value must match, as with Envoy's header `safe_regex_match`.
  const re = m.Regex !== undefined ? fullMatch(m.Regex) : undefined;
  const base = (r: HttpRequestInfo) => {
    const v = headerValue(r.headers, m.Name);
    if (m.Present !== undefined) return (v !== undefined) === m.Present;
    if (v === undefined) return false;
    if (m.Exact !== undefined) return v === m.Exact;
    if (m.Prefix !== undefined) return v.startsWith(m.Prefix);
    if (m.Suffix !== undefined) return v.endsWith(m.Suffix);
    if (re) return re(v);
    return false;
  };
  return m.Invert ? (r) => !base(r) : base;
}

/**
 * A permission whose pattern is not RE2 (stored before patterns were checked as RE2, or replicated
 * from a server that did not check) cannot say what it matches: it denies every request that reaches
 * it, rather than let through what it may have been written to stop.
 */
function compilePermission(p: Permission): CompiledPermission {
  try {
    return compileChecks(p);
  } catch {
    return { action: 'deny', test: () => true };
  }
}

function compileChecks(p: Permission): CompiledPermission {
  const tests: ((r: HttpRequestInfo) => boolean)[] = [];
  const h = p.HTTP;
  if (h?.PathExact !== undefined) tests.push((r) => r.path === h.PathExact);
  if (h?.PathPrefix !== undefined) tests.push((r) => r.path.startsWith(h.PathPrefix!));
  if (h?.PathRegex !== undefined) {
    const re = fullMatch(h.PathRegex);
    tests.push((r) => re(r.path));
  }
  if (h?.Methods?.length) {
    const set = new Set(h.Methods);
    tests.push((r) => set.has(r.method.toUpperCase()));
  }
  for (const m of h?.Header ?? []) tests.push(compileHeader(m));
  return { action: p.Action, test: (r) => tests.every((t) => t(r)) };
}

function pathOnly(path: string): string {
  const q = path.indexOf('?');
  return q < 0 ? path : path.slice(0, q);
}

export function compileIntentions(intentions: Intention[], opts: { defaultAllow: boolean }): CompiledIntentions {
  const ordered = [...intentions].sort((a, b) => {
    if (b.Precedence !== a.Precedence) return b.Precedence - a.Precedence;
    const ad = (a.Action ?? 'allow') === 'deny' ? 0 : 1;
    const bd = (b.Action ?? 'allow') === 'deny' ? 0 : 1;
    return ad - bd;
  });
  const toCandidate = (i: Intention): Candidate => ({
    intention: i,
    srcNS: i.SourceNS,
    srcName: i.SourceName,
    permissions: i.Permissions?.length ? i.Permissions.map(compilePermission) : undefined,
  });
  // Buckets by destination: exact "ns/name", namespace wildcard "ns/*", and "*/*".
  const byDest = new Map<string, Candidate[]>();
  for (const i of ordered) {
    const key = `${i.DestinationNS}/${i.DestinationName}`;
    let list = byDest.get(key);
    if (!list) byDest.set(key, (list = []));
    list.push(toCandidate(i));
  }
  const perDest = new Map<string, Candidate[]>();
  const candidatesFor = (ns: string, name: string): Candidate[] => {
    const key = `${ns}/${name}`;
    let c = perDest.get(key);
    if (c) return c;
    c = [...(byDest.get(key) ?? []), ...(byDest.get(`${ns}/*`) ?? []), ...(byDest.get('*/*') ?? [])];
    c.sort(
      (a, b) =>
        b.intention.Precedence - a.intention.Precedence ||
        ((a.intention.Action ?? 'allow') === 'deny' ? -1 : 1) - ((b.intention.Action ?? 'allow') === 'deny' ? -1 : 1),
    );
    if (perDest.size > 50_000) perDest.clear();
    perDest.set(key, c);
    return c;
  };
  const defaultDecision: Decision = {
    allowed: opts.defaultAllow,
    reason: `no intention matched: default ${opts.defaultAllow ? 'allow' : 'deny'}`,
    decidedBy: 'default',
  };
  const l4Cache = new Map<string, Decision>();

  const l4 = (
    source: { namespace: string; service: string },
    destination: { namespace: string; service: string },
  ): { decision: Decision; candidate?: Candidate } => {
    for (const c of candidatesFor(destination.namespace, destination.service)) {
      if ((c.srcNS === '*' || c.srcNS === source.namespace) && (c.srcName === '*' || c.srcName === source.service)) {
        const i = c.intention;
        if (c.permissions) {
          return {
            candidate: c,
            decision: {
              allowed: false,
              l7: true,
              reason: `intention ${i.SourceName} => ${i.DestinationName} has L7 permissions; only HTTP requests can satisfy them`,
              decidedBy: i.ID,
              intention: i,
            },
          };
        }
        const allowed = i.Action === 'allow';
        return {
          candidate: c,
          decision: {
            allowed,
            reason: `${allowed ? 'allowed' : 'denied'} by intention ${i.SourceName} => ${i.DestinationName}`,
            decidedBy: i.ID,
            intention: i,
          },
        };
      }
    }
    return { decision: defaultDecision };
  };

  return {
    size: intentions.length,
    decide(source, destination, request) {
      if (!request) {
        const key = `${source.namespace}/${source.service}\u0000${destination.namespace}/${destination.service}`;
        let d = l4Cache.get(key);
        if (!d) {
          d = l4(source, destination).decision;
          if (l4Cache.size > 100_000) l4Cache.clear();
          l4Cache.set(key, d);
        }
        return d;
      }
      const { decision, candidate } = l4(source, destination);
      if (!candidate?.permissions) return decision;
      const req = { ...request, path: pathOnly(request.path) };
      const i = candidate.intention;
      for (let n = 0; n < candidate.permissions.length; n++) {
        const p = candidate.permissions[n];
        if (p.test(req)) {
          const allowed = p.action === 'allow';
          return {
            allowed,
            reason: `${allowed ? 'allowed' : 'denied'} by intention ${i.SourceName} => ${i.DestinationName}, permission ${n}`,
            decidedBy: i.ID,
            intention: i,
            permission: n,
          };
        }
      }
      return {
        ...defaultDecision,
        reason: `no permission of intention ${i.SourceName} => ${i.DestinationName} matched ${req.method} ${req.path}: default ${opts.defaultAllow ? 'allow' : 'deny'}`,
        decidedBy: i.ID,
        intention: i,
      };
    },
  };
}
