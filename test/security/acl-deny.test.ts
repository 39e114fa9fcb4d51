// ACL with --acl-default-policy deny: a token without the rule (or no token) is refused whatever it
// names — services, intentions, ACL, CA configuration, join tokens, flows, leaf signing (which
// needs service:write, as in Consul) — with 403 and nothing changed; lists leave out what it may
// not read. service:read is not service:write, and a prefix rule covers its prefix only. A server
// region in this process on 127.0.11.2.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Region } from '../../src/region/index.js';
import type { FlowRecord } from '../../src/dataflow/index.js';
import { DataPlaneClient } from '../../src/dataplane-client/index.js';
import { http, region, until } from './helpers.js';

let r: Region;
let base = '';
let mgmt = '';
let mgmtAccessor = '';
let intentionId = '';
const tokens: Record<string, string> = {};

const TABLES = [
  'services',
  'checks',
  'nodes',
  'intentions',
  'acl-tokens',
  'acl-policies',
  'acl-meta',
  'ca-roots',
  'ca-config',
  'ca-intermediates',
  'fed-join-tokens',
  'fed-members',
  'audit',
];
const state = () => TABLES.map((t) => `${t}@${r.store.tableIndex(t)}:${r.store.list(t).length}`);

async function token(name: string, rules: string): Promise<string> {
  const p = await http(base, 'PUT', '/v1/acl/policy', { Name: name, Rules: rules }, mgmt);
  expect(p.status).toBe(200);
  const t = await http(base, 'PUT', '/v1/acl/token', { Description: name, Policies: [{ Name: name }] }, mgmt);
  expect(t.status).toBe(200);
  return t.body.SecretID;
}

function flow(id: string, source: string, destination: string): FlowRecord {
  return {
    id,
    traceId: 'cd'.repeat(16),
    requestIndex: 0,
    hop: 'server-sidecar',
    dc: 'dc1',
    reporter: 'test',
    source: { spiffeId: '', service: source, namespace: 'default', dc: 'dc1' },
    destination: { spiffeId: '', service: destination, namespace: 'default', dc: 'dc1' },
    sni: '',
    verdict: 'allowed',
    reason: 'ok',
    intentionId: '',
    intentionDc: '',
    intentionIndex: 0,
    startTime: Date.now(),
    durationMs: 1,
    bytesIn: 1,
    bytesOut: 1,
  } as FlowRecord;
}

/** Everything below names web, api or the ACL/CA/federation state; each must be refused. */
function named(): [string, string, unknown?][] {
  const uri = `spiffe://${r.trustDomain}/ns/default/dc/dc1/svc/web`;
  return [
    ['PUT', '/v1/agent/service/register', { Name: 'web', Port: 9 }],
    ['PUT', '/v1/agent/service/register', { Name: 'api', Port: 9 }],
    ['PUT', '/v1/agent/service/deregister/web'],
    ['GET', '/v1/agent/service/web'],
    ['PUT', '/v1/catalog/register', { Node: 'intruder', Address: '10.0.0.9', Service: { Service: 'web', Port: 9 } }],
    ['PUT', '/v1/connect/intentions/exact?source=web&destination=api', { Action: 'deny' }],
    ['POST', '/v1/connect/intentions', { SourceName: 'db', DestinationName: 'api', Action: 'allow' }],
    ['DELETE', '/v1/connect/intentions/exact?source=web&destination=api'],
    ['GET', '/v1/connect/intentions/exact?source=web&destination=api'],
    ['GET', '/v1/connect/intentions/check?source=web&destination=api'],
    ['GET', `/v1/connect/intentions/${intentionId}`],
    ['PUT', `/v1/connect/intentions/${intentionId}`, { SourceName: 'web', DestinationName: 'api', Action: 'deny' }],
    ['DELETE', `/v1/connect/intentions/${intentionId}`],
    ['POST', '/v1/agent/connect/authorize', { Target: 'api', ClientCertURI: uri }],
    ['POST', '/v1/policy/dry-run', { SourceName: 'web', DestinationName: 'api', Action: 'deny' }],
    ['GET', '/v1/policy/suggest?service=api'],
    ['GET', '/v1/acl/tokens'],
    ['GET', '/v1/acl/policies'],
    ['GET', `/v1/acl/token/${mgmtAccessor}`],
    ['PUT', '/v1/acl/policy', { Name: 'escalate', Rules: 'acl = "write"' }],
    ['PUT', '/v1/acl/token', { Policies: [{ Name: 'global-management' }] }],
    ['PUT', `/v1/acl/token/${mgmtAccessor}`, { Description: 'taken over' }],
    ['DELETE', `/v1/acl/token/${mgmtAccessor}`],
    ['PUT', '/v1/acl/bootstrap'],
    ['GET', '/v1/connect/ca/configuration'],
    ['PUT', '/v1/connect/ca/configuration', { Provider: 'consul', Config: { LeafCertTTL: '1h' } }],
    ['POST', '/v1/connect/ca/rotate'],
    ['POST', '/v1/federation/token', { Datacenter: 'dc9' }],
    ['GET', '/v1/federation/status'],
    ['GET', '/v1/flows?to=api'],
    ['GET', '/v1/flows?service=web'],
    ['GET', '/v1/flows?from=web&dc=dc1'],
    ['GET', '/v1/flows/stream?to=api'],
    ['GET', '/v1/audit'],
    ['GET', '/v1/agent/self'],
    ['GET', '/v1/agent/connect/ca/leaf/web'],
    ['GET', '/v1/agent/connect/ca/leaf/api'],
  ];
}

async function expectNamedRefused(secret: string | undefined): Promise<void> {
  const before = state();
  const wrong: string[] = [];
  for (const [method, path, body] of named()) {
    const res = await http(base, method, path, body, secret);
    if (res.status !== 403 || !/^ISTHMUS_ERR_(PERMISSION_DENIED|ACL_NOT_FOUND|ACL_BOOTSTRAPPED)$/.test(res.body?.Error))
      wrong.push(`${method} ${path}: ${res.status} ${JSON.stringify(res.body).slice(0, 120)}`);
  }
  expect(wrong).toEqual([]);
  expect(state()).toEqual(before);
}

beforeAll(async () => {
  r = await region('dc1', '127.0.11.2', { 'acl-default-policy': 'deny' });
  base = `http://${r.httpAddress}`;
  const boot = await http(base, 'PUT', '/v1/acl/bootstrap');
  expect(boot.status).toBe(200);
  mgmt = boot.body.SecretID;
  mgmtAccessor = boot.body.AccessorID;
  for (const name of ['web', 'api']) expect((await http(base, 'PUT', '/v1/agent/service/register', { Name: name, Port: 8080 }, mgmt)).status).toBe(200);
  expect((await http(base, 'PUT', '/v1/connect/intentions/exact?source=web&destination=api', { Action: 'allow' }, mgmt)).status).toBe(200);
  intentionId = (await http(base, 'GET', '/v1/connect/intentions/exact?source=web&destination=api', undefined, mgmt)).body.ID;
  r.flows.append([flow('f-web-api', 'web', 'api'), flow('f-db-api', 'db', 'api')]);
  tokens.none = await token('unrelated', 'service "other" { policy = "read" }');
  tokens.webRead = await token('web-read', 'service "web" { policy = "read" }');
  tokens.pay = await token('pay-prefix', 'service_prefix "pay-" { policy = "write" }\nservice "pay-admin" { policy = "deny" }');
  tokens.apiIntentions = await token('api-intentions', 'service "api" { policy = "read" intentions = "write" }');
}, 30_000);

afterAll(async () => {
  await r?.stop();
});

describe('ACL with default deny', () => {
  it('refuses a token without the rule everything it names, with 403, and changes nothing', async () => {
    await expectNamedRefused(tokens.none);
  });

  it('refuses a request without a token the same way, and an unknown token as "ACL not found"', async () => {
    await expectNamedRefused(undefined);
    const unknown = await http(base, 'GET', '/v1/catalog/services', undefined, '00000000-1111-2222-3333-444444444444');
    expect(unknown.status).toBe(403);
    expect(unknown.body.Error).toBe('ISTHMUS_ERR_ACL_NOT_FOUND');
  });

  it('leaves out of every list what the token may not read', async () => {
    for (const secret of [tokens.none, undefined]) {
      expect((await http(base, 'GET', '/v1/catalog/services', undefined, secret)).body).toEqual({});
      expect((await http(base, 'GET', '/v1/catalog/service/web', undefined, secret)).body).toEqual([]);
      expect((await http(base, 'GET', '/v1/health/service/web', undefined, secret)).body).toEqual([]);
      expect((await http(base, 'GET', '/v1/agent/services', undefined, secret)).body).toEqual({});
      expect((await http(base, 'GET', '/v1/connect/intentions', undefined, secret)).body).toEqual([]);
      const flows = await http(base, 'GET', '/v1/flows', undefined, secret);
      expect(flows.status).toBe(200);
      expect(flows.body.Records).toEqual([]);
    }
    // The management token sees what is there.
    expect((await http(base, 'GET', '/v1/flows', undefined, mgmt)).body.Records).toHaveLength(2);
  });

  it('service:read on web reads web, but cannot register it, sign its leaf or write its intentions', async () => {
    const t = tokens.webRead;
    const before = state();
    expect((await http(base, 'GET', '/v1/agent/service/web', undefined, t)).status).toBe(200);
    expect((await http(base, 'GET', '/v1/catalog/service/web', undefined, t)).body).toHaveLength(1);
    expect(Object.keys((await http(base, 'GET', '/v1/catalog/services', undefined, t)).body)).toEqual(['web']);
    expect((await http(base, 'GET', '/v1/connect/intentions/check?source=db&destination=web', undefined, t)).status).toBe(200);
    for (const [method, path, body] of [
      ['PUT', '/v1/agent/service/register', { Name: 'web', Port: 9 }],
      ['PUT', '/v1/agent/service/deregister/web'],
      ['GET', '/v1/agent/connect/ca/leaf/web'],
      ['PUT', '/v1/connect/intentions/exact?source=db&destination=web', { Action: 'allow' }],
      ['GET', '/v1/agent/service/api'],
      ['GET', '/v1/flows?to=api'],
    ] as [string, string, unknown?][]) {
      expect(`${method} ${path}: ${(await http(base, method, path, body, t)).status}`).toBe(`${method} ${path}: 403`);
    }
    // Flows: only those with web on one side.
    expect((await http(base, 'GET', '/v1/flows', undefined, t)).body.Records.map((f: FlowRecord) => f.id)).toEqual(['f-web-api']);
    expect((await http(base, 'GET', '/v1/flows?service=web', undefined, t)).body.Records.map((f: FlowRecord) => f.id)).toEqual(['f-web-api']);
    // Nor over the data-plane channel, which would hand a sidecar web's leaf.
    const fatal = await new Promise<{ code: string; configs: number }>((resolve) => {
      let configs = 0;
      const c = new DataPlaneClient({
        serverAddr: r.grpcAddress,
        service: 'web',
        token: t,
        onConfig: () => void configs++,
        onFatal: (code) => {
          c.stop();
          resolve({ code, configs });
        },
      });
      c.start();
    });
    expect(fatal).toEqual({ code: 'ISTHMUS_ERR_PERMISSION_DENIED', configs: 0 });
    expect(state()).toEqual(before);
  });

  it('a prefix rule covers its own prefix only, and an exact rule beats it', async () => {
    const t = tokens.pay;
    const before = r.catalog.agentServices().length;
    for (const name of ['pay-api', 'pay-ui']) expect((await http(base, 'PUT', '/v1/agent/service/register', { Name: name, Port: 9 }, t)).status).toBe(200);
    expect((await http(base, 'GET', '/v1/agent/connect/ca/leaf/pay-api', undefined, t)).status).toBe(200);
    const refused = [];
    for (const name of ['payroll', 'pay', 'pa', 'api', 'web', 'pay-admin', 'xpay-api']) {
      refused.push((await http(base, 'PUT', '/v1/agent/service/register', { Name: name, Port: 9 }, t)).status);
      refused.push((await http(base, 'GET', `/v1/agent/connect/ca/leaf/${name}`, undefined, t)).status);
    }
    expect(refused.every((s) => s === 403)).toBe(true);
    expect(r.catalog.agentServices().length).toBe(before + 2);
    expect(Object.keys((await http(base, 'GET', '/v1/catalog/services', undefined, t)).body).sort()).toEqual(['pay-api', 'pay-ui']);
  });

  it('intentions = "write" on api writes api\'s intentions and no other destination\'s', async () => {
    const t = tokens.apiIntentions;
    expect((await http(base, 'PUT', '/v1/connect/intentions/exact?source=db&destination=api', { Action: 'deny' }, t)).status).toBe(200);
    const before = state();
    expect((await http(base, 'PUT', '/v1/connect/intentions/exact?source=api&destination=web', { Action: 'allow' }, t)).status).toBe(403);
    expect((await http(base, 'POST', '/v1/connect/intentions', { SourceName: 'api', DestinationName: 'db', Action: 'allow' }, t)).status).toBe(403);
    expect((await http(base, 'PUT', '/v1/connect/intentions/exact?source=api&destination=*', { Action: 'allow' }, t)).status).toBe(403);
    expect((await http(base, 'PUT', '/v1/agent/service/register', { Name: 'api', Port: 9 }, t)).status).toBe(403);
    expect(state()).toEqual(before);
    await until('the deny in force', () => r.intentions.check('db', 'api').allowed === false);
  });
});
