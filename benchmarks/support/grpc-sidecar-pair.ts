// Benchmark child: a client sidecar and a server sidecar (real mTLS, real certificates) in front of
// a gRPC app on argv[2], the server sidecar's inbound protocol argv[3] (grpc: HTTP/2 ended and each
// call checked against an L7 intention; tcp: bytes relayed) and the upstream's protocol argv[4].
// Prints the client sidecar's upstream port as JSON. Runs the build in dist/, as sidecar-pair.ts.
import type * as SidecarModule from '../../src/sidecar/index.js';
import { announce, leaf, startSidecarPair, webToApi } from './bench-mesh.js';

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
const { server, client } = await startSidecarPair({
  appPort,
  protocol,
  upstreamProtocol,
  leaves: { web: await leaf('web'), api: await leaf('api') },
  policy,
});
announce({ port: client.upstreamPort('api'), pid: process.pid }, [client, server]);
