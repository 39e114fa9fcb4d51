// Benchmark child: the Isthmus HTTP/2 pair in one process, a client sidecar with an http2 upstream
// (its local listener spoken to in h2c) -> mTLS with ALPN h2 -> a server sidecar with an http2 inbound
// -> the h2c app on argv[2], with an allow intention web => api. Writes the same certificates for
// HAProxy into argv[3] and prints the upstream's port and its pid as JSON. Runs the build in dist/,
// as sidecar-pair.ts.
import { Sidecar, TD, bundle, leaf, svc, webToApi, writeProxyPems } from './bench-mesh.js';

const appPort = Number(process.argv[2]);
const outDir = process.argv[3];
const sni = `api.default.dc1.internal.${TD}`;
const web = await leaf('web', [`web.default.dc1.internal.${TD}`]);
const api = await leaf('api', [sni]);
writeProxyPems(outDir, { web, api });

const policy = webToApi({ Action: 'allow' });
const server = new Sidecar({
  config: {
    service: svc('api'),
    leaf: api,
    bundle,
    inbound: { bindHost: '127.0.0.1', bindPort: 0, localAppHost: '127.0.0.1', localAppPort: appPort, protocol: 'http2' },
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
        protocol: 'http2',
        endpoints: [{ host: '127.0.0.1', port: server.inboundPort, sni, spiffeId: api.spiffeId }],
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
