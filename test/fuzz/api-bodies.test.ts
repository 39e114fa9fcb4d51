// Fuzzes the JSON bodies of every write endpoint of the HTTP API with random JSON, mutated valid
// bodies (wrong types, missing fields, huge numbers, deep nesting, odd unicode, nulls,
// __proto__/constructor keys) and bytes that are not JSON. Every refusal is a 4xx with a JSON error
// that names what was wrong, carries no stack and no key, and leaves the store as it was; the
// server answers correctly afterwards. Replay a failure with the seed it prints (ISTHMUS_FUZZ_SEED).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Change } from '../../src/store/index.js';
import { BUDGET_MS, SEED, call, deepJson, fuzz, leaks, mutate, randomJson, rng, startFuzzRegion, type Answer, type FuzzRegion, type Rng } from './support.js';

let fr: FuzzRegion;
let intentionId = '';
let accessor = '';
let policyId = '';
let td = '';

interface Endpoint {
  method: string;
  path: () => string;
  valid: () => unknown;
}

const ENDPOINTS: Record<string, Endpoint> = {
  'service register': {
    method: 'PUT',
    path: () => '/v1/agent/service/register',
    valid: () => ({
      Name: 'fz-svc',
      ID: 'fz-svc-1',
      Port: 8080,
      Address: '127.0.0.1',
      Tags: ['a'],
      Meta: { k: 'v' },
      Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindPort: 9191 }] } } },
    }),
  },
  'check register': {
    method: 'PUT',
    path: () => '/v1/agent/check/register',
    valid: () => ({ Name: 'fz-check', CheckID: 'fz-check', TTL: '30s', ServiceID: 'web-1' }),
  },
  'check update': { method: 'PUT', path: () => '/v1/agent/check/update/service:web-1', valid: () => ({ Status: 'warning', Output: 'fuzzed' }) },
  'catalog register': {
    method: 'PUT',
    path: () => '/v1/catalog/register',
    valid: () => ({ Node: 'ext-node', Address: '10.0.0.1', Service: { Service: 'ext', Port: 80, Tags: ['t'] }, NodeMeta: { rack: 'r1' } }),
  },
  'catalog deregister': { method: 'PUT', path: () => '/v1/catalog/deregister', valid: () => ({ Node: 'ext-node', ServiceID: 'ext' }) },
  'intention create': {
    method: 'POST',
    path: () => '/v1/connect/intentions',
    valid: () => ({ SourceName: 'fz-a', DestinationName: 'fz-b', Action: 'allow', Description: 'd', Meta: { team: 'x' } }),
  },
  'intention exact': {
    method: 'PUT',
    path: () => '/v1/connect/intentions/exact?source=web&destination=api',
    valid: () => ({ Permissions: [{ Action: 'allow', HTTP: { PathPrefix: '/v1', Methods: ['GET'], Header: [{ Name: 'x-a', Exact: 'b' }] } }] }),
  },
  'intention update': {
    method: 'PUT',
    path: () => `/v1/connect/intentions/${intentionId}`,
    valid: () => ({ SourceName: 'web', DestinationName: 'db', Action: 'deny', Description: 'upd' }),
  },
  'connect authorize': {
    method: 'POST',
    path: () => '/v1/agent/connect/authorize',
    valid: () => ({ Target: 'api', ClientCertURI: `spiffe://${td}/ns/default/dc/dc1/svc/web`, ClientCertSerial: '01' }),
  },
  'acl token create': {
    method: 'PUT',
    path: () => '/v1/acl/token',
    valid: () => ({ Description: 'fz', Policies: [{ Name: 'fuzz-policy' }], Local: false, ExpirationTTL: '1h' }),
  },
  'acl token update': { method: 'PUT', path: () => `/v1/acl/token/${accessor}`, valid: () => ({ Description: 'fz2', Policies: [{ ID: policyId }] }) },
  'acl policy create': {
    method: 'PUT',
    path: () => '/v1/acl/policy',
    valid: () => ({ Name: 'fz-pol', Description: 'p', Rules: 'service "web" { policy = "read" }', Datacenters: ['dc1'] }),
  },
  'acl policy update': {
    method: 'PUT',
    path: () => `/v1/acl/policy/${policyId}`,
    valid: () => ({ Name: 'fuzz-policy', Rules: 'service_prefix "" { policy = "read" }\noperator = "read"' }),
  },
  'acl bootstrap': { method: 'PUT', path: () => '/v1/acl/bootstrap', valid: () => ({}) },
  'ca configuration': {
    method: 'PUT',
    path: () => '/v1/connect/ca/configuration',
    valid: () => ({
      Provider: 'consul',
      Config: { LeafCertTTL: '72h', IntermediateCertTTL: '8760h', CSRMaxPerSecond: 50, PrivateKeyType: 'ec', PrivateKeyBits: 256 },
    }),
  },
  'federation token': { method: 'POST', path: () => '/v1/federation/token', valid: () => ({ Datacenter: 'dc2', TTL: '1h' }) },
  'policy dry-run': { method: 'POST', path: () => '/v1/policy/dry-run', valid: () => ({ SourceName: 'web', DestinationName: 'api', Action: 'deny' }) },
};

/** Statuses a bad body may get: refused (400), not allowed (403), not there (404), clashing (409), too large (413). */
const REFUSALS = new Set([400, 403, 404, 409, 413]);

beforeAll(async () => {
  fr = await startFuzzRegion();
  const u = fr.url;
  td = fr.region.trustDomain;
  expect((await call(u, 'PUT', '/v1/agent/service/register', { Name: 'web', ID: 'web-1', Port: 8080, Check: { TTL: '30s' } })).status).toBe(200);
  expect((await call(u, 'PUT', '/v1/connect/intentions/exact?source=web&destination=db', { Action: 'allow' })).status).toBe(200);
  // api speaks http, so the L7 intention fixture for it can be enforced (issue 21) and is taken.
  expect((await call(u, 'PUT', '/v1/config', { Kind: 'service-defaults', Name: 'api', Protocol: 'http' })).status).toBe(200);
  intentionId = (await call(u, 'GET', '/v1/connect/intentions/exact?source=web&destination=db')).json.ID;
  policyId = (await call(u, 'PUT', '/v1/acl/policy', { Name: 'fuzz-policy', Rules: 'service "web" { policy = "write" }' })).json.ID;
  accessor = (await call(u, 'PUT', '/v1/acl/token', { Description: 'fixture', Policies: [{ ID: policyId }] })).json.AccessorID;
  expect((await call(u, 'PUT', '/v1/acl/bootstrap')).status).toBe(200);
  expect(intentionId && policyId && accessor).toBeTruthy();
});

afterAll(async () => {
  await fr?.stop();
});

/** What changed in the store while `f` ran. */
async function watching<T>(f: () => Promise<T>): Promise<{ result: T; changes: Change[] }> {
  const changes: Change[] = [];
  const off = fr.region.store.subscribe((c) => void changes.push(...c));
  try {
    return { result: await f(), changes };
  } finally {
    off();
  }
}

/** The listed state an operator would look at, to compare before and after refusals. */
async function listed(): Promise<string> {
  const paths = [
    '/v1/catalog/services',
    '/v1/agent/services',
    '/v1/agent/checks',
    '/v1/connect/intentions',
    '/v1/acl/tokens',
    '/v1/acl/policies',
    '/v1/connect/ca/configuration',
    '/v1/catalog/nodes',
  ];
  const out: string[] = [];
  for (const p of paths) {
    const a = await call(fr.url, 'GET', p);
    expect(a.status, p).toBe(200);
    out.push(`${p} ${a.headers.get('x-consul-index') ?? ''} ${a.text}`);
  }
  return out.join('\n');
}

/** The checks every answer to a fuzzed body must pass; returns whether it was refused. */
function judge(name: string, sent: string, a: Answer, changes: Change[]): boolean {
  const where = `${name}: sent ${JSON.stringify(sent.slice(0, 300))} got ${a.status} ${a.text.slice(0, 400)}`;
  expect(a.status, where).toBeLessThan(500);
  const leak = leaks(a.text, sent);
  expect(leak, where).toBeUndefined();
  for (const [k, v] of a.headers) expect(leaks(`${k}: ${v}`), where).toBeUndefined();
  if (a.status < 300) return false;
  expect(REFUSALS.has(a.status), where).toBe(true);
  expect(a.json, where).toMatchObject({ Error: expect.stringMatching(/^ISTHMUS_ERR_[A-Z_]+$/), Message: expect.any(String) });
  expect(a.json.Message.length, where).toBeGreaterThan(0);
  if (a.status === 400) {
    expect(a.json.Error, where).toBe('ISTHMUS_ERR_INVALID');
    expect(Array.isArray(a.json.Violations) && a.json.Violations.length > 0, where).toBe(true);
    for (const v of a.json.Violations) {
      expect(typeof v.Field === 'string' && v.Field.length > 0, `${where}: a violation names no field`).toBe(true);
      expect(typeof v.Message === 'string' && v.Message.length > 0, where).toBe(true);
    }
  }
  expect(
    changes.map((c) => `${c.table}/${c.key}`),
    `${where}: a refused request changed the store`,
  ).toEqual([]);
  return true;
}

/** Bodies every endpoint must refuse: not JSON, not an object, too deep, with __proto__. */
function alwaysBad(r: Rng): string | Uint8Array {
  switch (r.int(8)) {
    case 0:
      return Uint8Array.from({ length: 1 + r.int(200) }, () => r.int(256));
    case 1:
      return r.pick(['{', '{"Name":', '[1,2', '"unterminated', '{"a":1}}', "{'single':1}", 'NaN', '{"a":01}', '\u0000', '{"a":"\\x"}', '\ufeff{"a":']);
    case 2:
      return r.pick(['1e400', '-1e400', '[1e400]', '{"Port":1e400}', '{"Config":{"CSRMaxPerSecond":1e999}}']).replace(/^1e400$/, '1e400');
    case 3:
      return deepJson(r.pick([100, 1000, 100_000]), r.chance(0.5) ? 'array' : 'object');
    case 4:
      return JSON.stringify(r.pick([[], [{}], 'string', 42, true]));
    case 5:
      return `{"__proto__":{"polluted":true},"Name":"web"}`;
    case 6:
      return `{"Meta":{"__proto__":{"x":"y"}},"Name":"web"}`;
    default:
      return JSON.stringify({ ok: randomJson(r) }).replace(/^\{/, r.pick(['{"__proto__":null,', '{"\\u005f_proto__":{},']));
  }
}

describe('fuzzed bodies of the write endpoints', () => {
  it('starts from valid bodies every endpoint takes (the fixtures the mutations start from)', async () => {
    for (const [name, e] of Object.entries(ENDPOINTS)) {
      if (name === 'acl bootstrap') continue;
      const a = await call(fr.url, e.method, e.path(), e.valid());
      expect([200, 409], `${name}: ${a.status} ${a.text}`).toContain(a.status);
    }
  });

  it('refuses bytes, shapes and keys no endpoint takes, and changes nothing', async () => {
    const r = rng('always-bad');
    const names = Object.keys(ENDPOINTS);
    const before = await listed();
    const n = await fuzz('always-bad', async () => {
      const name = r.pick(names);
      const body = alwaysBad(r);
      const before = fr.region.store.index();
      const { result: a, changes } = await watching(() =>
        call(
          fr.url,
          ENDPOINTS[name].method,
          ENDPOINTS[name].path(),
          body,
          r.chance(0.3) ? { 'content-type': r.pick(['text/plain', 'application/x-www-form-urlencoded', '']) } : {},
        ),
      );
      const sent = typeof body === 'string' ? body : Buffer.from(body).toString('latin1');
      const refused = judge(name, sent, a, changes);
      expect(refused, `${name}: accepted ${JSON.stringify(sent.slice(0, 200))}`).toBe(true);
      expect(fr.region.store.index()).toBe(before);
    });
    expect(await listed()).toBe(before);
    expect(n).toBeGreaterThan(0);
  });

  it('answers random JSON and mutated valid bodies with a result or a clear refusal, never a 500', async () => {
    const r = rng('mutated');
    const names = Object.keys(ENDPOINTS);
    let refused = 0;
    let accepted = 0;
    const n = await fuzz(
      'mutated',
      async () => {
        const name = r.pick(names);
        const e = ENDPOINTS[name];
        const body = r.chance(0.2) ? randomJson(r) : mutate(r, r.chance(0.7) ? e.valid() : mutate(r, e.valid()));
        const text = JSON.stringify(body) ?? 'null';
        const before = fr.region.store.index();
        const { result: a, changes } = await watching(() => call(fr.url, e.method, e.path(), text));
        if (judge(name, text, a, changes)) {
          refused++;
          expect(fr.region.store.index()).toBe(before);
        } else accepted++;
      },
      { budgetMs: BUDGET_MS * 2 },
    );
    expect(refused + accepted).toBe(n);
    expect(refused).toBeGreaterThan(0);
  });

  it('refuses huge numbers, wrong types and nulls in each field of each endpoint, naming the field', async () => {
    for (const [name, e] of Object.entries(ENDPOINTS)) {
      if (name === 'acl bootstrap') continue;
      const valid = e.valid() as Record<string, unknown>;
      for (const field of Object.keys(valid)) {
        for (const bad of [{ x: 1 }, [1], 1e308, -1, true, null]) {
          if (bad !== null && typeof bad === typeof valid[field] && Array.isArray(bad) === Array.isArray(valid[field])) continue;
          const body = JSON.stringify({ ...valid, [field]: bad });
          const before = fr.region.store.index();
          const { result: a, changes } = await watching(() => call(fr.url, e.method, e.path(), body));
          const where = `${name}.${field} = ${JSON.stringify(bad)}: ${a.status} ${a.text.slice(0, 300)}`;
          expect(judge(name, body, a, changes), where).toBe(true);
          expect(a.status, where).toBe(400);
          expect(
            a.json.Violations.map((v: { Field: string }) => v.Field).some((f: string) => f === field || f.startsWith(`${field}.`) || f.startsWith(`${field}[`)),
            where,
          ).toBe(true);
          expect(fr.region.store.index()).toBe(before);
        }
      }
    }
  });

  it('refuses the values the fuzzer once got through (durations past a timer or a date, unbounded meta, another DC)', async () => {
    const cases: [string, string, unknown, string][] = [
      ['PUT', '/v1/acl/token', { ExpirationTTL: '999999999999h' }, 'ExpirationTTL'],
      ['PUT', '/v1/acl/token', { ExpirationTTL: '1ns' }, 'ExpirationTTL'],
      ['PUT', '/v1/connect/ca/configuration', { Config: { RootCertTTL: '99999999999999h' } }, 'Config.RootCertTTL'],
      ['PUT', '/v1/connect/ca/configuration', { Config: { IntermediateCertTTL: '99999999999999h', LeafCertTTL: '9999999999h' } }, 'Config.IntermediateCertTTL'],
      ['PUT', '/v1/connect/ca/configuration', { Config: { CSRMaxPerSecond: 1e300 } }, 'Config.CSRMaxPerSecond'],
      ['PUT', '/v1/agent/check/register', { Name: 'c', TTL: '9999999h' }, 'TTL'],
      ['PUT', '/v1/agent/check/register', { Name: 'c', HTTP: 'http://127.0.0.1:1/', Interval: 1e20 }, 'Interval'],
      ['PUT', '/v1/agent/service/register', { Name: 'm', Meta: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])) }, 'Meta'],
      ['PUT', '/v1/agent/service/register', { Name: 'm', Meta: { k: 'v'.repeat(513) } }, 'Meta.k'],
      [
        'PUT',
        '/v1/agent/service/register',
        { Name: 'm', Check: { TTL: '10s', DeregisterCriticalServiceAfter: '100000h' } },
        'Check.DeregisterCriticalServiceAfter',
      ],
      ['POST', '/v1/connect/intentions', { SourceName: 'a', DestinationName: 'b', Action: 'allow', Meta: { ['k'.repeat(200)]: 'v' } }, 'Meta'],
      ['PUT', '/v1/catalog/register', { Node: 'n1', Address: '10.0.0.1', Datacenter: 'dc7' }, 'Datacenter'],
      ['PUT', '/v1/acl/policy', { Name: 'dcs', Datacenters: ['a\r\nb'] }, 'Datacenters[0]'],
      ['PUT', '/v1/agent/service/register', '{"Name":"web","Port":1e400}', 'Port'],
      ['PUT', '/v1/agent/service/register', `{"Name":"web","Meta":{"__proto__":{"k":"v"}}}`, 'Meta.__proto__'],
      ['PUT', '/v1/acl/token', `{"\\u005f_proto__":{"ExpirationTTL":"abc"}}`, '__proto__'],
      ['PUT', '/v1/agent/service/register', deepJson(40, 'object'), 'body'],
    ];
    for (const [method, path, body, field] of cases) {
      const text = typeof body === 'string' ? body : JSON.stringify(body);
      const before = fr.region.store.index();
      const { result: a, changes } = await watching(() => call(fr.url, method, path, text));
      const where = `${method} ${path} ${text.slice(0, 120)}: ${a.status} ${a.text.slice(0, 300)}`;
      expect(judge(path, text, a, changes), where).toBe(true);
      expect(a.status, where).toBe(400);
      const fields: string[] = a.json.Violations.map((v: { Field: string }) => v.Field);
      expect(
        fields.some((f) => f === field || f.startsWith(`${field}.`) || f.startsWith(`${field}[`)),
        `${where}: no violation names ${field}`,
      ).toBe(true);
      expect(fr.region.store.index()).toBe(before);
    }
  });

  it('still answers correctly afterwards', async () => {
    const u = fr.url;
    expect((await call(u, 'PUT', '/v1/agent/service/register', { Name: 'after-fuzz', Port: 1234 })).status).toBe(200);
    const got = await call(u, 'GET', '/v1/catalog/service/after-fuzz');
    expect(got.status).toBe(200);
    expect(got.json[0]).toMatchObject({ ServiceName: 'after-fuzz', ServicePort: 1234 });
    expect((await call(u, 'GET', '/v1/status/leader')).status).toBe(200);
    expect((await call(u, 'PUT', '/v1/connect/intentions/exact?source=after-a&destination=after-b', { Action: 'deny' })).status).toBe(200);
    expect((await call(u, 'GET', '/v1/connect/intentions/check?source=after-a&destination=after-b')).json).toEqual({ Allowed: false });
    // Nothing was polluted: a fresh object has no inherited fields from any body.
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(fr.logs.filter((l) => /"level":"error"/.test(l))).toEqual([]);
    expect(fr.logs.some((l) => /-----BEGIN [A-Z ]*PRIVATE KEY/.test(l))).toBe(false);
    console.log(`api-bodies: seed ${SEED}`);
  });
});
