// Benchmark child: the Isthmus HTTP/2 pair in one process, a client sidecar with an http2 upstream
// (its local listener spoken to in h2c) -> mTLS with ALPN h2 -> a server sidecar with an http2 inbound
// -> the h2c app on argv[2], with an allow intention web => api. Writes the same certificates for
// HAProxy into argv[3] and prints the upstream's port and its pid as JSON. Runs the build in dist/,
// as sidecar-pair.ts.
import { announce, proxyLeaves, startSidecarPair, webToApi } from './bench-mesh.js';

const leaves = await proxyLeaves(process.argv[3]);
const { server, client } = await startSidecarPair({
  appPort: Number(process.argv[2]),
  protocol: 'http2',
  upstreamProtocol: 'http2',
  leaves,
  policy: webToApi({ Action: 'allow' }),
});
announce({ port: client.upstreamPort('api'), pid: process.pid }, [client, server]);
