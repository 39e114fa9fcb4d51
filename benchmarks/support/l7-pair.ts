// Benchmark child: one server sidecar (http inbound, real mTLS, real certificates) in front of the
// HTTP app on argv[2], and two client sidecars in front of it with an http upstream each: `plain`
// with the chain the server pushes for an http service with no routing entries (the default
// resolver, one target), `routed` with a service-router of 10 routes, a 50/50 service-splitter and
// a service-resolver with two subsets, both subsets' targets on the same server sidecar. The chains
// are compiled from the config entries by the server's own compiler. Before it announces itself it
// sends requests through both and checks, from the client sidecars' flow records, that they took the
// path meant: `routed` requests by the last written route and over both splits. Prints the ports,
// its pid and what the check saw as JSON. Runs the build in dist/, as sidecar-pair.ts.
import http from 'node:http';
import type * as ConfigEntriesModule from '../../src/config-entries/index.js';
import type * as DataflowModule from '../../src/dataflow/index.js';
import type * as SidecarModule from '../../src/sidecar/index.js';
import { Sidecar, TD, announce, bundle, distUrl, leaf, startApiSidecar, svc, webToApi } from './bench-mesh.js';
import { L7_REQUEST } from './l7-request.js';

const { chainEntries, compileDiscoveryChain, parseConfigEntry } = (await import(distUrl('config-entries/index.js'))) as typeof ConfigEntriesModule;

const appPort = Number(process.argv[2]);
const policy = webToApi({ Action: 'allow' });

const serviceDefaults = { Kind: 'service-defaults', Name: 'api', Protocol: 'http' };
const resolver = {
  Kind: 'service-resolver',
  Name: 'api',
  DefaultSubset: 'v1',
  Subsets: { v1: { Filter: 'Service.Meta.version == v1' }, v2: { Filter: 'Service.Meta.version == v2' } },
};
const splitter = {
  Kind: 'service-splitter',
  Name: 'api',
  Splits: [
    { Weight: 50, ServiceSubset: 'v1' },
    { Weight: 50, ServiceSubset: 'v2' },
  ],
};
const v1 = { Service: 'api', ServiceSubset: 'v1' };
const v2 = { Service: 'api', ServiceSubset: 'v2' };
const router = {
  Kind: 'service-router',
  Name: 'api',
  Routes: [
    { Match: { HTTP: { PathPrefix: '/admin/' } }, Destination: v2 },
    { Match: { HTTP: { PathExact: '/bench/items' } }, Destination: v1 },
    { Match: { HTTP: { PathPrefix: '/bench/', Methods: ['POST', 'PUT', 'PATCH'] } }, Destination: v2 },
    { Match: { HTTP: { PathPrefix: '/bench/', Header: [{ Name: 'x-canary', Exact: '1' }] } }, Destination: v2 },
    { Match: { HTTP: { PathRegex: '/v[0-9]+/.*' } }, Destination: v1 },
    { Match: { HTTP: { Header: [{ Name: 'x-user', Prefix: 'internal-' }] } }, Destination: v2 },
    { Match: { HTTP: { PathPrefix: '/bench/items/', Header: [{ Name: 'x-bench', Exact: 'no' }] } }, Destination: v1 },
    { Match: { HTTP: { Methods: ['DELETE'] } }, Destination: v2 },
    { Match: { HTTP: { PathRegex: '/bench/items/[a-z]+' } }, Destination: v1 },
    // The route the load takes: to the service itself, so through the splitter.
    {
      Match: { HTTP: { PathRegex: '/bench/items/[0-9]+', Methods: ['GET', 'HEAD'], Header: [{ Name: 'x-bench', Exact: 'yes' }] } },
      Destination: { Service: 'api' },
    },
  ],
};

function compile(list: Record<string, unknown>[]) {
  const byKey = new Map<string, ConfigEntriesModule.ConfigEntry>();
  for (const raw of list) {
    const e = parseConfigEntry(raw);
    byKey.set(`${e.Kind}/${e.Name}`, e);
  }
  const entries = chainEntries({ get: <K extends ConfigEntriesModule.ConfigKind>(kind: K, name: string) => byKey.get(`${kind}/${name}`) as never });
  return compileDiscoveryChain('api', { dc: 'dc1', trustDomain: TD, entries });
}

const api = await leaf('api');
const server = await startApiSidecar({ appPort, protocol: 'http', leaf: api, policy });

/** An http upstream over `chain`, every target of which is the one server sidecar (as the server fills them in). */
function upstream(chain: ConfigEntriesModule.CompiledChain): SidecarModule.SidecarUpstream {
  const targets = Object.values(chain.Targets).map((t) => ({
    id: t.ID,
    datacenter: t.Datacenter,
    healthy: true,
    healthAgeMs: 0,
    endpoints: [{ host: '127.0.0.1', port: server.inboundPort, sni: t.SNI, spiffeId: api.spiffeId }],
  }));
  const defaultNode = chain.Nodes[chain.StartNode];
  const first = targets.find((t) => defaultNode?.Type === 'resolver' && t.id === defaultNode.Resolver.Target) ?? targets[0];
  return {
    name: 'api',
    namespace: 'default',
    datacenter: 'dc1',
    localBindHost: '127.0.0.1',
    localBindPort: 0,
    protocol: 'http',
    chain,
    targets,
    endpoints: first.endpoints,
  };
}

const plainChain = compile([serviceDefaults]);
const routedChain = compile([serviceDefaults, resolver, splitter, router]);
const seen = { plain: new Map<string, number>(), routed: new Map<string, number>() };
const clients: Record<'plain' | 'routed', InstanceType<typeof Sidecar>> = {} as never;
const webLeaf = await leaf('web');
for (const [name, chain] of [
  ['plain', plainChain],
  ['routed', routedChain],
] as const) {
  clients[name] = new Sidecar({
    config: { service: svc('web'), leaf: webLeaf, bundle, policy, upstreams: [upstream(chain)] },
    onFlow: (r: DataflowModule.FlowRecord) => {
      if (!r.routing || r.verdict !== 'allowed') return;
      const key = `${r.routing.route || '-'} ${r.routing.split || '-'} ${r.routing.target}`;
      seen[name].set(key, (seen[name].get(key) ?? 0) + 1);
    },
  });
  await clients[name].start();
}

async function get(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: L7_REQUEST.path, headers: L7_REQUEST.headers, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      })
      .on('error', reject);
  });
}
const CHECKS = 200;
for (const name of ['plain', 'routed'] as const) {
  for (let i = 0; i < CHECKS; i++) {
    const status = await get(clients[name].upstreamPort('api'));
    if (status !== 200) throw new Error(`${name}: answered ${status}`);
  }
}
// The records are written when each answer ends; give the last ones a moment.
await new Promise((r) => setTimeout(r, 200));
const count = (name: 'plain' | 'routed', pred: (key: string) => boolean) => [...seen[name]].filter(([k]) => pred(k)).reduce((n, [, c]) => n + c, 0);
const check = {
  plainDefaultPath: count('plain', (k) => k === '- - api.default.dc1'),
  routedByRoute10: count('routed', (k) => k.startsWith('Routes[9] ')),
  routedToV1: count('routed', (k) => k === 'Routes[9] Splits[0] v1.api.default.dc1'),
  routedToV2: count('routed', (k) => k === 'Routes[9] Splits[1] v2.api.default.dc1'),
};
if (check.plainDefaultPath !== CHECKS || check.routedByRoute10 !== CHECKS || check.routedToV1 === 0 || check.routedToV2 === 0)
  throw new Error(`requests took another path than meant: ${JSON.stringify({ plain: [...seen.plain], routed: [...seen.routed] })}`);

announce(
  {
    plain: clients.plain.upstreamPort('api'),
    routed: clients.routed.upstreamPort('api'),
    pid: process.pid,
    routerRoutes:
      routedChain.Nodes[routedChain.StartNode]?.Type === 'router' ? (routedChain.Nodes[routedChain.StartNode] as { Routes: unknown[] }).Routes.length : 0,
    ...check,
  },
  [clients.plain, clients.routed, server],
);
