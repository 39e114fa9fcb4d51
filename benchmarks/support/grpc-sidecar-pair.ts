// Benchmark child: a client sidecar and a server sidecar (real mTLS, real certificates) in front of
// a gRPC app on argv[2], the server sidecar's inbound protocol argv[3] (grpc: HTTP/2 ended and each
// call checked against an L7 intention; tcp: bytes relayed) and the upstream's protocol argv[4].
// Prints the client sidecar's upstream port as JSON. Runs the build in dist/, as sidecar-pair.ts.
import type * as SidecarModule from '../../src/sidecar/index.js';
import { Sidecar, TD, bundle, leaf, svc, webToApi } from './bench-mesh.js';

const appPort = Number(process.argv[2]);
const protocol = process.argv[3] as SidecarModule.SidecarProtocol;
const upstreamProtocol = process.argv[4] as SidecarModule.SidecarProtocol;
// grpc: an L7 intention (each call's path checked), as a gRPC service's would be. tcp: an allow
// intention (a tcp listener refuses a connection an L7 rule decides, since it cannot check it).
const policy =
  protocol === 'tcp'
    ? webToApi({ Action: 'allow' })
    : webToApi({
        Permissions: [
          { Action: 'deny', HTTP: { PathExact: '/isthmus.test.Echo/Denied' } },
          { Action: 'allow', HTTP: { PathPrefix: '/isthmus.test.Echo/' } },
        ],
      });
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
