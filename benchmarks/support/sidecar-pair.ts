// Benchmark child: a client sidecar and a server sidecar (real mTLS, real certificates) in front of
// an HTTP app given as argv[2]; prints the client sidecar's upstream port as JSON and the PEMs used.
// The sidecars are the build in dist/ (what `isthmus connect proxy` runs; `npm run build` first),
// not the sources through tsx, whose output names every closure it makes, per connection here.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as CaModule from '../../src/ca/index.js';
import type * as SidecarModule from '../../src/sidecar/index.js';

const dist = (path: string) => new URL(`../../dist/${path}`, import.meta.url);
if (!existsSync(fileURLToPath(dist('sidecar/index.js')))) throw new Error('dist/ is missing: run `npm run build` first');
const { createRoot, newKeyPem, signCa, signLeaf } = (await import(dist('ca/index.js').href)) as typeof CaModule;
const { Sidecar } = (await import(dist('sidecar/index.js').href)) as typeof SidecarModule;

const appPort = Number(process.argv[2]);
const outDir = process.argv[3];
const TD = 'bench.isthmus';
const root = await createRoot({ trustDomain: TD, commonName: 'bench root', ttlMs: 86_400_000 });
const interKey = await newKeyPem();
const inter = await signCa({ signer: root, subjectKeyPem: interKey, commonName: 'bench inter', trustDomain: TD, ttlMs: 86_400_000, pathLength: 0 });
const leaf = async (svc: string) => {
  const spiffeId = `spiffe://${TD}/ns/default/dc/dc1/svc/${svc}`;
  const l = await signLeaf({
    signer: { certPem: inter.certPem, keyPem: interKey },
    spiffeId,
    dnsNames: [`${svc}.default.dc1.internal.${TD}`],
    commonName: svc,
    ttlMs: 86_400_000,
  });
  return { certPem: l.certPem, keyPem: l.keyPem, spiffeId };
};
const web = await leaf('web');
const api = await leaf('api');
// (The DNS SAN matches the SNI: HAProxy checks the server name against it.)
// The same certificates for HAProxy (cert + chain + key in one PEM, and the root as CA file).
const pem = (...parts: string[]) => parts.map((p) => p.trim()).join('\n') + '\n';
writeFileSync(join(outDir, 'root.pem'), pem(root.certPem));
writeFileSync(join(outDir, 'web.pem'), pem(web.certPem, inter.certPem, web.keyPem));
writeFileSync(join(outDir, 'api.pem'), pem(api.certPem, inter.certPem, api.keyPem));

const svc = (name: string) => ({ id: `${name}-sidecar-proxy`, name, namespace: 'default', dc: 'dc1', trustDomain: TD });
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
      Action: 'allow' as const,
      Precedence: 9,
      Meta: {},
      CreatedAt: '',
      UpdatedAt: '',
    },
  ],
  defaultAllow: false,
  index: 1,
  sourceDc: 'dc1',
};
const bundle = { roots: [root.certPem], chain: [inter.certPem] };
const server = new Sidecar({
  config: {
    service: svc('api'),
    leaf: api,
    bundle,
    inbound: { bindHost: '127.0.0.1', bindPort: 0, localAppHost: '127.0.0.1', localAppPort: appPort, protocol: 'tcp' },
    upstreams: [],
    policy,
  },
  onFlow: () => {},
});
await server.start();
const client = new Sidecar({
  config: {
    service: svc('web'),
    leaf: web,
    bundle,
    policy,
    upstreams: [
      {
        name: 'api',
        namespace: 'default',
        datacenter: 'dc1',
        localBindHost: '127.0.0.1',
        localBindPort: 0,
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
