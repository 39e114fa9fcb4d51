// Endpoints follow health, with real processes: one DC (`isthmus dev`), service api with two
// instances (each an HTTP app process checked every second, behind its own `isthmus connect proxy`)
// and web's sidecar with upstream api. A killed app (not deregistered) takes its sidecar out of
// web's pushed endpoints through the sidecar's automatic alias check within about the app check's
// interval; a killed sidecar fails its automatic listening check when its data-plane stream ends
// (the check itself runs on Consul's 10 s interval).
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataPlaneClient, type SidecarConfigMessage } from '../../src/dataplane-client/index.js';
import { api, freePort, startCli, startServer, type ServerProcess } from '../harness/server-process.js';
import { until } from '../harness/until.js';

interface Instance {
  id: string;
  appPort: number;
  sidecarPort: number;
  app: ChildProcess;
  proxy: Awaited<ReturnType<typeof startCli>>;
}

const stops: (() => Promise<unknown> | void)[] = [];
let srv: ServerProcess;
let upstreamPort = 0;
const instances: Instance[] = [];
/** What the server pushes to web's sidecar: a second stream for the same proxy ID gets the same configurations. */
const pushes: { at: number; apiPorts: number[] }[] = [];

/** An HTTP app in a process of its own, answering with its instance ID. */
async function startApp(id: string, port: number): Promise<ChildProcess> {
  const script = `require('node:http').createServer((q, s) => s.end(process.env.INSTANCE)).listen(+process.env.PORT, '127.0.0.1', () => console.log('listening'))`;
  const child = spawn(process.execPath, ['-e', script], { env: { ...process.env, INSTANCE: id, PORT: String(port) }, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d) => String(d).includes('listening') && resolve());
    child.once('exit', (code) => reject(new Error(`app ${id} exited with ${code}`)));
  });
  stops.push(() => kill9(child));
  return child;
}

async function kill9(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGKILL');
  await exited;
}

/** One GET through web's upstream on a new connection: the instance that answered, or undefined. */
function callApi(): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port: upstreamPort, path: '/', agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(res.statusCode === 200 ? body : undefined));
      res.on('error', () => resolve(undefined));
    });
    req.on('error', () => resolve(undefined));
    req.setTimeout(2000, () => req.destroy(new Error('timeout')));
  });
}

const passingSidecars = async () =>
  ((await api(srv.url, 'GET', '/v1/health/connect/api?passing')).body as { Service: { ID: string } }[]).map((e) => e.Service.ID).sort();
const agentCheck = async (id: string) => (await api(srv.url, 'GET', '/v1/agent/checks')).body[id];

beforeAll(async () => {
  srv = await startServer('dev', []);
  stops.push(() => srv.stop());
  const grpcAddr = /gRPC: (\S+)/.exec(srv.output())![1];
  const env = { ISTHMUS_HTTP_ADDR: srv.addr };
  upstreamPort = await freePort();
  for (const id of ['api-1', 'api-2']) {
    const appPort = await freePort();
    const sidecarPort = await freePort();
    const app = await startApp(id, appPort);
    const reg = await api(srv.url, 'PUT', '/v1/agent/service/register', {
      ID: id,
      Name: 'api',
      Port: appPort,
      Check: { HTTP: `http://127.0.0.1:${appPort}/health`, Interval: '1s', Timeout: '1s' },
      Connect: { SidecarService: { Port: sidecarPort } },
    });
    expect(reg.status).toBe(200);
    const proxy = await startCli(['connect', 'proxy', '--sidecar-for', id, '--grpc-addr', grpcAddr], /Sidecar for api/, env);
    stops.push(() => proxy.stop());
    instances.push({ id, appPort, sidecarPort, app, proxy });
  }
  await api(srv.url, 'PUT', '/v1/agent/service/register', {
    Name: 'web',
    Port: 1,
    Connect: { SidecarService: { Port: await freePort(), Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindPort: upstreamPort }] } } },
  });
  const web = await startCli(['connect', 'proxy', '--sidecar-for', 'web', '--grpc-addr', grpcAddr], /upstream api: /, env);
  stops.push(() => web.stop());
  const observer = new DataPlaneClient({
    serverAddr: grpcAddr,
    serviceId: 'web-sidecar-proxy',
    onConfig: (m: SidecarConfigMessage) => {
      const up = m.upstreams.find((u) => u.name === 'api');
      pushes.push({ at: Date.now(), apiPorts: (up?.endpoints ?? []).map((e) => e.port).sort((a, b) => a - b) });
    },
  });
  observer.start();
  stops.push(() => observer.stop());
}, 90_000);

afterAll(async () => {
  while (stops.length) await stops.pop()!();
});

describe('endpoints follow health', () => {
  it("gives each sidecar Consul's listening and aliasing checks, shown in health answers and the agent's checks", async () => {
    await until('both api sidecars passing', async () => (await passingSidecars()).length === 2);
    const [one, two] = instances;
    const connect = (await api(srv.url, 'GET', '/v1/health/connect/api')).body as any[];
    expect(connect.map((e) => e.Service.ID)).toEqual(['api-1-sidecar-proxy', 'api-2-sidecar-proxy']);
    const nodeChecks = ((await api(srv.url, 'GET', `/v1/health/node/${connect[0].Node.Node}`)).body as any[]).filter((c) => c.ServiceID === '');
    for (const [e, inst] of [
      [connect[0], one],
      [connect[1], two],
    ] as const) {
      const sc = `${inst.id}-sidecar-proxy`;
      expect(e.Checks.map((c: any) => c.CheckID).sort()).toEqual([...nodeChecks.map((c) => c.CheckID), `service:${sc}:1`, `service:${sc}:2`].sort());
      expect(e.Checks.find((c: any) => c.CheckID === `service:${sc}:1`)).toMatchObject({
        Name: 'Connect Sidecar Listening',
        Status: 'passing',
        Output: `TCP connect 127.0.0.1:${inst.sidecarPort}: Success`,
        ServiceID: sc,
        ServiceName: 'api-sidecar-proxy',
        Type: 'tcp',
      });
      expect(e.Checks.find((c: any) => c.CheckID === `service:${sc}:2`)).toMatchObject({
        Name: `Connect Sidecar Aliasing ${inst.id}`,
        Status: 'passing',
        Output: 'All checks passing.',
        ServiceID: sc,
        Type: 'alias',
      });
    }
    const byName = (await api(srv.url, 'GET', '/v1/health/service/api-sidecar-proxy')).body as any[];
    expect(byName.map((e) => e.Checks.map((c: any) => c.CheckID).sort())).toEqual(connect.map((e) => e.Checks.map((c: any) => c.CheckID).sort()));
    const agent = (await api(srv.url, 'GET', '/v1/agent/checks')).body;
    for (const inst of instances) {
      expect(agent[`service:${inst.id}-sidecar-proxy:1`]).toMatchObject({ Name: 'Connect Sidecar Listening', Status: 'passing' });
      expect(agent[`service:${inst.id}-sidecar-proxy:2`]).toMatchObject({ Name: `Connect Sidecar Aliasing ${inst.id}`, Status: 'passing' });
    }
  });

  it("takes a killed app's sidecar out of web's endpoints within 2 s, seen in health, in the push and in calls", async () => {
    const [one, two] = instances;
    await until('both instances pushed to web', () => pushes.at(-1)?.apiPorts.length === 2);
    const seen = new Set<string>();
    await until('calls reaching both instances', async () => {
      const who = await callApi();
      if (who) seen.add(who);
      return seen.size === 2;
    });

    const t0 = Date.now();
    await kill9(one.app);
    let healthAt = 0;
    let callsAt = 0;
    const health = (async () => {
      while (!healthAt && Date.now() - t0 < 10_000) {
        if ((await passingSidecars()).join() === 'api-2-sidecar-proxy') healthAt = Date.now();
        else await new Promise((r) => setTimeout(r, 20));
      }
    })();
    // Calls stop reaching the dead instance: the first of ten calls in a row all answered by api-2.
    const calls = (async () => {
      let run: number[] = [];
      while (!callsAt && Date.now() - t0 < 10_000) {
        const at = Date.now();
        const who = await callApi();
        if (who === two.id) run.push(at);
        else run = [];
        if (run.length === 10) callsAt = run[0];
      }
    })();
    await Promise.all([health, calls]);
    const pushed = pushes.find((p) => p.at >= t0 && p.apiPorts.join() === String(two.sidecarPort));
    const ms = { health: healthAt - t0, push: pushed ? pushed.at - t0 : -1, calls: callsAt - t0 };
    console.log(
      `killed app api-1: out of /v1/health/connect/api?passing after ${ms.health} ms, out of web's push after ${ms.push} ms, calls only reach api-2 after ${ms.calls} ms`,
    );
    expect(healthAt).toBeGreaterThan(0);
    expect(pushed).toBeDefined();
    expect(callsAt).toBeGreaterThan(0);
    expect(ms.health).toBeLessThan(2000);
    expect(ms.push).toBeLessThan(2000);
    expect(ms.calls).toBeLessThan(2000);

    const alias = await agentCheck('service:api-1-sidecar-proxy:2');
    expect(alias.Status).toBe('critical');
    expect(alias.Output).toMatch(/^Aliased check "Service 'api' check" failing: HTTP GET http:\/\/127\.0\.0\.1:\d+\/health: ECONNREFUSED$/);
    // The proxy itself still listens: only the alias took it out. The app was not deregistered.
    expect((await agentCheck('service:api-1-sidecar-proxy:1')).Status).toBe('passing');
    expect((await api(srv.url, 'GET', '/v1/agent/service/api-1')).status).toBe(200);
  });

  it("fails a killed sidecar's listening check as soon as its data-plane stream ends, taking it out of the endpoints", async () => {
    const [, two] = instances;
    expect((await agentCheck('service:api-2-sidecar-proxy:1')).Status).toBe('passing');
    const t0 = Date.now();
    await kill9(two.proxy.child);
    const check = await until(
      'the listening check of the killed sidecar to fail',
      async () => {
        const c = await agentCheck('service:api-2-sidecar-proxy:1');
        return c.Status === 'critical' ? c : undefined;
      },
      15_000,
      50,
    );
    const ms = Date.now() - t0;
    console.log(`killed sidecar api-2-sidecar-proxy: listening check critical after ${ms} ms (interval 10 s, rechecked when its stream ended)`);
    expect(check.Output).toBe(`TCP connect 127.0.0.1:${two.sidecarPort}: ECONNREFUSED`);
    expect(ms).toBeLessThan(2000);
    expect(await passingSidecars()).toEqual([]);
    await until('an empty endpoint set pushed to web', () => pushes.at(-1)?.apiPorts.length === 0, 2000);
  }, 30_000);
});
