// Two services behind `isthmus connect proxy` sidecars fed by a real `isthmus dev` over gRPC:
// a call goes through, an intention denies it, and the denied flow names the intention.
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, freePort, runCli, type ServerProcess } from '../harness/server-process.js';
import { startSidecarPair, type SidecarPair } from '../harness/sidecars.js';

let srv: ServerProcess;
let pair: SidecarPair;
let upstreamPort = 0;

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.setTimeout(3000, () => req.destroy(new Error('timeout')));
  });
}

beforeAll(async () => {
  pair = await startSidecarPair((req, res) => res.end(`api says hi to ${req.url}`));
  srv = pair.srv;
  upstreamPort = pair.upstreamPort;
});

afterAll(async () => {
  await pair?.stop();
});

describe('sidecars end to end', () => {
  it('carries a call, then refuses it once an intention denies it, and records who denied it', async () => {
    const ok = await get(upstreamPort, '/hello');
    expect(ok).toEqual({ status: 200, body: 'api says hi to /hello' });

    const created = await runCli(['intention', 'create', '-deny', 'web', 'api'], { ISTHMUS_HTTP_ADDR: srv.addr });
    expect(created.code).toBe(0);
    const id = (await api(srv.url, 'GET', '/v1/connect/intentions/exact?source=web&destination=api')).body.ID;
    // The new intention is pushed to the sidecar; wait until a new connection is refused.
    let refused = false;
    for (let i = 0; i < 50 && !refused; i++) {
      refused = await get(upstreamPort, '/hello').then(
        () => false,
        () => true,
      );
      if (!refused) await new Promise((r) => setTimeout(r, 100));
    }
    expect(refused).toBe(true);

    let denied: any[] = [];
    for (let i = 0; i < 30 && denied.length === 0; i++) {
      denied = (await api(srv.url, 'GET', '/v1/flows?verdict=denied&to=api')).body.Records;
      if (denied.length === 0) await new Promise((r) => setTimeout(r, 200));
    }
    expect(denied[0]).toMatchObject({ hop: 'server-sidecar', verdict: 'denied', intentionId: id, source: { service: 'web' }, destination: { service: 'api' } });
    const trace = denied[0].traceId;
    // Each sidecar reports its own hop in its next batch; both arrive under the same traceId.
    let both: string[] = [];
    for (let i = 0; i < 30 && both.length < 2; i++) {
      both = (await api(srv.url, 'GET', `/v1/flows?trace=${trace}`)).body.Records.map((r: any) => r.hop).sort();
      if (both.length < 2) await new Promise((r) => setTimeout(r, 200));
    }
    expect(both).toEqual(['client-sidecar', 'server-sidecar']);
    const cli = await runCli(['flows', '--verdict', 'denied', '--to', 'api'], { ISTHMUS_HTTP_ADDR: srv.addr });
    expect(cli.stdout).toContain(id);
  });

  it('runs the application after "--" with <UPSTREAM>_ADDR and _PORT set, and exits with it', async () => {
    const port = await freePort();
    await api(srv.url, 'PUT', '/v1/agent/service/register', {
      Name: 'batch',
      Port: 1,
      Connect: { SidecarService: { Port: await freePort(), Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindPort: port }] } } },
    });
    const grpc = pair.grpcAddr;
    const r = await runCli(
      [
        'connect',
        'proxy',
        '--sidecar-for',
        'batch',
        '--grpc-addr',
        grpc,
        '--',
        process.execPath,
        '-e',
        'console.log("UPSTREAM=" + process.env.API_ADDR + " " + process.env.API_PORT)',
      ],
      { ISTHMUS_HTTP_ADDR: srv.addr },
    );
    expect(r.stdout).toContain(`UPSTREAM=127.0.0.1:${port} ${port}`);
    expect(r.stdout).toContain('Application exited with 0');
    expect(r.code).toBe(0);
  });

  it('refuses a sidecar for a service that is not registered, with one clear line', async () => {
    const grpc = pair.grpcAddr;
    const r = await runCli(['connect', 'proxy', '--sidecar-for', 'ghost', '--grpc-addr', grpc]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^Error: no service with ID "ghost-sidecar-proxy" is registered/m);
  });
});
