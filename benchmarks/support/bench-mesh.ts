// What the sidecar benchmark children share: the build in dist/ (what `isthmus connect proxy` runs;
// `npm run build` first: the sources through tsx name every closure they make, per connection here),
// one CA with its bundle, leaves for dc1's services, the web => api intention, the server and client
// sidecars of a pair, and how a child announces itself and stops.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as CaModule from '../../src/ca/index.js';
import type * as IntentionsModule from '../../src/intentions/index.js';
import type * as SidecarModule from '../../src/sidecar/index.js';

/** A module of the build in dist/, e.g. `sidecar/index.js`. */
export function distUrl(path: string): string {
  return new URL(`../../dist/${path}`, import.meta.url).href;
}

if (!existsSync(fileURLToPath(distUrl('sidecar/index.js')))) throw new Error('dist/ is missing: run `npm run build` first');
const { createRoot, newKeyPem, signCa, signLeaf } = (await import(distUrl('ca/index.js'))) as typeof CaModule;
export const { Sidecar } = (await import(distUrl('sidecar/index.js'))) as typeof SidecarModule;

export const TD = 'bench.isthmus';
/** The name the client sidecar (and HAProxy) sends for api in dc1, and the DNS SAN of api's leaf for HAProxy. */
export const API_SNI = `api.default.dc1.internal.${TD}`;
const DAY_MS = 86_400_000;
export const root = await createRoot({ trustDomain: TD, commonName: 'bench root', ttlMs: DAY_MS });
const interKey = await newKeyPem();
export const inter = await signCa({ signer: root, subjectKeyPem: interKey, commonName: 'bench inter', trustDomain: TD, ttlMs: DAY_MS, pathLength: 0 });
export const bundle = { roots: [root.certPem], chain: [inter.certPem] };

/** A leaf of service `svc` in dc1 (with DNS SANs when a proxy checks the server name against them). */
export async function leaf(svc: string, dnsNames: string[] = []) {
  const spiffeId = `spiffe://${TD}/ns/default/dc/dc1/svc/${svc}`;
  const l = await signLeaf({ signer: { certPem: inter.certPem, keyPem: interKey }, spiffeId, dnsNames, commonName: svc, ttlMs: DAY_MS });
  return { certPem: l.certPem, keyPem: l.keyPem, spiffeId };
}

/**
 * The same certificates for HAProxy, in `dir`: per leaf `<name>.pem` (cert + chain + key in one file),
 * and root.pem, the CA file. (HAProxy checks the server name it sends against the DNS SANs.)
 */
function writeProxyPems(dir: string, leaves: Record<string, { certPem: string; keyPem: string }>): void {
  const pem = (...parts: string[]) => parts.map((p) => p.trim()).join('\n') + '\n';
  writeFileSync(join(dir, 'root.pem'), pem(root.certPem));
  for (const [name, l] of Object.entries(leaves)) writeFileSync(join(dir, `${name}.pem`), pem(l.certPem, inter.certPem, l.keyPem));
}

/** web's and api's leaves with DNS SANs, and the same certificates for HAProxy written into `dir`. */
export async function proxyLeaves(dir: string) {
  const web = await leaf('web', [`web.default.dc1.internal.${TD}`]);
  const api = await leaf('api', [API_SNI]);
  writeProxyPems(dir, { web, api });
  return { web, api };
}

export const svc = (name: string) => ({ id: `${name}-sidecar-proxy`, name, namespace: 'default', dc: 'dc1', trustDomain: TD });

/** The policy the api side enforces: one intention web => api (allow, or L7 permissions), nothing else. */
export function webToApi(rule: Pick<IntentionsModule.Intention, 'Action' | 'Permissions'>, defaultAllow = false) {
  return {
    intentions: [
      {
        ID: 'i1',
        Description: '',
        SourceNS: 'default',
        SourceName: 'web',
        DestinationNS: 'default',
        DestinationName: 'api',
        SourceType: 'consul' as const,
        ...rule,
        Precedence: 9,
        Meta: {},
        CreatedAt: '',
        UpdatedAt: '',
      },
    ],
    defaultAllow,
    index: 1,
    sourceDc: 'dc1',
  };
}

type SidecarInstance = InstanceType<typeof Sidecar>;
type Leaf = SidecarModule.SidecarConfig['leaf'];

/** The server sidecar: api's inbound of `protocol` on a port of its own, in front of the app on `appPort`. */
export async function startApiSidecar(o: {
  appPort: number;
  protocol: SidecarModule.SidecarProtocol;
  leaf: Leaf;
  policy: SidecarModule.SidecarPolicy;
}): Promise<SidecarInstance> {
  const server = new Sidecar({
    config: {
      service: svc('api'),
      leaf: o.leaf,
      bundle,
      inbound: { bindHost: '127.0.0.1', bindPort: 0, localAppHost: '127.0.0.1', localAppPort: o.appPort, protocol: o.protocol },
      upstreams: [],
      policy: o.policy,
    },
    onFlow: () => {},
  });
  await server.start();
  return server;
}

/**
 * A pair: the server sidecar (startApiSidecar) and a client sidecar for web with one upstream `api`
 * to it, of `upstreamProtocol` (none given: the upstream says none, so the default, tcp).
 */
export async function startSidecarPair(o: {
  appPort: number;
  protocol: SidecarModule.SidecarProtocol;
  upstreamProtocol?: SidecarModule.SidecarProtocol;
  leaves: { web: Leaf; api: Leaf };
  policy: SidecarModule.SidecarPolicy;
}): Promise<{ server: SidecarInstance; client: SidecarInstance }> {
  const { web, api } = o.leaves;
  const server = await startApiSidecar({ appPort: o.appPort, protocol: o.protocol, leaf: api, policy: o.policy });
  const client = new Sidecar({
    config: {
      service: svc('web'),
      leaf: web,
      bundle,
      policy: o.policy,
      upstreams: [
        {
          name: 'api',
          namespace: 'default',
          datacenter: 'dc1',
          localBindHost: '127.0.0.1',
          localBindPort: 0,
          ...(o.upstreamProtocol && { protocol: o.upstreamProtocol }),
          endpoints: [{ host: '127.0.0.1', port: server.inboundPort, sni: API_SNI, spiffeId: api.spiffeId }],
        },
      ],
    },
    onFlow: () => {},
  });
  await client.start();
  return { server, client };
}

/** Announces the child with `info` as one JSON line on stdout, and on SIGTERM stops `sidecars` in order and exits. */
export function announce(info: Record<string, unknown>, sidecars: SidecarInstance[]): void {
  process.stdout.write(JSON.stringify(info) + '\n');
  process.on('SIGTERM', async () => {
    for (const s of sidecars) await s.stop();
    process.exit(0);
  });
}
