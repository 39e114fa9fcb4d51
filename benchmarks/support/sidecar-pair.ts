// Benchmark child: a client sidecar and a server sidecar (real mTLS, real certificates) in front of
// an HTTP app given as argv[2]; prints the client sidecar's upstream port as JSON and the PEMs used.
// The sidecars are the build in dist/ (what `isthmus connect proxy` runs; `npm run build` first),
// not the sources through tsx, whose output names every closure it makes, per connection here.
import { announce, proxyLeaves, startSidecarPair, webToApi } from './bench-mesh.js';

// The same certificates for HAProxy in argv[3] (the DNS SAN matches the SNI: HAProxy checks the name against it).
const leaves = await proxyLeaves(process.argv[3]);
const { server, client } = await startSidecarPair({ appPort: Number(process.argv[2]), protocol: 'tcp', leaves, policy: webToApi({ Action: 'allow' }) });
announce({ port: client.upstreamPort('api'), pid: process.pid }, [client, server]);
