// What the sidecar's tests share: a test PKI (root -> intermediate -> SPIFFE leaves, signed with
// src/ca), the teardown list, service and intention values, and the discovery-chain and target
// builders for an "api" upstream. Test code only (depcruise's not-to-test-code keeps it out of dist).
import http from 'node:http';
import net from 'node:net';
import { afterEach } from 'vitest';
import { createRoot, newKeyPem, signCa, signLeaf } from '../../ca/index.js';
import type { ChainResolverNode, ChainRouterNode, ChainTarget, CompiledChain } from '../../config-entries/index.js';
import type { Intention } from '../../intentions/index.js';
import type { SidecarConfig, SidecarOptions, SidecarPolicy, SidecarProtocol, SidecarTarget, SidecarUpstream } from '../sidecar-config.js';
import { Sidecar } from '../sidecar.js';

export const TD = 'test.isthmus';

export type Stop = () => Promise<void> | void;

/** The file's teardown list: what a test pushes is undone after it, last first. Call once at the top of a test file. */
export function useStops(): Stop[] {
  const stops: Stop[] = [];
  afterEach(async () => {
    while (stops.length) await stops.pop()!();
  });
  return stops;
}

/** A root and an intermediate for trust domain `td`; `leaf` signs a SPIFFE leaf for a service in a DC. */
export async function testPki(td = TD) {
  const root = await createRoot({ trustDomain: td, commonName: 'root', ttlMs: 3_600_000 });
  const interKey = await newKeyPem();
  const inter = await signCa({ signer: root, subjectKeyPem: interKey, commonName: 'inter', trustDomain: td, ttlMs: 3_600_000, pathLength: 0 });
  const signer = { certPem: inter.certPem, keyPem: interKey };
  const chain = [inter.certPem];
  const leaf = async (svc: string, dc = 'dc1', opts: { ttlMs?: number; now?: number } = {}) => {
    const spiffeId = `spiffe://${td}/ns/default/dc/${dc}/svc/${svc}`;
    const l = await signLeaf({ signer, spiffeId, dnsNames: [], commonName: svc, ttlMs: opts.ttlMs ?? 600_000, now: opts.now });
    return { certPem: l.certPem, keyPem: l.keyPem, spiffeId };
  };
  return { root, chain, bundle: { roots: [root.certPem], chain }, leaf };
}
export type TestPki = Awaited<ReturnType<typeof testPki>>;

/** A sidecar's service in the test trust domain. */
export const svc = (name: string, dc = 'dc1') => ({ id: `${name}-sidecar-proxy`, name, namespace: 'default', dc, trustDomain: TD });

/** An intention from `src` to `dst` (ID `<src>-<dst>`); `fields` sets the Action or Permissions. */
export const intention = (fields: Partial<Intention> = {}, src = 'web', dst = 'api'): Intention => ({
  ID: `${src}-${dst}`,
  Description: '',
  SourceNS: 'default',
  SourceName: src,
  DestinationNS: 'default',
  DestinationName: dst,
  SourceType: 'consul',
  Precedence: 9,
  Meta: {},
  CreatedAt: '',
  UpdatedAt: '',
  ...fields,
});

/** A default-deny policy of these intentions, at `index`, for callers in dc1. */
export const policyOf = (intentions: Intention[], index = 1): SidecarPolicy => ({ intentions, defaultAllow: false, index, sourceDc: 'dc1' });

/**
 * A started server sidecar for api in `dc` (its leaf unless `leaf` says otherwise), its inbound
 * (`protocol`) before the app on `appPort`; stopped after the test. `options` go to the Sidecar as they are.
 */
export async function startServerSidecar(
  stops: Stop[],
  p: TestPki,
  opts: { appPort: number; protocol: SidecarProtocol; policy: SidecarPolicy; dc?: string; leaf?: SidecarConfig['leaf']; options?: Partial<SidecarOptions> },
): Promise<Sidecar> {
  const dc = opts.dc ?? 'dc1';
  const sidecar = new Sidecar({
    config: {
      service: svc('api', dc),
      leaf: opts.leaf ?? (await p.leaf('api', dc)),
      bundle: p.bundle,
      inbound: { bindHost: '127.0.0.1', bindPort: 0, localAppHost: '127.0.0.1', localAppPort: opts.appPort, protocol: opts.protocol },
      upstreams: [],
      policy: opts.policy,
    },
    onFlow: () => {},
    ...opts.options,
  });
  await sidecar.start();
  stops.push(() => sidecar.stop());
  return sidecar;
}

/** web's upstream api in dc1 on a free local port; `fields` add the endpoints, protocol, chain and targets. */
export const apiUpstream = (fields: Pick<SidecarUpstream, 'endpoints'> & Partial<SidecarUpstream>): SidecarUpstream => ({
  name: 'api',
  namespace: 'default',
  datacenter: 'dc1',
  localBindHost: '127.0.0.1',
  localBindPort: 0,
  ...fields,
});

/** A started client sidecar for web in dc1 with these upstreams; stopped after the test. `options` go to the Sidecar as they are. */
export async function startClientSidecar(
  stops: Stop[],
  p: TestPki,
  opts: { upstreams: SidecarUpstream[]; policy: SidecarPolicy; options?: Partial<SidecarOptions> },
): Promise<Sidecar> {
  const sidecar = new Sidecar({
    config: { service: svc('web'), leaf: await p.leaf('web'), bundle: p.bundle, upstreams: opts.upstreams, policy: opts.policy },
    onFlow: () => {},
    ...opts.options,
  });
  await sidecar.start();
  stops.push(() => sidecar.stop());
  return sidecar;
}

/** Listens on a free port of 127.0.0.1, closes (its connections first, for http) after the test; answers the port. */
export async function listen(stops: Stop[], srv: net.Server): Promise<number> {
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  stops.push(
    () =>
      new Promise<void>((r) => {
        if (srv instanceof http.Server) srv.closeAllConnections();
        srv.close(() => r());
      }),
  );
  return (srv.address() as net.AddressInfo).port;
}

/** A port nothing listens on (bound, then closed). */
export async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** The chain's target for `id` (`[<subset>.]api.default.<dc>`) in trust domain `td`. */
export const chainTarget = (id: string, td = TD): ChainTarget => {
  const parts = id.split('.');
  const dc = parts.at(-1)!;
  return {
    ID: id,
    Service: 'api',
    ServiceSubset: parts.length === 4 ? parts[0] : '',
    Namespace: 'default',
    Datacenter: dc,
    MeshGateway: { Mode: '' },
    Subset: {},
    SNI: `${id}.internal.${td}`,
    SpiffeID: `spiffe://${td}/ns/default/dc/${dc}/svc/api`,
  };
};

/** A resolver node for target `id` (not Consul's implicit default), failing over to `failover`. */
export const resolverNode = (id: string, failover?: string[]): ChainResolverNode => ({
  Type: 'resolver',
  Name: id,
  Resolver: { Default: false, ConnectTimeout: '5s', Target: id, ...(failover ? { Failover: { Targets: failover } } : {}) },
});

/** api's chain as dc1 compiles it: a router with `routes` first, then `nodes`, and `targets`. */
export function apiChain(
  protocol: CompiledChain['Protocol'],
  routes: ChainRouterNode['Routes'],
  nodes: CompiledChain['Nodes'],
  targets: CompiledChain['Targets'],
): CompiledChain {
  return {
    ServiceName: 'api',
    Namespace: 'default',
    Datacenter: 'dc1',
    Protocol: protocol,
    StartNode: 'router:api.default',
    Nodes: { 'router:api.default': { Type: 'router', Name: 'api.default', Routes: routes }, ...nodes },
    Targets: targets,
  };
}

export const V1 = 'v1.api.default.dc1';
export const V2 = 'v2.api.default.dc1';
export const V1_DC2 = 'v1.api.default.dc2';

/**
 * api's chain with `routes` first and then a default route to a 90/10 split of v1/v2 (each split
 * setting `x-split`); v1 fails over to dc2.
 */
export function splitChain(protocol: CompiledChain['Protocol'], routes: ChainRouterNode['Routes']): CompiledChain {
  return apiChain(
    protocol,
    [...routes, { Definition: { Match: { HTTP: { PathPrefix: '/' } } }, NextNode: 'splitter:api.default' }],
    {
      'splitter:api.default': {
        Type: 'splitter',
        Name: 'api.default',
        Splits: [
          { Weight: 90, NextNode: `resolver:${V1}`, RequestHeaders: { Set: { 'x-split': 'v1' } } },
          { Weight: 10, NextNode: `resolver:${V2}`, RequestHeaders: { Set: { 'x-split': 'v2' } } },
        ],
      },
      [`resolver:${V1}`]: resolverNode(V1, [V1_DC2]),
      [`resolver:${V2}`]: resolverNode(V2),
    },
    Object.fromEntries([V1, V2, V1_DC2].map((id) => [id, chainTarget(id)])),
  );
}

/** Target `id` as a sidecar is sent it: one endpoint per instance (its server sidecar's inbound). */
export function targetOf(id: string, instances: { dc: string; sidecar: { inboundPort: number } }[], healthy = true): SidecarTarget {
  const dc = id.split('.').at(-1)!;
  return {
    id,
    datacenter: dc,
    healthy,
    healthAgeMs: 0,
    endpoints: instances.map((i) => ({
      host: '127.0.0.1',
      port: i.sidecar.inboundPort,
      sni: `${id}.internal.${TD}`,
      spiffeId: `spiffe://${TD}/ns/default/dc/${i.dc}/svc/api`,
    })),
  };
}
