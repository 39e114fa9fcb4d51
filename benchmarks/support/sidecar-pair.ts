// Benchmark child: a client sidecar and a server sidecar (real mTLS, real certificates) in front of
// an HTTP app given as argv[2]; prints the client sidecar's upstream port as JSON and the PEMs used.
// The sidecars are the build in dist/ (what `isthmus connect proxy` runs; `npm run build` first),
// not the sources through tsx, whose output names every closure it makes, per connection here.
import { Sidecar, TD, bundle, leaf, svc, webToApi, writeProxyPems } from './bench-mesh.js';

const appPort = Number(process.argv[2]);
const outDir = process.argv[3];
const web = await leaf('web', [`web.default.dc1.internal.${TD}`]);
const api = await leaf('api', [`api.default.dc1.internal.${TD}`]);
// The same certificates for HAProxy (the DNS SAN matches the SNI: HAProxy checks the name against it).
writeProxyPems(outDir, { web, api });

const policy = webToApi({ Action: 'allow' });
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
