import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { inspectCertificate } from '../ca/index.js';
import type { FlowRecord } from '../dataflow/index.js';
import { DataPlaneClient, dataPlaneService, toWire, type SidecarConfigMessage } from '../dataplane-client/index.js';
import { setupServer, TD } from './testing/server-setup.js';

const actor = { accessorId: 'a', description: 't', dc: 'dc1' };
const stops: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (stops.length) await stops.pop()!();
});

const setup = (defaultPolicy: 'allow' | 'deny' = 'allow') => setupServer(stops, { defaultPolicy });

const record = (over: Partial<FlowRecord> = {}): FlowRecord => ({
  id: 'r1',
  traceId: 'ab'.repeat(16),
  requestIndex: 0,
  hop: 'server-sidecar',
  dc: 'dc1',
  reporter: 'web-sidecar-proxy',
  source: { spiffeId: '', service: 'web', namespace: 'default', dc: 'dc1' },
  destination: { spiffeId: '', service: 'api', namespace: 'default', dc: 'dc1' },
  sni: '',
  verdict: 'denied',
  reason: 'denied by intention web => api',
  intentionId: 'i1',
  intentionDc: 'dc1',
  intentionIndex: 3,
  startTime: Date.now(),
  durationMs: 1,
  bytesIn: 0,
  bytesOut: 0,
  ...over,
});

describe('data-plane channel', () => {
  it('pushes leaf, bundle, upstream endpoints and intentions, pushes again on change, and stores reported flows', async () => {
    const { catalog, intentions, flows, server } = await setup();
    const { serviceSchema } = await import('../catalog/index.js');
    await catalog.registerService(
      serviceSchema.parse({ Name: 'api', Port: 9000, Connect: { SidecarService: { Port: 21500, Check: { TTL: '1h', Status: 'passing' } } } }),
    );
    await catalog.registerService(
      serviceSchema.parse({
        Name: 'web',
        Port: 1,
        Connect: { SidecarService: { Port: 21501, Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindPort: 9191 }] } } },
      }),
    );
    const configs: SidecarConfigMessage[] = [];
    const client = new DataPlaneClient({ serverAddr: server.address, serviceId: 'web-sidecar-proxy', onConfig: (c) => configs.push(c), flushMs: 50 });
    client.start();
    stops.push(() => client.stop());
    const until = async (fn: () => boolean) => {
      for (let i = 0; i < 100 && !fn(); i++) await new Promise((r) => setTimeout(r, 30));
      expect(fn()).toBe(true);
    };
    await until(() => configs.length >= 1);
    const first = configs[0];
    expect(inspectCertificate(first.leaf!.certPem).uris).toEqual([`spiffe://${TD}/ns/default/dc/dc1/svc/web`]);
    expect(first.inbound).toMatchObject({ bindPort: 21501, localAppPort: 1, protocol: 'tcp' });
    expect(first.upstreams[0]).toMatchObject({ name: 'api', localBindPort: 9191 });
    expect(first.upstreams[0].endpoints[0]).toMatchObject({
      port: 21500,
      sni: `api.default.dc1.internal.${TD}`,
      spiffeId: `spiffe://${TD}/ns/default/dc/dc1/svc/api`,
    });
    expect(JSON.parse(first.intentions!.intentionsJson)).toEqual([]);

    await intentions.upsertExact('api', 'web', { Action: 'deny' }, actor);
    await until(() => configs.length >= 2);
    expect(JSON.parse(configs[1].intentions!.intentionsJson).map((i: { SourceName: string }) => i.SourceName)).toEqual(['api']);
    expect(configs[1].version).toBeGreaterThan(configs[0].version);

    client.report(record());
    await until(() => flows.size() === 1);
    expect(flows.query({ trace: 'ab'.repeat(16) })[0]).toMatchObject({ verdict: 'denied', intentionId: 'i1' });
  });

  it("takes the inbound's protocol from the config entries before the registration, and the caller's passive health check per upstream", async () => {
    const { catalog, configEntries, server } = await setup();
    const { serviceSchema } = await import('../catalog/index.js');
    const actor = { accessorId: 'a', description: 'test', dc: 'dc1' };
    await catalog.registerService(
      serviceSchema.parse({
        Name: 'web',
        Port: 1,
        Connect: {
          SidecarService: {
            Port: 21501,
            Proxy: {
              Config: { protocol: 'tcp' },
              Upstreams: [
                { DestinationName: 'api', LocalBindPort: 9191 },
                { DestinationName: 'db', LocalBindPort: 9192 },
              ],
            },
          },
        },
      }),
    );
    const configs: SidecarConfigMessage[] = [];
    const client = new DataPlaneClient({ serverAddr: server.address, serviceId: 'web-sidecar-proxy', onConfig: (c) => configs.push(c), flushMs: 50 });
    client.start();
    stops.push(() => client.stop());
    const until = async (fn: () => boolean) => {
      for (let i = 0; i < 100 && !fn(); i++) await new Promise((r) => setTimeout(r, 30));
      expect(fn()).toBe(true);
    };
    await until(() => configs.length >= 1);
    expect(configs.at(-1)!.inbound?.protocol).toBe('tcp');
    expect(configs.at(-1)!.upstreams.map((u) => u.passiveHealthCheckJson)).toEqual(['', '']);
    await configEntries.put(
      {
        Kind: 'service-defaults',
        Name: 'web',
        Protocol: 'http',
        UpstreamConfig: {
          Defaults: { PassiveHealthCheck: { MaxFailures: 7 } },
          Overrides: [{ Name: 'db', PassiveHealthCheck: { MaxFailures: 2, BaseEjectionTime: '5s' } }],
        },
      },
      {},
      actor,
    );
    await until(() => configs.at(-1)!.inbound?.protocol === 'http');
    expect(configs.at(-1)!.upstreams.map((u) => JSON.parse(u.passiveHealthCheckJson))).toEqual([
      { MaxFailures: 7 },
      { MaxFailures: 2, BaseEjectionTime: '5s' },
    ]);
  });

  it('refuses a stream that does not start with hello, and drops malformed flow records naming them', async () => {
    const { server, flows } = await setup();
    const Service = dataPlaneService();
    const raw = new Service(server.address, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
      stream(): grpc.ClientDuplexStream<unknown, SidecarConfigMessage>;
    };
    stops.push(() => raw.close());
    const call = raw.stream();
    const got = await new Promise<SidecarConfigMessage>((resolve) => {
      call.on('data', resolve);
      call.on('error', () => {});
      call.write({ flows: { records: [toWire(record())] } });
    });
    expect(got).toMatchObject({ errorCode: 'ISTHMUS_ERR_INVALID', error: expect.stringContaining('hello') });
    expect(flows.size()).toBe(0);

    const configs: SidecarConfigMessage[] = [];
    const client = new DataPlaneClient({ serverAddr: server.address, service: 'web', onConfig: (c) => configs.push(c), flushMs: 20 });
    client.start();
    stops.push(() => client.stop());
    for (let i = 0; i < 100 && configs.length === 0; i++) await new Promise((r) => setTimeout(r, 30));
    client.report(record({ traceId: 'not-hex' }));
    client.report(record({ id: 'r2', verdict: 'maybe' as never }));
    client.report(record({ id: 'r3' }));
    for (let i = 0; i < 100 && flows.size() === 0; i++) await new Promise((r) => setTimeout(r, 30));
    expect(flows.query({}).map((f) => f.id)).toEqual(['r3']);
    expect(server.rejectedFlows).toBe(2);
  });

  it('refuses a sidecar whose token cannot write the service, with a final error', async () => {
    const { server } = await setup('deny');
    let fatal: [string, string] | undefined;
    const client = new DataPlaneClient({ serverAddr: server.address, service: 'web', onConfig: () => {}, onFatal: (code, msg) => (fatal = [code, msg]) });
    client.start();
    stops.push(() => client.stop());
    for (let i = 0; i < 100 && !fatal; i++) await new Promise((r) => setTimeout(r, 30));
    expect(fatal).toEqual(['ISTHMUS_ERR_PERMISSION_DENIED', 'token lacks service:write on web']);
  });
});
