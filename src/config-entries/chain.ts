// Compiles a service's config entries into its discovery chain (chain-model.ts), as Consul's
// discoverychain compiler does: the router (http, http2, grpc only) with its routes in order and a
// default route to the service itself, splitters flattened into one level of weighted splits, and a
// resolver node per target reached (DefaultSubset, Redirect followed, Failover listed as targets).
import { ErrorCodes, IsthmusError } from '../core/errors.js';
import { serviceSni, serviceSpiffeId } from '../core/names.js';
import type { ChainNode, ChainResolverNode, ChainRoute, ChainRouterNode, ChainSplitterNode, ChainTarget, CompiledChain } from './chain-model.js';
import { FilterSyntaxError, parseFilter } from './filter.js';
import {
  PROXY_DEFAULTS_NAME,
  protocolOf,
  type ConfigEntryByKind,
  type ConfigKind,
  type Protocol,
  type ProxyDefaults,
  type ServiceDefaults,
  type ServiceResolver,
  type ServiceRouter,
  type ServiceSplitter,
} from './model.js';

/** Consul's connect timeout when a resolver sets none (or none is written). */
export const DEFAULT_CONNECT_TIMEOUT = '5s';

/** The config entries a chain is compiled from. */
export interface ChainEntries {
  resolver(service: string): ServiceResolver | undefined;
  splitter(service: string): ServiceSplitter | undefined;
  router(service: string): ServiceRouter | undefined;
  serviceDefaults(service: string): ServiceDefaults | undefined;
  proxyDefaults(): ProxyDefaults | undefined;
}

/** The lookup over a store of entries (ConfigEntries, or anything with its `get`). */
export function chainEntries(entries: { get<K extends ConfigKind>(kind: K, name: string): ConfigEntryByKind[K] | undefined }): ChainEntries {
  return {
    resolver: (s) => entries.get('service-resolver', s),
    splitter: (s) => entries.get('service-splitter', s),
    router: (s) => entries.get('service-router', s),
    serviceDefaults: (s) => entries.get('service-defaults', s),
    proxyDefaults: () => entries.get('proxy-defaults', PROXY_DEFAULTS_NAME),
  };
}

export interface CompileOptions {
  /** Default "default" (the only namespace this release has). */
  namespace?: string;
  /** The DC the chain is compiled for (the caller's; Consul's `compile-dc`). */
  dc: string;
  /** Where the service is looked for first (an upstream's Datacenter); default `dc`. */
  targetDc?: string;
  trustDomain: string;
  entries: ChainEntries;
  /**
   * An upstream's `Config.failover` (a list of DCs), the older spelling of a resolver's
   * `Failover: {"*": {Datacenters}}`: used only when no service-resolver is written for the service.
   */
  legacyFailover?: string[];
}

const HTTP_LIKE = new Set<Protocol>(['http', 'http2', 'grpc']);

/** Consul's target ID: `[<subset>.]<service>.<namespace>.<dc>`. */
export function targetId(t: { service: string; subset?: string; namespace: string; dc: string }): string {
  return `${t.subset ? `${t.subset}.` : ''}${t.service}.${t.namespace}.${t.dc}`;
}

/** Where in the config entries a chain went wrong: the entry, and the field path inside it. */
export interface ChainProblem {
  /** The entry at fault; empty for an upstream's `Config.failover`, which is no entry. */
  kind: ConfigKind | '';
  name: string;
  /** Inside the entry, as PUT /v1/config's violations name fields (`Routes[0].Destination.ServiceSubset`). */
  field: string;
  message: string;
}

/** The flat field path of a problem, entry first: `service-resolver/api.Redirect.Service`. */
export function problemField(p: Pick<ChainProblem, 'kind' | 'name' | 'field'>): string {
  return p.kind ? `${p.kind}/${p.name}.${p.field}` : p.field;
}

/**
 * A chain that does not compile: ISTHMUS_ERR_INVALID (400), with a violation per problem named by
 * its flat field path, and the problems themselves so a write can tell which entry is at fault.
 */
export class ChainCompileError extends IsthmusError {
  constructor(readonly problems: ChainProblem[]) {
    const violations = problems.map((p) => ({ Field: problemField(p), Message: p.message }));
    super(ErrorCodes.INVALID, violations.map((v) => `${v.Field}: ${v.Message}`).join('; '), { violations });
    this.name = 'ChainCompileError';
  }
}

type Where = Omit<ChainProblem, 'message'>;

interface Resolved {
  service: string;
  subset: string;
  dc: string;
  resolver: ServiceResolver | undefined;
}

class Compiler {
  readonly nodes: Record<string, ChainNode> = {};
  readonly targets: Record<string, ChainTarget> = {};
  readonly problems: ChainProblem[] = [];
  /** Services reached through a router or splitter, with their protocols (Consul requires one protocol then) and where each was first named. */
  readonly routedProtocols = new Map<string, { protocol: Protocol; where: Where }>();
  private readonly ns: string;

  constructor(
    private readonly service: string,
    private readonly opts: CompileOptions,
  ) {
    this.ns = opts.namespace || 'default';
  }

  compile(): CompiledChain {
    const protocol = protocolOf(this.service, this.opts.entries);
    const start = this.routerNode(this.service, protocol) ?? this.splitterOrResolver(this.service, protocol, []);
    for (const [to, { protocol: p, where }] of this.routedProtocols) {
      if (p !== protocol)
        this.fail(where, `discovery chain "${this.service}" uses inconsistent protocols; service "${to}" has "${p}" which is not "${protocol}"`);
    }
    if (this.problems.length) throw new ChainCompileError(this.problems);
    return {
      ServiceName: this.service,
      Namespace: this.ns,
      Datacenter: this.opts.dc,
      Protocol: protocol,
      StartNode: start,
      Nodes: this.nodes,
      Targets: this.targets,
    };
  }

  private fail(where: Where, message: string): void {
    const p = { ...where, message };
    if (!this.problems.some((q) => problemField(q) === problemField(p) && q.message === message)) this.problems.push(p);
  }

  // Consul records the protocol of every service a resolver is reached for (redirect and failover
  // targets too); this compiler checks router and splitter destinations only, as it did at read.
  private routedTo(to: string, where: Where): void {
    if (!this.routedProtocols.has(to)) this.routedProtocols.set(to, { protocol: protocolOf(to, this.opts.entries), where });
  }

  private routerNode(service: string, protocol: Protocol): string | undefined {
    const entry = this.opts.entries.router(service);
    if (!entry || !HTTP_LIKE.has(protocol)) return undefined;
    const name = `router:${service}.${this.ns}`;
    const routes: ChainRouterNode['Routes'] = [];
    (entry.Routes ?? []).forEach((r, i) => {
      const dest = r.Destination ?? {};
      const to = dest.Service ?? service;
      const at = (field: string): Where => ({ kind: 'service-router', name: service, field: `Routes[${i}].Destination${field}` });
      if (to !== service) this.routedTo(to, at('.Service'));
      const next = dest.ServiceSubset
        ? this.resolverNode(to, dest.ServiceSubset, this.defaultDc(), at('.ServiceSubset'))
        : this.splitterOrResolver(to, protocol, [], at(dest.Service ? '.Service' : ''));
      routes.push({ Definition: r, NextNode: next });
    });
    // Consul appends a catch-all route to the service itself, so a request no route matches still goes somewhere.
    const fallback: ChainRoute = { Match: { HTTP: { PathPrefix: '/' } }, Destination: { Service: service, Namespace: this.ns as 'default' } };
    routes.push({ Definition: fallback, NextNode: this.splitterOrResolver(service, protocol, []) });
    this.nodes[name] = { Type: 'router', Name: `${service}.${this.ns}`, Routes: routes };
    return name;
  }

  /** The service's splitter node when it has one (http-like chains only), else its resolver node. */
  private splitterOrResolver(service: string, protocol: Protocol, stack: string[], where?: Where): string {
    const entry = this.opts.entries.splitter(service);
    if (!entry || !HTTP_LIKE.has(protocol)) return this.resolverNode(service, '', this.defaultDc(), where);
    const name = `splitter:${service}.${this.ns}`;
    if (this.nodes[name]) return name;
    const splits = this.splitsOf(service, entry, protocol, [...stack, service], 100);
    this.nodes[name] = { Type: 'splitter', Name: `${service}.${this.ns}`, Splits: splits };
    return name;
  }

  /**
   * The splits of `service`'s splitter, with a split to another service that has a splitter of its
   * own replaced by that one's splits (weights multiplied), as Consul flattens them. `stack` holds
   * the services being split, so that a cycle of splitters is an error instead of a hang.
   */
  private splitsOf(service: string, entry: ServiceSplitter, protocol: Protocol, stack: string[], scale: number): ChainSplitterNode['Splits'] {
    const out: ChainSplitterNode['Splits'] = [];
    entry.Splits.forEach((s, i) => {
      const weight = Math.round(s.Weight * scale) / 100;
      const at = (field: string): Where => ({ kind: 'service-splitter', name: service, field: `Splits[${i}]${field}` });
      const to = s.Service ?? service;
      if (to !== service) this.routedTo(to, at('.Service'));
      const headers = {
        ...(s.RequestHeaders ? { RequestHeaders: s.RequestHeaders } : {}),
        ...(s.ResponseHeaders ? { ResponseHeaders: s.ResponseHeaders } : {}),
      };
      if (s.ServiceSubset || to === service) {
        out.push({
          Weight: weight,
          ...headers,
          NextNode: this.resolverNode(to, s.ServiceSubset ?? '', this.defaultDc(), at(s.ServiceSubset ? '.ServiceSubset' : '')),
        });
        return;
      }
      const nested = this.opts.entries.splitter(to);
      if (nested && HTTP_LIKE.has(protocol)) {
        if (stack.includes(to)) {
          this.fail(at('.Service'), `detected circular reference: [${[...stack, to].join(' -> ')}]`);
          return;
        }
        out.push(...this.splitsOf(to, nested, protocol, [...stack, to], weight));
        return;
      }
      out.push({ Weight: weight, ...headers, NextNode: this.resolverNode(to, '', this.defaultDc(), at('.Service')) });
    });
    return out;
  }

  private defaultDc(): string {
    return this.opts.targetDc || this.opts.dc;
  }

  /**
   * Follows Redirects (a loop is an error) and applies DefaultSubset; an unknown subset is an error
   * naming where it was asked for.
   */
  private resolve(service: string, subset: string, dc: string, where: Where | undefined, seen: string[] = []): Resolved | undefined {
    const resolver = this.opts.entries.resolver(service);
    const here = targetId({ service, subset, namespace: this.ns, dc });
    const r = resolver?.Redirect;
    if (r) {
      const to = r.Service ?? service;
      // A redirect to another service lands on that service's default subset unless it names one.
      const toSubset = r.ServiceSubset ?? (to !== service ? '' : subset);
      const toDc = r.Datacenter ?? dc;
      const there = targetId({ service: to, subset: toSubset, namespace: this.ns, dc: toDc });
      if (there !== here) {
        const at = (field: string): Where => ({ kind: 'service-resolver', name: service, field: `Redirect.${field}` });
        if (seen.includes(there)) {
          this.fail(
            at(r.Service ? 'Service' : r.Datacenter ? 'Datacenter' : 'ServiceSubset'),
            `detected circular resolver redirect: [${[...seen, here, there].join(' -> ')}]`,
          );
          return undefined;
        }
        return this.resolve(to, toSubset, toDc, at(r.ServiceSubset ? 'ServiceSubset' : r.Service ? 'Service' : 'Datacenter'), [...seen, here]);
      }
    }
    if (!subset && resolver?.DefaultSubset) subset = resolver.DefaultSubset;
    if (subset && !resolver?.Subsets?.[subset]) {
      this.fail(where ?? { kind: 'service-resolver', name: service, field: 'DefaultSubset' }, `service "${service}" does not have a subset named "${subset}"`);
      return undefined;
    }
    return { service, subset, dc, resolver };
  }

  private target(r: Resolved): string {
    const id = targetId({ service: r.service, subset: r.subset, namespace: this.ns, dc: r.dc });
    if (this.targets[id]) return id;
    const subset = r.subset ? (r.resolver?.Subsets?.[r.subset] ?? {}) : {};
    if (subset.Filter) {
      try {
        parseFilter(subset.Filter);
      } catch (err) {
        if (!(err instanceof FilterSyntaxError)) throw err;
        this.fail({ kind: 'service-resolver', name: r.service, field: `Subsets.${r.subset}.Filter` }, `not a valid filter expression: ${err.message}`);
      }
    }
    const name = { service: r.service, namespace: this.ns, dc: r.dc, trustDomain: this.opts.trustDomain };
    const mode = this.opts.entries.serviceDefaults(r.service)?.MeshGateway?.Mode || this.opts.entries.proxyDefaults()?.MeshGateway?.Mode || '';
    this.targets[id] = {
      ID: id,
      Service: r.service,
      ServiceSubset: r.subset,
      Namespace: this.ns,
      Datacenter: r.dc,
      MeshGateway: { Mode: mode },
      Subset: {
        ...(subset.Filter !== undefined ? { Filter: subset.Filter } : {}),
        ...(subset.OnlyPassing !== undefined ? { OnlyPassing: subset.OnlyPassing } : {}),
      },
      SNI: serviceSni({ ...name, subset: r.subset || undefined }),
      SpiffeID: serviceSpiffeId(name),
    };
    return id;
  }

  private resolverNode(service: string, subset: string, dc: string, where?: Where): string {
    const r = this.resolve(service, subset, dc, where);
    // After an error the chain is not returned; a placeholder name keeps the walk going to find the rest.
    if (!r) return `resolver:${targetId({ service, subset, namespace: this.ns, dc })}`;
    const id = this.target(r);
    const name = `resolver:${id}`;
    if (this.nodes[name]) return name;
    const res = r.resolver;
    const failover = this.failoverTargets(r, id);
    const node: ChainResolverNode = {
      Type: 'resolver',
      Name: id,
      Resolver: {
        Default: !res,
        ConnectTimeout: res?.ConnectTimeout ?? DEFAULT_CONNECT_TIMEOUT,
        ...(res?.RequestTimeout ? { RequestTimeout: res.RequestTimeout } : {}),
        Target: id,
        ...(failover.length ? { Failover: { Targets: failover } } : {}),
      },
      ...(res?.LoadBalancer ? { LoadBalancer: res.LoadBalancer } : {}),
    };
    this.nodes[name] = node;
    return name;
  }

  /** The failover targets of a resolved target, in order, without the target itself or repeats. */
  private failoverTargets(r: Resolved, primary: string): string[] {
    const res = r.resolver;
    const key = res?.Failover?.[r.subset] ? r.subset : '*';
    let f: NonNullable<ServiceResolver['Failover']>[string] | undefined = res?.Failover?.[key];
    let at = (field: string): Where => ({ kind: 'service-resolver', name: r.service, field: `Failover.${key}${field}` });
    if (!res && r.service === this.service && this.opts.legacyFailover?.length) {
      f = { Datacenters: this.opts.legacyFailover };
      at = (field) => ({ kind: '', name: '', field: `Config.failover${field}` });
    }
    if (!f) return [];
    const inherit = (svc: string | undefined, sub: string | undefined) => {
      const to = svc ?? r.service;
      return { service: to, subset: sub ?? (to !== r.service ? '' : r.subset) };
    };
    const named = (svc: string | undefined, sub: string | undefined, prefix: string) => (sub ? `${prefix}.ServiceSubset` : svc ? `${prefix}.Service` : prefix);
    const wanted: { service: string; subset: string; dc: string; where: Where }[] = [];
    if (f.Targets?.length) {
      f.Targets.forEach((t, j) =>
        wanted.push({ ...inherit(t.Service, t.ServiceSubset), dc: t.Datacenter ?? r.dc, where: at(named(t.Service, t.ServiceSubset, `.Targets[${j}]`)) }),
      );
    } else if (f.Datacenters?.length) {
      f.Datacenters.forEach((dc, j) =>
        wanted.push({
          ...inherit(f.Service, f.ServiceSubset),
          dc,
          where: at(f.ServiceSubset || f.Service ? named(f.Service, f.ServiceSubset, '') : `.Datacenters[${j}]`),
        }),
      );
    } else {
      wanted.push({ ...inherit(f.Service, f.ServiceSubset), dc: r.dc, where: at(named(f.Service, f.ServiceSubset, '')) });
    }
    const out: string[] = [];
    for (const w of wanted) {
      const resolved = this.resolve(w.service, w.subset, w.dc, w.where);
      if (!resolved) continue;
      const id = this.target(resolved);
      if (id !== primary && !out.includes(id)) out.push(id);
    }
    return out;
  }
}

/**
 * The discovery chain of `service` as a caller in `opts.dc` sees it. A chain that cannot be
 * compiled (a route or split to an unknown subset, a redirect or splitter loop, a bad subset
 * filter, protocols that differ along a routed chain) throws a ChainCompileError
 * (ISTHMUS_ERR_INVALID) with a violation per problem, each naming the entry and field
 * (`service-resolver/api.Redirect.Service`).
 */
export function compileDiscoveryChain(service: string, opts: CompileOptions): CompiledChain {
  return new Compiler(service, opts).compile();
}

/** Every target ID the chain can reach, in chain order: for each resolver node its target, then its failover targets. */
export function reachableTargets(chain: CompiledChain): string[] {
  const out: string[] = [];
  const add = (id: string) => {
    if (!out.includes(id)) out.push(id);
  };
  const visit = (name: string, seen: Set<string>) => {
    if (seen.has(name)) return;
    seen.add(name);
    const n = chain.Nodes[name];
    if (!n) return;
    if (n.Type === 'router') for (const r of n.Routes) visit(r.NextNode, seen);
    else if (n.Type === 'splitter') for (const s of n.Splits) visit(s.NextNode, seen);
    else {
      add(n.Resolver.Target);
      for (const t of n.Resolver.Failover?.Targets ?? []) add(t);
    }
  };
  visit(chain.StartNode, new Set());
  for (const id of Object.keys(chain.Targets).sort()) add(id);
  return out;
}

/** The resolver node the chain's default path ends in: a request no route matches, the heaviest split. */
export function defaultResolver(chain: CompiledChain): ChainResolverNode | undefined {
  let name = chain.StartNode;
  for (let hops = 0; hops < 64; hops++) {
    const n = chain.Nodes[name];
    if (!n) return undefined;
    if (n.Type === 'resolver') return n;
    if (n.Type === 'router') name = n.Routes[n.Routes.length - 1].NextNode;
    else name = [...n.Splits].sort((a, b) => b.Weight - a.Weight)[0]?.NextNode ?? '';
  }
  return undefined;
}
