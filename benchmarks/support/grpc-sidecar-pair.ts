// Benchmark child: a client sidecar and a server sidecar (real mTLS, real certificates) in front of
// a gRPC app on argv[2], the server sidecar's inbound protocol argv[3] (grpc: HTTP/2 ended and each
// call checked against an L7 intention; tcp: bytes relayed) and the upstream's protocol argv[4].
// Prints the client sidecar's upstream port as JSON. Runs the build in dist/, as sidecar-pair.ts.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type * as CaModule from '../../src/ca/index.js';
import type * as SidecarModule from '../../src/sidecar/index.js';

const dist = (path: string) => new URL(`../../dist/${path}`, import.meta.url);
if (!existsSync(fileURLToPath(dist('sidecar/index.js')))) throw new Error('dist/ is missing: run `npm run build` first');
const { createRoot, newKeyPem, signCa, signLeaf } = (await import(dist('ca/index.js').href)) as typeof CaModule;
const { Sidecar } = (await import(dist('sidecar/index.js').href)) as typeof SidecarModule;

const appPort = Number(process.argv[2]);
const protocol = process.argv[3] as SidecarModule.SidecarProtocol;
const upstreamProtocol = process.argv[4] as SidecarModule.SidecarProtocol;
const TD = 'bench.isthmus';
const root = await createRoot({ trustDomain: TD, commonName: 'bench root', ttlMs: 86_400_000 });
const interKey = await newKeyPem();
const inter = await signCa({ signer: root, subjectKeyPem: interKey, commonName: 'bench inter', trustDomain: TD, ttlMs: 86_400_000, pathLength: 0 });
const leaf = async (svc: string) => {
  const spiffeId = `spiffe://${TD}/ns/default/dc/dc1/svc/${svc}`;
  const l = await signLeaf({ signer: { certPem: inter.certPem, keyPem: interKey }, spiffeId, dnsNames: [], commonName: svc, ttlMs: 86_400_000 });
  return { certPem: l.certPem, keyPem: l.keyPem, spiffeId };
};
const svc = (name: string) => ({ id: `${name}-sidecar-proxy`, name, namespace: 'default', dc: 'dc1', trustDomain: TD });
// An L7 intention (each call's path checked), as a gRPC service's would be.
const policy = {
  intentions: [
    {
      ID: 'i1',
      Description: '',
      SourceNS: 'default',
      SourceName: 'web',
      DestinationNS: 'default',
      DestinationName: 'api',
      SourceType: 'consul' as const,
      Permissions: [
        { Action: 'deny' as const, HTTP: { PathExact: '/isthmus.test.Echo/Denied' } },
        { Action: 'allow' as const, HTTP: { PathPrefix: '/isthmus.test.Echo/' } },
      ],
      Precedence: 9,
      Meta: {},
      CreatedAt: '',
      UpdatedAt: '',
    },
  ],
  defaultAllow: protocol === 'tcp',
  index: 1,
  sourceDc: 'dc1',
};
const bundle = { roots: [root.certPem], chain: [inter.certPem] };
const api = await leaf('api');
const server = new Sidecar({
  config: {
    service: svc('api'),
    leaf: api,
    bundle,
    inbound: { bindHost: '127.0.0.1', bindPort: 0, localAppHost: '127.0.0.1', localAppPort: appPort, protocol },
    upstreams: [],
    policy,
  },
  onFlow: () => {},
});
await server.start();
const client = new Sidecar({
  config: {
    service: svc('web'),
    leaf: await leaf('web'),
    bundle,
    policy,
    upstreams: [
      {
        name: 'api',
        namespace: 'default',
        datacenter: 'dc1',
        localBindHost: '127.0.0.1',
        localBindPort: 0,
        protocol: upstreamProtocol,
        endpoints: [{ host: '127.0.0.1', port: server.inboundPort, sni: `api.default.dc1.internal.${TD}`, spiffeId: api.spiffeId }],
      },
    ],
  },
  onFlow: () => {},
});
await client.start();
process.stdout.write(JSON.stringify({ port: client.upstreamPort('api'), pid: process.pid }) + '\n');
process.on('SIGTERM', async () => {
  await client.stop();
  await server.stop();
  process.exit(0);
});
