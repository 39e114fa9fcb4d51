// Policies merged into one Authorizer: the exact service rule beats a prefix, the longest prefix
// wins, deny wins at the same specificity; with no rule, the default policy decides.
import type { AccessLevel, Authorizer } from './authorizer.js';
import type { Rules, ServiceRule } from './rules.js';

const RANK: Record<AccessLevel, number> = { deny: 0, read: 1, write: 2 };

function mergeLevel(a: AccessLevel | undefined, b: AccessLevel | undefined): AccessLevel | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  if (a === 'deny' || b === 'deny') return 'deny';
  return RANK[a] >= RANK[b] ? a : b;
}

function mergeRule(a: ServiceRule | undefined, b: ServiceRule): ServiceRule {
  if (!a) return b;
  return { policy: mergeLevel(a.policy, b.policy)!, intentions: mergeLevel(a.intentions, b.intentions) };
}

export function compileAuthorizer(ruleSets: Rules[], defaultPolicy: 'allow' | 'deny'): Authorizer {
  const exact = new Map<string, ServiceRule>();
  const prefixes = new Map<string, ServiceRule>();
  let operator: AccessLevel | undefined;
  let acl: AccessLevel | undefined;
  for (const r of ruleSets) {
    for (const [n, rule] of Object.entries(r.service)) exact.set(n, mergeRule(exact.get(n), rule));
    for (const [p, rule] of Object.entries(r.servicePrefix)) prefixes.set(p, mergeRule(prefixes.get(p), rule));
    operator = mergeLevel(operator, r.operator);
    acl = mergeLevel(acl, r.acl);
  }
  const sortedPrefixes = [...prefixes.entries()].sort((a, b) => b[0].length - a[0].length);
  const fallback: AccessLevel = defaultPolicy === 'allow' ? 'write' : 'deny';
  const cache = new Map<string, ServiceRule | undefined>();
  const ruleFor = (name: string): ServiceRule | undefined => {
    if (cache.has(name)) return cache.get(name);
    let rule = exact.get(name);
    if (!rule)
      for (const [p, r] of sortedPrefixes)
        if (name.startsWith(p)) {
          rule = r;
          break;
        }
    if (cache.size > 10_000) cache.clear();
    cache.set(name, rule);
    return rule;
  };
  const svc = (name: string) => ruleFor(name)?.policy ?? fallback;
  const intent = (name: string): AccessLevel => {
    const r = ruleFor(name);
    if (!r) return fallback;
    if (r.intentions) return r.intentions;
    // As in Consul: service read lets a token read the intentions of that destination; writing them needs intentions = "write".
    return r.policy === 'deny' ? 'deny' : 'read';
  };
  const op = operator ?? fallback;
  const ac = acl ?? (defaultPolicy === 'allow' ? 'write' : 'deny');
  return {
    serviceRead: (n) => RANK[svc(n)] >= 1,
    serviceWrite: (n) => svc(n) === 'write',
    intentionRead: (n) => RANK[intent(n)] >= 1,
    intentionWrite: (n) => intent(n) === 'write',
    operatorRead: () => RANK[op] >= 1,
    operatorWrite: () => op === 'write',
    aclRead: () => RANK[ac] >= 1,
    aclWrite: () => ac === 'write',
  };
}
