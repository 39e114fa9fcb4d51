// A dev server with an HTTP app "api" and a caller "web", each behind an `isthmus connect proxy`
// process: web's upstream api is on `upstreamPort`, api's sidecar listens on `apiSidecarPort`.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { api, freePort, startCli, startServer, type ServerProcess } from './server-process.js';

export interface SidecarPair {
  srv: ServerProcess;
  grpcAddr: string;
  upstreamPort: number;
  apiSidecarPort: number;
  stop(): Promise<void>;
}

export async function startSidecarPair(handler: http.RequestListener): Promise<SidecarPair> {
  const stops: (() => Promise<unknown> | void)[] = [];
  const srv = await startServer('dev', []);
  stops.push(() => srv.stop());
  const app = http.createServer(handler);
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  stops.push(
    () =>
      new Promise<void>((r) => {
        app.closeAllConnections();
        app.close(() => r());
      }),
  );
  const apiSidecarPort = await freePort();
  const upstreamPort = await freePort();
  const env = { ISTHMUS_HTTP_ADDR: srv.addr };
  const grpcAddr = /gRPC: (\S+)/.exec(srv.output())![1];
  await api(srv.url, 'PUT', '/v1/agent/service/register', {
    Name: 'api',
    Port: (app.address() as AddressInfo).port,
    Connect: { SidecarService: { Port: apiSidecarPort } },
  });
  await api(srv.url, 'PUT', '/v1/agent/service/register', {
    Name: 'web',
    Port: 1,
    Connect: { SidecarService: { Port: await freePort(), Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindPort: upstreamPort }] } } },
  });
  const a = await startCli(['connect', 'proxy', '--sidecar-for', 'api', '--grpc-addr', grpcAddr], /Sidecar for api/, env);
  stops.push(() => a.stop());
  const w = await startCli(['connect', 'proxy', '--sidecar-for', 'web', '--grpc-addr', grpcAddr], /upstream api: .*\(1 endpoint/, env);
  stops.push(() => w.stop());
  return {
    srv,
    grpcAddr,
    upstreamPort,
    apiSidecarPort,
    stop: async () => {
      while (stops.length) await stops.pop()!();
    },
  };
}
