// Malformed messages on both gRPC listeners of a server: the plaintext data-plane streams (sidecar
// Stream, gateway Gateway) and the federation mTLS service (Join, PeerStream, Forward). Raw bytes
// (a custom serializer), fields of the wrong wire type, values nothing takes, huge repeated fields,
// messages out of order. Each is answered with a clear gRPC status whose details lead with the
// Isthmus code, nothing crashes, nothing is stored, and other clients keep being served.
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newKeyPem, publicKeyPemOf, signLeaf } from '../../src/ca/index.js';
import type { FlowRecord } from '../../src/dataflow/index.js';
import { DataPlaneClient, dataPlaneService, toWire, type SidecarConfigMessage } from '../../src/dataplane-client/index.js';
import { serverSni } from '../../src/core/names.js';
import { decodeJoinToken } from '../../src/federation/index.js';
import { federationService } from '../../src/federation/proto.js';
import { BUDGET_MS, call, fuzz, leaks, rng, SEED, startFuzzRegion, type FuzzRegion, type Rng } from './support.js';

let fr: FuzzRegion;
let dp: grpc.Client;
let fedAnon: grpc.Client;
let fedPeer: grpc.Client;
let watcher: DataPlaneClient;
const watcherConfigs: SidecarConfigMessage[] = [];
const stored: FlowRecord[] = [];
let td = '';

// ---- protobuf bytes by hand ----

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 127) {
    out.push((n % 128) | 128);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}
const tag = (no: number, wire: number) => varint(no * 8 + wire);
const bytesField = (no: number, payload: Buffer | string) => {
  const b = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  return Buffer.concat([tag(no, 2), varint(b.length), b]);
};
const varintField = (no: number, v: number) => Buffer.concat([tag(no, 0), varint(v)]);

/** SidecarMessage{hello: Hello{service, namespace}}. */
const helloBytes = (service = 'web', namespace = 'default') => bytesField(1, Buffer.concat([bytesField(2, service), bytesField(3, namespace)]));

// ---- calls with raw frames ----

type Frame = Buffer | Record<string, unknown>;
interface Outcome {
  status?: grpc.StatusObject;
  messages: unknown[];
}

function serializer(def: grpc.MethodDefinition<unknown, unknown>) {
  return (x: Frame) => (Buffer.isBuffer(x) ? x : def.requestSerialize(x));
}

/** Writes `frames` on a new stream; the status if the server ends it within `waitMs`, else none (the stream is cancelled). */
async function stream(client: grpc.Client, service: grpc.ServiceDefinition, method: string, frames: Frame[], waitMs = 5000): Promise<Outcome> {
  const def = service[method];
  const c = client.makeBidiStreamRequest(def.path, serializer(def), def.responseDeserialize as (b: Buffer) => unknown);
  const messages: unknown[] = [];
  c.on('data', (m) => messages.push(m));
  c.on('error', () => {});
  const status = new Promise<grpc.StatusObject>((resolve) => c.on('status', resolve));
  for (const f of frames) c.write(f);
  const got = await Promise.race([status, sleep(waitMs).then(() => undefined)]);
  if (!got) c.cancel();
  return { status: got, messages };
}

function unary(client: grpc.Client, method: string, frame: Frame): Promise<{ status: grpc.StatusObject | undefined; value?: any }> {
  const def = federationService().service[method];
  return new Promise((resolve) => {
    let value: unknown;
    const c = client.makeUnaryRequest(
      def.path,
      serializer(def),
      def.responseDeserialize as (b: Buffer) => unknown,
      frame,
      { deadline: Date.now() + 10_000 },
      (err, v) => {
        value = v;
        if (!err) resolve({ status: { code: grpc.status.OK, details: '', metadata: new grpc.Metadata() }, value });
      },
    );
    c.on('status', (s) => {
      if (s.code !== grpc.status.OK) resolve({ status: s, value });
    });
  });
}

const REFUSED = new Set([
  grpc.status.INVALID_ARGUMENT,
  grpc.status.PERMISSION_DENIED,
  grpc.status.NOT_FOUND,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.ALREADY_EXISTS,
  grpc.status.UNAUTHENTICATED,
]);

/** A refusal: a status that says what kind, details that lead with our code and say what, nothing internal. */
function expectRefused(o: { status?: grpc.StatusObject }, code: grpc.status | undefined, where: string, mentions?: string | RegExp): void {
  const s = o.status;
  expect(s, `${where}: the server did not end the stream`).toBeDefined();
  const w = `${where}: status ${s!.code} ${JSON.stringify(s!.details)}`;
  if (code === undefined) expect(REFUSED.has(s!.code), w).toBe(true);
  else expect(s!.code, w).toBe(code);
  expect(leaks(s!.details), w).toBeUndefined();
  if (s!.code !== grpc.status.RESOURCE_EXHAUSTED || /^ISTHMUS_ERR/.test(s!.details)) expect(s!.details, w).toMatch(/^ISTHMUS_ERR_[A-Z_]+: \S/);
  if (mentions) expect(s!.details, w).toMatch(mentions);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const flow = (over: Partial<FlowRecord> = {}): FlowRecord => ({
  id: `f-${Math.random().toString(36).slice(2)}`,
  traceId: 'ab'.repeat(16),
  requestIndex: 0,
  hop: 'server-sidecar',
  dc: 'dc1',
  reporter: 'web-sidecar-proxy',
  source: { spiffeId: '', service: 'web', namespace: 'default', dc: 'dc1' },
  destination: { spiffeId: '', service: 'api', namespace: 'default', dc: 'dc1' },
  sni: '',
  verdict: 'allowed',
  reason: 'fuzz',
  intentionId: '',
  intentionDc: 'dc1',
  intentionIndex: 1,
  startTime: Date.now(),
  durationMs: 1,
  bytesIn: 0,
  bytesOut: 0,
  ...over,
});

/** Random bytes, or a valid encoding damaged: flipped, cut, its wire types changed, lengths lying. */
function garbage(r: Rng, valid: Buffer): Buffer {
  switch (r.int(6)) {
    case 0:
      return Buffer.from(Array.from({ length: r.int(300) }, () => r.int(256)));
    case 1: {
      const b = Buffer.from(valid);
      for (let n = 1 + r.int(4); n > 0; n--) b[r.int(b.length)] ^= 1 << r.int(8);
      return b;
    }
    case 2:
      return valid.subarray(0, r.int(valid.length));
    case 3: {
      // The first tag's wire type replaced (a message field sent as varint, fixed64, group...).
      const b = Buffer.from(valid);
      b[0] = (b[0] & ~7) | r.pick([0, 1, 3, 4, 5, 6, 7]);
      return b;
    }
    case 4:
      // A length prefix far past the end.
      return Buffer.concat([tag(r.pick([1, 2, 3]), 2), varint(r.pick([1000, 2 ** 28, 2 ** 31])), valid]);
    default:
      return Buffer.concat([valid, Buffer.from(Array.from({ length: 1 + r.int(20) }, () => r.int(256)))]);
  }
}

beforeAll(async () => {
  fr = await startFuzzRegion();
  td = fr.region.trustDomain;
  dp = new grpc.Client(fr.region.grpcAddress, grpc.credentials.createInsecure());
  fr.region.flows.subscribe((r) => void stored.push(r));
  // A well-behaved sidecar connected all along: it must keep its stream and its pushes.
  watcher = new DataPlaneClient({ serverAddr: fr.region.grpcAddress, service: 'watcher', onConfig: (c) => void watcherConfigs.push(c) });
  watcher.start();

  // A DC "dc9" joins as an operator's would (token at the primary, Join with it): its server
  // certificate is then one the federation listener takes for PeerStream and Forward.
  const made = await call(fr.url, 'POST', '/v1/federation/token', { Datacenter: 'dc9', TTL: '1h' });
  expect(made.status, made.text).toBe(200);
  const token = decodeJoinToken(made.json.Token);
  const fedAddr = fr.region.federation.address;
  const sni = serverSni({ dc: 'dc1', trustDomain: td });
  const opts = { 'grpc.ssl_target_name_override': sni, 'grpc.default_authority': sni, 'grpc.max_send_message_length': 64 << 20 };
  const trust = { checkServerIdentity: () => undefined };
  fedAnon = new grpc.Client(fedAddr, grpc.credentials.createSsl(Buffer.from(token.root), null, null, trust), opts);
  const keyPem = await newKeyPem();
  const joined = await unary(fedAnon, 'Join', { secret: token.secret, datacenter: 'dc9', publicKeyPem: await publicKeyPemOf(keyPem) });
  expect(joined.status?.code, joined.status?.details).toBe(grpc.status.OK);
  const inter: string = joined.value.intermediateCertPem;
  const leaf = await signLeaf({
    signer: { certPem: inter, keyPem },
    spiffeId: `spiffe://${td}/agent/server/dc/dc9`,
    dnsNames: [`server.dc9.${td}`],
    commonName: 'server.dc9',
    ttlMs: 3_600_000,
  });
  fedPeer = new grpc.Client(
    fedAddr,
    grpc.credentials.createSsl(
      Buffer.from(fr.region.ca.bundle().roots.join('\n')),
      Buffer.from(leaf.keyPem),
      Buffer.from(`${leaf.certPem.trim()}\n${inter.trim()}\n`),
      trust,
    ),
    opts,
  );
  for (let i = 0; i < 100 && watcherConfigs.length === 0; i++) await sleep(50);
  expect(watcherConfigs.length).toBeGreaterThan(0);
});

afterAll(async () => {
  watcher?.stop();
  dp?.close();
  fedAnon?.close();
  fedPeer?.close();
  await fr?.stop();
});

describe('data-plane streams', () => {
  const svc = () => dataPlaneService().service;

  it('refuses messages out of order with INVALID_ARGUMENT naming the rule, storing nothing', async () => {
    const index = fr.region.store.index();
    const before = stored.length;
    const flows = { flows: { records: [toWire(flow())] } };
    expectRefused(await stream(dp, svc(), 'Stream', [flows]), grpc.status.INVALID_ARGUMENT, 'flows before hello', /first message of a stream must be hello/);
    expectRefused(await stream(dp, svc(), 'Stream', [{ ack: { version: 1 } }]), grpc.status.INVALID_ARGUMENT, 'ack before hello', /must be hello/);
    expectRefused(await stream(dp, svc(), 'Gateway', [flows]), grpc.status.INVALID_ARGUMENT, 'gateway flows before hello', /must be hello/);
    const twice = await stream(dp, svc(), 'Stream', [helloBytes(), helloBytes()], 3000);
    expectRefused(twice, grpc.status.INVALID_ARGUMENT, 'hello twice', /hello was sent twice/);
    // The refusal is also the last message, for proxies that act on it.
    expect(twice.messages.at(-1)).toMatchObject({ errorCode: 'ISTHMUS_ERR_INVALID', error: 'hello was sent twice' });
    // A field of a kind this server does not know (a newer proxy) is no hello either.
    expectRefused(await stream(dp, svc(), 'Stream', [bytesField(9, 'future')]), grpc.status.INVALID_ARGUMENT, 'unknown field first', /must be hello/);
    await sleep(100);
    expect(stored.length).toBe(before);
    expect(fr.region.store.index()).toBe(index);
  });

  it('refuses bytes that are no message, and fields of the wrong wire type, with INVALID_ARGUMENT', async () => {
    const index = fr.region.store.index();
    const cases: [string, Buffer][] = [
      ['hello as a varint', varintField(1, 150)],
      ['hello length past the end', Buffer.concat([tag(1, 2), varint(1000), Buffer.from('ab')])],
      ['a group start', Buffer.from([0x0b])],
      ['wire type 7', Buffer.from([0x0f, 0x01])],
      ['a service name as fixed32', bytesField(1, Buffer.concat([tag(2, 5), Buffer.from([1, 2])]))],
    ];
    for (const [what, bytes] of cases) {
      const o = await stream(dp, svc(), 'Stream', [bytes]);
      expectRefused(o, grpc.status.INVALID_ARGUMENT, what, /not a valid SidecarMessage|must be hello|hello\./);
    }
    expectRefused(
      await stream(dp, svc(), 'Gateway', [varintField(1, 150)]),
      grpc.status.INVALID_ARGUMENT,
      'gateway hello as a varint',
      /not a valid GatewayMessage/,
    );
    // After a good hello, garbage ends the stream the same way.
    const after = await stream(dp, svc(), 'Stream', [helloBytes(), Buffer.from([0x12, 0x80])], 3000);
    expectRefused(after, grpc.status.INVALID_ARGUMENT, 'garbage after hello', /message 2 is not a valid SidecarMessage/);
    expect(fr.region.store.index()).toBe(index);
  });

  it('refuses names and addresses in hellos that are not names, naming the field', async () => {
    const index = fr.region.store.index();
    for (const bad of ['../../etc/passwd', 'a/b', 'x\u0000y', '<script>', 'a\r\nX-Injected: 1', 'x'.repeat(300)]) {
      expectRefused(
        await stream(dp, svc(), 'Stream', [{ hello: { service: bad } }]),
        grpc.status.INVALID_ARGUMENT,
        `service ${JSON.stringify(bad)}`,
        /hello\.service:/,
      );
      expectRefused(
        await stream(dp, svc(), 'Stream', [{ hello: { service: 'web', namespace: bad } }]),
        grpc.status.INVALID_ARGUMENT,
        `namespace ${JSON.stringify(bad)}`,
        /hello\.namespace:/,
      );
      expectRefused(
        await stream(dp, svc(), 'Stream', [{ hello: { serviceId: bad } }]),
        grpc.status.INVALID_ARGUMENT,
        `service_id ${JSON.stringify(bad)}`,
        /hello\.service_id:/,
      );
      expectRefused(
        await stream(dp, svc(), 'Gateway', [{ hello: { id: bad, lanAddress: '127.0.0.1:8443' } }]),
        grpc.status.INVALID_ARGUMENT,
        `gateway id ${JSON.stringify(bad)}`,
        /hello\.id:/,
      );
      expectRefused(
        await stream(dp, svc(), 'Gateway', [{ hello: { id: 'gw-x', lanAddress: `${bad}:8443` } }]),
        grpc.status.INVALID_ARGUMENT,
        `gateway address ${JSON.stringify(bad)}`,
        /hello\.lan_address:/,
      );
    }
    expectRefused(
      await stream(dp, svc(), 'Gateway', [{ hello: { id: 'gw-x', lanAddress: '127.0.0.1:8443', version: 'v\r\n'.repeat(100) } }]),
      grpc.status.INVALID_ARGUMENT,
      'gateway version',
      /hello\.version:/,
    );
    expectRefused(
      await stream(dp, svc(), 'Gateway', [{ hello: { id: 'gw-x', lanAddress: '127.0.0.1:8443', dc: '../dc1' } }]),
      grpc.status.INVALID_ARGUMENT,
      'gateway dc',
      /hello\.dc:/,
    );
    expect(fr.region.store.index()).toBe(index);
    expect(fr.region.catalog.agentService('gw-x')).toBeUndefined();
  });

  it('bounds repeated fields and message size with RESOURCE_EXHAUSTED', async () => {
    const before = stored.length;
    const many = { flows: { records: Array.from({ length: 1001 }, () => toWire(flow())) } };
    expectRefused(await stream(dp, svc(), 'Stream', [helloBytes(), many], 5000), grpc.status.RESOURCE_EXHAUSTED, '1001 records', /at most 1000 records/);
    const huge = Buffer.concat([tag(2, 2), varint(5 << 20), Buffer.alloc(5 << 20, 0x61)]);
    expectRefused(await stream(dp, svc(), 'Stream', [helloBytes(), huge], 5000), grpc.status.RESOURCE_EXHAUSTED, 'a 5 MiB message');
    await sleep(100);
    expect(stored.length).toBe(before);
  });

  it('drops records with values nothing takes (hop, verdict, trace id) and keeps the good ones and the stream', async () => {
    const rejected = fr.region.dataplane.rejectedFlows;
    const before = stored.length;
    const good = flow({ id: 'good-one' });
    const batch = {
      flows: {
        records: [
          toWire(flow({ hop: 'sideways' as never })),
          toWire(flow({ verdict: 'maybe' as never })),
          toWire(flow({ traceId: '../../etc' })),
          { ...toWire(flow()), id: 'x'.repeat(2000) },
          toWire(good),
        ],
      },
    };
    // An unknown field after the hello is skipped (a newer proxy), not a reason to end the stream.
    const o = await stream(dp, svc(), 'Stream', [helloBytes(), bytesField(9, 'future'), batch], 1500);
    expect(o.status, `stream ended: ${JSON.stringify(o.status)}`).toBeUndefined();
    for (let i = 0; i < 50 && stored.length === before; i++) await sleep(20);
    expect(stored.slice(before).map((r) => r.id)).toEqual(['good-one']);
    expect(fr.region.dataplane.rejectedFlows - rejected).toBe(4);
  });

  it('fuzzed frames on both streams: a refusal with a clear status or a stream that stays open, never INTERNAL', async () => {
    const r = rng('dataplane');
    const index = fr.region.store.index();
    const before = stored.length;
    const valid = Buffer.concat([
      helloBytes('web'),
      bytesField(
        2,
        bytesField(1, Buffer.concat([bytesField(1, 'id'), bytesField(2, 'ab'.repeat(16)), bytesField(4, 'server-sidecar'), bytesField(10, 'allowed')])),
      ),
    ]);
    let refused = 0;
    await fuzz('dataplane frames', async () => {
      const gatewayStream = r.chance(0.25);
      const frames: Frame[] = gatewayStream
        ? [garbage(r, varintField(1, 1))]
        : r.chance(0.5)
          ? [garbage(r, valid)]
          : [helloBytes(), garbage(r, bytesField(2, bytesField(1, bytesField(1, 'id'))))];
      const o = await stream(dp, svc(), gatewayStream ? 'Gateway' : 'Stream', frames, 300);
      if (o.status) {
        refused++;
        expectRefused(o, undefined, `frames ${frames.map((f) => (Buffer.isBuffer(f) ? f.toString('hex').slice(0, 120) : 'hello')).join(' ')}`);
      }
    });
    expect(refused).toBeGreaterThan(0);
    expect(fr.region.store.index()).toBe(index);
    // Only well-formed records can have been stored, whatever the bytes were.
    for (const rec of stored.slice(before)) expect(rec.traceId).toMatch(/^[0-9a-f]{32}$/);
  });

  it('keeps serving: the sidecar connected all along gets the next push, and a new one connects', async () => {
    const pushes = watcherConfigs.length;
    expect(watcher.connected).toBe(true);
    expect((await call(fr.url, 'PUT', '/v1/connect/intentions/exact?source=web&destination=watcher', { Action: 'deny' })).status).toBe(200);
    for (let i = 0; i < 100 && watcherConfigs.length === pushes; i++) await sleep(30);
    expect(watcherConfigs.length).toBeGreaterThan(pushes);
    expect(JSON.parse(watcherConfigs.at(-1)!.intentions!.intentionsJson).map((i: { SourceName: string }) => i.SourceName)).toContain('web');
    const fresh: SidecarConfigMessage[] = [];
    const c = new DataPlaneClient({ serverAddr: fr.region.grpcAddress, service: 'fresh', onConfig: (m) => void fresh.push(m) });
    c.start();
    for (let i = 0; i < 100 && fresh.length === 0; i++) await sleep(30);
    c.stop();
    expect(fresh[0]?.service?.name).toBe('fresh');
  });
});

describe('federation service (mTLS)', () => {
  const svc = () => federationService().service;

  it('refuses Join requests that are garbage or wrong, changing nothing', async () => {
    const index = fr.region.store.index();
    expectRefused(await unary(fedAnon, 'Join', Buffer.from([0x0a])), grpc.status.INVALID_ARGUMENT, 'join garbage', /not a valid JoinRequest/);
    // The decoder cuts a string whose length runs past the end instead of failing: what is left must still be a request.
    expectRefused(await unary(fedAnon, 'Join', Buffer.from([0x0a, 0xff, 0xff, 0x01])), grpc.status.INVALID_ARGUMENT, 'join length past the end', /JoinRequest/);
    expectRefused(await unary(fedAnon, 'Join', varintField(1, 7)), grpc.status.INVALID_ARGUMENT, 'join secret as varint');
    expectRefused(
      await unary(fedAnon, 'Join', { secret: 'x'.repeat(64), datacenter: 'dc8', publicKeyPem: '-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n' }),
      grpc.status.PERMISSION_DENIED,
      'join with an unknown secret',
      /join refused/,
    );
    expectRefused(
      await unary(fedAnon, 'Join', { secret: 's', datacenter: '../../etc', publicKeyPem: 'x' }),
      grpc.status.INVALID_ARGUMENT,
      'join without a key',
    );
    expect(fr.region.store.index()).toBe(index);
  });

  it('refuses a peer stream without a server certificate, and one whose messages are out of order or malformed', async () => {
    const index = fr.region.store.index();
    expectRefused(
      await stream(fedAnon, svc(), 'PeerStream', [{ hello: { datacenter: 'dc9', resumeIndex: 0, version: 'x' } }]),
      grpc.status.UNAUTHENTICATED,
      'no certificate',
      /server certificate/,
    );
    expectRefused(
      await stream(fedPeer, svc(), 'PeerStream', [{ heartbeat: { sentAtMs: 1, index: 1 } }]),
      grpc.status.INVALID_ARGUMENT,
      'heartbeat first',
      /first message must be hello/,
    );
    expectRefused(
      await stream(fedPeer, svc(), 'PeerStream', [Buffer.from([0x0a, 0x05, 0x0a])]),
      grpc.status.INVALID_ARGUMENT,
      'garbage',
      /not a valid PeerMessage/,
    );
    expectRefused(
      await stream(fedPeer, svc(), 'PeerStream', [{ hello: { datacenter: 'dc1', resumeIndex: 0, version: 'x' } }]),
      grpc.status.PERMISSION_DENIED,
      'hello as another DC',
      /its certificate says dc9/,
    );
    expectRefused(
      await stream(fedPeer, svc(), 'PeerStream', [{ hello: { datacenter: 'a\r\nb', resumeIndex: 0, version: 'x' } }]),
      grpc.status.PERMISSION_DENIED,
      'hello with a bad name',
      /not a datacenter name/,
    );
    const hello = { hello: { datacenter: 'dc9', resumeIndex: 0, version: 'x' } };
    expectRefused(await stream(fedPeer, svc(), 'PeerStream', [hello, hello], 3000), grpc.status.INVALID_ARGUMENT, 'hello twice', /hello was sent twice/);
    const big = {
      export: {
        datacenter: 'dc9',
        index: 1,
        full: true,
        gateways: [],
        upserts: Array.from({ length: 50_001 }, (_, i) => ({
          name: `s${i}`,
          namespace: 'default',
          instances: 1,
          healthy: 1,
          connectHealthy: 1,
          tags: [],
          meta: {},
        })),
        deletes: [],
      },
    };
    expectRefused(
      await stream(fedPeer, svc(), 'PeerStream', [hello, big], 10_000),
      grpc.status.RESOURCE_EXHAUSTED,
      '50001 exported services',
      /at most 50000 services/,
    );
    expect(fr.region.store.index()).toBe(index);
  });

  it('refuses forwarded requests whose path, token or body could not be a request, and answers bad bodies inside', async () => {
    const index = fr.region.store.index();
    const fwd = (over: Record<string, unknown>) => ({
      method: 'PUT',
      path: '/v1/connect/intentions/exact?source=web&destination=fwd',
      body: '{"Action":"allow"}',
      token: '',
      originDatacenter: 'dc9',
      ...over,
    });
    expectRefused(
      await unary(fedPeer, 'Forward', fwd({ token: 'a\r\nX-Injected: 1' })),
      grpc.status.INVALID_ARGUMENT,
      'token with CRLF',
      /ForwardRequest\.token/,
    );
    expectRefused(await unary(fedPeer, 'Forward', fwd({ path: '/v1/../../etc/passwd' })), grpc.status.INVALID_ARGUMENT, 'dot segments', /ForwardRequest\.path/);
    expectRefused(await unary(fedPeer, 'Forward', fwd({ path: '/v1/a b' })), grpc.status.INVALID_ARGUMENT, 'a space', /ForwardRequest\.path/);
    expectRefused(await unary(fedPeer, 'Forward', fwd({ path: '/etc/passwd' })), grpc.status.INVALID_ARGUMENT, 'outside /v1/');
    expectRefused(
      await unary(fedPeer, 'Forward', fwd({ body: 'x'.repeat((1 << 20) + 1) })),
      grpc.status.INVALID_ARGUMENT,
      'a body over 1 MiB',
      /ForwardRequest\.body/,
    );
    expectRefused(await unary(fedPeer, 'Forward', Buffer.from([0x13])), grpc.status.INVALID_ARGUMENT, 'garbage', /not a valid ForwardRequest/);
    expectRefused(await unary(fedPeer, 'Forward', Buffer.from([0x12, 0x7f])), grpc.status.INVALID_ARGUMENT, 'a cut path', /ForwardRequest/);
    expectRefused(await unary(fedAnon, 'Forward', fwd({})), grpc.status.PERMISSION_DENIED, 'no certificate');
    const inside = await unary(fedPeer, 'Forward', fwd({ body: '{"Action":' }));
    expect(inside.status?.code).toBe(grpc.status.OK);
    expect(inside.value.status).toBe(400);
    expect(JSON.parse(inside.value.body)).toMatchObject({ Error: 'ISTHMUS_ERR_INVALID', Violations: [{ Field: 'body' }] });
    expect(fr.region.store.index()).toBe(index);
  });

  it('fuzzed peer stream frames: a clear refusal, never INTERNAL; only what dc9 may write of its own export is written', async () => {
    const r = rng('peer');
    const hello = { hello: { datacenter: 'dc9', resumeIndex: 0, version: 'x' } };
    const validExport = bytesField(
      4,
      Buffer.concat([bytesField(1, 'dc9'), varintField(2, 5), bytesField(5, Buffer.concat([bytesField(1, 'svc'), bytesField(2, 'default')]))]),
    );
    const changes: string[] = [];
    const off = fr.region.store.subscribe((cs) => void changes.push(...cs.map((c) => `${c.table} ${c.key}`)));
    try {
      await fuzz(
        'peer frames',
        async () => {
          const frames: Frame[] = r.chance(0.5) ? [garbage(r, validExport)] : [hello, garbage(r, validExport)];
          const o = await stream(fedPeer, svc(), 'PeerStream', frames, 300);
          if (o.status) expectRefused(o, undefined, `frames ${frames.map((f) => (Buffer.isBuffer(f) ? f.toString('hex').slice(0, 120) : 'hello')).join(' ')}`);
        },
        { budgetMs: BUDGET_MS / 2 },
      );
    } finally {
      off();
    }
    // A damaged export can still be a well-formed one from dc9 (the peer's own services): nothing else.
    for (const c of changes) expect(c).toMatch(/^(fed-peers dc9|fed-services dc9\/[A-Za-z0-9*][A-Za-z0-9_.-]*\/[A-Za-z0-9][A-Za-z0-9_.-]*)$/);
  });

  it('keeps serving: a well-formed peer gets hello and heartbeats back, the API answers, no error was logged', async () => {
    const o = await stream(fedPeer, svc(), 'PeerStream', [{ hello: { datacenter: 'dc9', resumeIndex: 0, version: 'x' } }], 1000);
    expect(o.status).toBeUndefined();
    expect(o.messages.some((m) => (m as { hello?: { datacenter: string } }).hello?.datacenter === 'dc1')).toBe(true);
    expect((await call(fr.url, 'GET', '/v1/status/leader')).status).toBe(200);
    expect(fr.logs.filter((l) => /"level":"error"/.test(l))).toEqual([]);
    expect(fr.logs.some((l) => /-----BEGIN [A-Z ]*PRIVATE KEY/.test(l))).toBe(false);
    console.log(`grpc-messages: seed ${SEED}`);
  });
});
