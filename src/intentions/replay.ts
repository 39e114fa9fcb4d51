// Policy from traffic: replay observed calls against the intentions in force and against a proposed
// change (what would it allow or deny that it did not?), and propose the least-privilege
// intentions that the observed allowed calls need.
import { compileIntentions, type CompiledIntentions } from './matcher.js';
import { intentionKey, precedence, type Intention, type Permission } from './model.js';

/** One observed call at the destination's sidecar: a connection, or an HTTP request inside one. */
export interface ObservedCall {
  sourceNs: string;
  source: string;
  destinationNs: string;
  destination: string;
  dc: string;
  /** Set for an HTTP request (L7); absent for the connection itself. */
  http?: { method: string; path: string };
}

export interface ReplayChange {
  Source: string;
  Destination: string;
  Method?: string;
  Path?: string;
  Before: 'allowed' | 'denied';
  After: 'allowed' | 'denied';
  BeforeDecidedBy: string;
  AfterDecidedBy: string;
  Count: number;
  Datacenters: string[];
}

export interface ReplayResult {
  Examined: number;
  Distinct: number;
  Changes: ReplayChange[];
  /** L7 permissions that match on headers cannot be replayed (records keep no headers). */
  HeaderRulesIgnored: boolean;
}

/** The proposed intention as it would stand: replacing the one of the same pair, if any. */
export function proposedSet(
  current: Intention[],
  proposed: Omit<Intention, 'ID' | 'Precedence' | 'CreatedAt' | 'UpdatedAt' | 'Meta' | 'Description' | 'SourceType'> & { Description?: string },
): Intention[] {
  const key = intentionKey(proposed.SourceNS, proposed.SourceName, proposed.DestinationNS, proposed.DestinationName);
  const now = new Date().toISOString();
  const next: Intention = {
    ID: 'proposed',
    Description: proposed.Description ?? '',
    SourceNS: proposed.SourceNS,
    SourceName: proposed.SourceName,
    DestinationNS: proposed.DestinationNS,
    DestinationName: proposed.DestinationName,
    SourceType: 'consul',
    ...(proposed.Permissions?.length ? { Permissions: proposed.Permissions } : { Action: proposed.Action ?? 'allow' }),
    Precedence: precedence(proposed),
    Meta: {},
    CreatedAt: now,
    UpdatedAt: now,
  };
  return [...current.filter((i) => intentionKey(i.SourceNS, i.SourceName, i.DestinationNS, i.DestinationName) !== key), next];
}

function verdict(m: CompiledIntentions, c: ObservedCall): { allowed: boolean; by: string } {
  const src = { namespace: c.sourceNs, service: c.source };
  const dst = { namespace: c.destinationNs, service: c.destination };
  if (c.http) {
    const d = m.decide(src, dst, { method: c.http.method, path: c.http.path, headers: {} });
    return { allowed: d.allowed, by: d.decidedBy };
  }
  // A connection is let in when allowed, or when L7 permissions will judge its requests.
  const d = m.decide(src, dst);
  return { allowed: d.allowed || !!d.l7, by: d.decidedBy };
}

/** Which observed calls change verdict between `before` and `after`, grouped and counted. */
export function replay(before: Intention[], after: Intention[], calls: ObservedCall[], defaultAllow: boolean): ReplayResult {
  const mb = compileIntentions(before, { defaultAllow });
  const ma = compileIntentions(after, { defaultAllow });
  const groups = new Map<string, { call: ObservedCall; count: number; dcs: Set<string> }>();
  for (const c of calls) {
    const k = `${c.sourceNs}/${c.source}>${c.destinationNs}/${c.destination} ${c.http ? `${c.http.method} ${c.http.path}` : ''}`;
    const g = groups.get(k);
    if (g) {
      g.count++;
      g.dcs.add(c.dc);
    } else groups.set(k, { call: c, count: 1, dcs: new Set([c.dc]) });
  }
  const changes: ReplayChange[] = [];
  for (const { call, count, dcs } of groups.values()) {
    const b = verdict(mb, call);
    const a = verdict(ma, call);
    if (a.allowed === b.allowed) continue;
    changes.push({
      Source: `${call.sourceNs}/${call.source}`,
      Destination: `${call.destinationNs}/${call.destination}`,
      ...(call.http ? { Method: call.http.method, Path: call.http.path } : {}),
      Before: b.allowed ? 'allowed' : 'denied',
      After: a.allowed ? 'allowed' : 'denied',
      BeforeDecidedBy: b.by,
      AfterDecidedBy: a.by,
      Count: count,
      Datacenters: [...dcs].sort(),
    });
  }
  changes.sort((x, y) => y.Count - x.Count);
  const headerRules = after.some((i) => i.Permissions?.some((p) => p.HTTP?.Header?.length));
  return { Examined: calls.length, Distinct: groups.size, Changes: changes, HeaderRulesIgnored: headerRules };
}

export interface Suggestion {
  SourceNS: string;
  SourceName: string;
  DestinationNS: string;
  DestinationName: string;
  /** L4: allow the pair. L7: allow exactly the methods and paths seen. */
  Action?: 'allow';
  Permissions?: Permission[];
  Calls: number;
  Datacenters: string[];
  /** An intention for this pair exists already (its ID), so the suggestion would replace it. */
  Existing?: string;
}

const MAX_PATHS = 20;

/**
 * The least-privilege intentions that the allowed calls to `destination` need: one per source seen,
 * L4 when only connections were seen, else the exact methods and paths seen (a prefix per first
 * path segment when there are more than 20 paths).
 */
export function suggest(destinationNs: string, destination: string, allowedCalls: ObservedCall[], current: Intention[]): Suggestion[] {
  const bySource = new Map<string, { ns: string; name: string; calls: number; dcs: Set<string>; http: Map<string, Set<string>> }>();
  for (const c of allowedCalls) {
    if (c.destination !== destination || c.destinationNs !== destinationNs) continue;
    const k = `${c.sourceNs}/${c.source}`;
    let s = bySource.get(k);
    if (!s) bySource.set(k, (s = { ns: c.sourceNs, name: c.source, calls: 0, dcs: new Set(), http: new Map() }));
    s.calls++;
    s.dcs.add(c.dc);
    if (c.http) {
      const methods = s.http.get(c.http.path) ?? new Set<string>();
      methods.add(c.http.method);
      s.http.set(c.http.path, methods);
    }
  }
  const out: Suggestion[] = [];
  for (const s of bySource.values()) {
    const existing = current.find(
      (i) => i.SourceNS === s.ns && i.SourceName === s.name && i.DestinationNS === destinationNs && i.DestinationName === destination,
    );
    const base = {
      SourceNS: s.ns,
      SourceName: s.name,
      DestinationNS: destinationNs,
      DestinationName: destination,
      Calls: s.calls,
      Datacenters: [...s.dcs].sort(),
      ...(existing ? { Existing: existing.ID } : {}),
    };
    if (s.http.size === 0) {
      out.push({ ...base, Action: 'allow' });
      continue;
    }
    let permissions: Permission[];
    if (s.http.size <= MAX_PATHS) {
      permissions = [...s.http.entries()]
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([path, methods]) => ({ Action: 'allow', HTTP: { PathExact: path, Methods: [...methods].sort() } }));
    } else {
      const prefixes = new Map<string, Set<string>>();
      for (const [path, methods] of s.http) {
        const p = `/${path.split('/')[1] ?? ''}`;
        const m = prefixes.get(p) ?? new Set<string>();
        for (const x of methods) m.add(x);
        prefixes.set(p, m);
      }
      permissions = [...prefixes.entries()]
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([p, methods]) => ({ Action: 'allow', HTTP: { PathPrefix: p, Methods: [...methods].sort() } }));
    }
    out.push({ ...base, Permissions: permissions });
  }
  return out.sort((a, b) => b.Calls - a.Calls);
}
