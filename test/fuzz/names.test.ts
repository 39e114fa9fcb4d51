// Path traversal and injection attempts in names: service names and IDs, namespaces, check and
// node IDs, intention sources and destinations, ACL names, datacenters, leaf requests, and SNI at a
// gateway. Each is refused with an error naming the field; nothing is written (in the store, or
// anywhere on disk beside the data dir), and nothing is reflected into a response header.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FlowRecord } from '../../src/dataflow/index.js';
import { Gateway } from '../../src/gateway/index.js';
import { helloMessage, records } from '../../src/gateway/testing/hello-builder.js';
import { createRegistry } from '../../src/telemetry/index.js';
import { call, filesUnder, leaks, startFuzzRegion, type Answer, type FuzzRegion } from './support.js';

let fr: FuzzRegion;

/** Names no field takes. The long one is 300 characters; each is also sent URL-encoded in paths and queries. */
const BAD = [
  '../../etc/passwd',
  '..',
  'a/b',
  '/abs',
  'x\u0000y',
  '<script>alert(1)</script>',
  'a\r\nX-Injected: 1',
  'a b',
  '\u202eevil',
  'é',
  '💥',
  '%2e%2e',
  'x'.repeat(300),
  "a'; DROP TABLE x; --",
  '${7*7}',
];

beforeAll(async () => {
  fr = await startFuzzRegion();
  expect((await call(fr.url, 'PUT', '/v1/agent/service/register', { Name: 'web', ID: 'web-1', Port: 8080, Check: { TTL: '30s' } })).status).toBe(200);
  expect((await call(fr.url, 'PUT', '/v1/connect/intentions/exact?source=web&destination=db', { Action: 'allow' })).status).toBe(200);
});

afterAll(async () => {
  await fr?.stop();
});

/** Nothing of what was sent shows up in a header, and no header was smuggled in. */
function noReflection(a: Answer, where: string): void {
  expect(a.headers.get('x-injected'), where).toBeNull();
  for (const [k, v] of a.headers) {
    expect(/[\r\n\u0000]/.test(v), `${where}: header ${k}`).toBe(false);
    expect(v.includes('etc/passwd') || v.includes('<script>') || v.includes('DROP TABLE'), `${where}: header ${k}: ${v}`).toBe(false);
  }
}

/** A refusal naming `field` (a 400 with that violation), or, for lookups by a name nothing can have, a 404; never a write. */
async function refused(method: string, path: string, body: unknown, field: string | RegExp, opts: { notFoundOk?: boolean } = {}): Promise<void> {
  const index = fr.region.store.index();
  const a = await call(fr.url, method, path, body);
  const where = `${method} ${path} ${JSON.stringify(body)?.slice(0, 200)} -> ${a.status} ${a.text.slice(0, 300)}`;
  noReflection(a, where);
  expect(leaks(a.text), where).toBeUndefined();
  expect(a.json, where).toMatchObject({ Error: expect.stringMatching(/^ISTHMUS_ERR_/), Message: expect.any(String) });
  if (a.status === 404 && opts.notFoundOk) expect(a.json.Error, where).toBe('ISTHMUS_ERR_NOT_FOUND');
  else {
    expect(a.status, where).toBe(400);
    const fields: string[] = a.json.Violations.map((v: { Field: string }) => v.Field);
    expect(
      fields.some((f) => (typeof field === 'string' ? f === field : field.test(f))),
      `${where}: no violation names ${field}`,
    ).toBe(true);
  }
  expect(fr.region.store.index(), where).toBe(index);
}

const enc = encodeURIComponent;

describe('names that are not names', () => {
  it('service registration: Name, ID, Namespace, sidecar and upstream names, tags, meta keys, addresses', async () => {
    for (const bad of BAD) {
      await refused('PUT', '/v1/agent/service/register', { Name: bad, Port: 1 }, 'Name');
      await refused('PUT', '/v1/agent/service/register', { Name: 'ok', ID: bad, Port: 1 }, 'ID');
      await refused('PUT', '/v1/agent/service/register', { Name: 'ok', Namespace: bad }, 'Namespace');
      await refused(
        'PUT',
        '/v1/agent/service/register',
        { Name: 'ok', Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: bad, LocalBindPort: 9000 }] } } } },
        'Connect.SidecarService.Proxy.Upstreams[0].DestinationName',
      );
      await refused('PUT', '/v1/agent/service/register', { Name: 'ok', Meta: { [bad]: 'v' } }, /^Meta/);
      await refused('PUT', '/v1/catalog/register', { Node: bad, Address: '10.0.0.1' }, 'Node');
      await refused('PUT', '/v1/catalog/register', { Node: 'n1', Address: '10.0.0.1', Service: { Service: bad } }, 'Service.Service');
      await refused('PUT', '/v1/agent/check/register', { Name: 'c', CheckID: bad, TTL: '10s' }, 'CheckID');
    }
    for (const bad of ['a\r\nX-Injected: 1', 'x\u0000y', 'tab\there'])
      await refused('PUT', '/v1/agent/service/register', { Name: 'ok', Tags: [bad] }, 'Tags[0]');
    for (const bad of ['../../etc/passwd', 'a b', 'a\r\nX-Injected: 1', '\\\\host\\share'])
      await refused('PUT', '/v1/agent/service/register', { Name: 'ok', Address: bad }, 'Address');
    await refused('PUT', '/v1/catalog/register', { Node: 'n1', Address: '10.0.0.1', Datacenter: '../dc2' }, 'Datacenter');
    await refused('PUT', '/v1/catalog/register', { Node: 'n1', Address: '10.0.0.1', Datacenter: 'dc2' }, 'Datacenter');
  });

  it('IDs in paths: deregister, check updates, intentions, ACL objects (404 or 400, never a write)', async () => {
    for (const bad of BAD) {
      if (bad === '..' || bad === '%2e%2e') continue; // a dot segment: the path itself changes (covered by the router)
      const e = enc(bad);
      for (const path of [
        `/v1/agent/service/deregister/${e}`,
        `/v1/agent/check/deregister/${e}`,
        `/v1/agent/check/pass/${e}?note=${e}`,
        `/v1/agent/check/fail/${e}`,
      ]) {
        await refused('PUT', path, undefined, /.*/, { notFoundOk: true });
      }
      await refused('PUT', `/v1/agent/check/update/${e}`, { Status: 'passing' }, /.*/, { notFoundOk: true });
      await refused('PUT', `/v1/connect/intentions/${e}`, { Action: 'deny' }, /.*/, { notFoundOk: true });
      await refused('DELETE', `/v1/connect/intentions/${e}`, undefined, /.*/, { notFoundOk: true });
      await refused('PUT', `/v1/acl/token/${e}`, { Description: 'x' }, /.*/, { notFoundOk: true });
      await refused('DELETE', `/v1/acl/policy/${e}`, undefined, /.*/, { notFoundOk: true });
    }
    // The note of a TTL check is output, not a name: CR/LF there is stored as text and never reaches a header.
    const a = await call(fr.url, 'PUT', `/v1/agent/check/pass/service:web-1?note=${enc('a\r\nX-Injected: 1')}`);
    expect(a.status).toBe(200);
    noReflection(a, 'note');
  });

  it('intentions: sources and destinations in queries and bodies, namespaces, meta', async () => {
    for (const bad of BAD) {
      const e = enc(bad);
      // In a query, "a/b" is service b of namespace a: a name like any other there.
      if (bad !== 'a/b') {
        await refused('PUT', `/v1/connect/intentions/exact?source=${e}&destination=db`, { Action: 'allow' }, 'source');
        await refused('PUT', `/v1/connect/intentions/exact?source=web&destination=${e}`, { Action: 'allow' }, 'destination');
        await refused('DELETE', `/v1/connect/intentions/exact?source=web&destination=${e}`, undefined, 'destination');
        await refused('GET', `/v1/connect/intentions/exact?source=${e}&destination=db`, undefined, 'source');
        await refused('GET', `/v1/connect/intentions/check?source=web&destination=${e}`, undefined, 'destination');
        await refused('GET', `/v1/connect/intentions/match?by=source&name=${e}`, undefined, 'name[0]');
      }
      await refused('PUT', `/v1/connect/intentions/exact?source=${e}%2Fweb&destination=db`, { Action: 'allow' }, 'source');
      await refused('POST', '/v1/connect/intentions', { SourceName: bad, DestinationName: 'db', Action: 'allow' }, 'SourceName');
      await refused('POST', '/v1/connect/intentions', { SourceName: 'web', DestinationName: bad, Action: 'allow' }, 'DestinationName');
      if (bad !== '') await refused('POST', '/v1/connect/intentions', { SourceName: 'web', SourceNS: bad, DestinationName: 'x2', Action: 'allow' }, 'SourceNS');
      await refused('PUT', '/v1/connect/intentions/exact?source=web&destination=db', { Action: 'allow', DestinationNS: bad }, 'DestinationNS');
      await refused('POST', '/v1/policy/dry-run', { SourceName: 'web', DestinationName: bad, Action: 'deny' }, 'DestinationName');
      await refused('POST', '/v1/policy/dry-run', { SourceName: 'web', SourceNS: bad, DestinationName: 'db' }, 'SourceNS');
      await refused('POST', '/v1/agent/connect/authorize', { Target: bad, ClientCertURI: 'spiffe://x/ns/default/dc/dc1/svc/web' }, 'Target');
    }
    await refused('POST', '/v1/connect/intentions', { SourceName: 'web', DestinationName: 'x3', Action: 'allow', Meta: { 'a\r\nb': 'v' } }, /^Meta/);
  });

  it('ACL, CA, federation: policy names, datacenters, token IDs, leaf service and namespace', async () => {
    for (const bad of BAD) {
      const e = enc(bad);
      await refused('PUT', '/v1/acl/policy', { Name: bad }, 'Name');
      await refused('PUT', '/v1/acl/policy', { Name: 'p-ok', Datacenters: [bad] }, 'Datacenters[0]');
      await refused('PUT', '/v1/acl/token', { AccessorID: bad }, 'AccessorID');
      await refused('PUT', '/v1/acl/token', { Policies: [{ Name: bad }] }, 'Policies[0]');
      await refused('POST', '/v1/federation/token', { Datacenter: bad }, 'Datacenter');
      if (bad !== '..' && bad !== '%2e%2e') await refused('GET', `/v1/agent/connect/ca/leaf/${e}`, undefined, 'service');
      await refused('GET', `/v1/agent/connect/ca/leaf/web?ns=${e}`, undefined, 'ns');
    }
  });

  it('wrote nothing outside the data dir, and no file is named after anything sent', async () => {
    const files = filesUnder(fr.root);
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) {
      expect(f.startsWith('data/'), f).toBe(true);
      expect(f, f).toMatch(/^data\/[A-Za-z0-9._-]+$/);
    }
    // The leaves issued carry only names: no SPIFFE ID was shaped by a namespace that was not one.
    const leaf = await call(fr.url, 'GET', '/v1/agent/connect/ca/leaf/web?ns=default');
    expect(leaf.json.ServiceURI).toBe(`spiffe://${fr.region.trustDomain}/ns/default/dc/dc1/svc/web`);
    expect(fr.logs.filter((l) => /"level":"error"/.test(l))).toEqual([]);
  });
});

describe('SNI that is not a mesh name, at a gateway', () => {
  it('resets the connection and records why, with the name escaped', async () => {
    const flows: FlowRecord[] = [];
    const td = 'names.isthmus';
    const gw = new Gateway({
      id: 'gw-names',
      dc: 'dc1',
      host: '127.0.0.1',
      port: 0,
      registry: createRegistry({ dc: 'dc1', node: 'gw' }, { processMetrics: false }),
      routes: {
        dc: 'dc1',
        trustDomain: td,
        services: [{ name: 'api', namespace: 'default', endpoints: [{ host: '127.0.0.1', port: 9, tags: [] }] }],
        serverAddresses: [],
        remotes: [],
      },
      onFlow: (r) => void flows.push(r),
    });
    await gw.start();
    const sent = [
      '../../etc/passwd',
      `api.default.dc1.internal.${td}\r\nX-Injected: 1`,
      '<script>.internal',
      `x\u0000y.default.dc1.internal.${td}`,
      `${'a'.repeat(60)}.`.repeat(5) + td,
      `api.default.dc1.internal.${td}.evil.com`,
      `api..dc1.internal.${td}`,
      `api.default.../internal.${td}`,
      `*.default.dc1.internal.${td}`,
      `api.default.dc1.internal.other.isthmus`,
      `server.${td}`,
    ];
    try {
      for (const sni of sent) {
        const sock = net.connect({ host: '127.0.0.1', port: gw.port });
        const ended = new Promise<void>((r) => {
          sock.on('error', () => {});
          sock.on('data', () => {});
          sock.on('close', () => r());
        });
        sock.write(records(helloMessage({ sni })));
        await ended;
      }
      for (let i = 0; i < 100 && flows.length < sent.length; i++) await new Promise((r) => setTimeout(r, 20));
      expect(flows).toHaveLength(sent.length);
      for (const [i, f] of flows.entries()) {
        const where = `${JSON.stringify(sent[i])}: ${JSON.stringify(f)}`;
        expect(['error', 'no_route'], where).toContain(f.verdict);
        expect(/[\r\n\u0000]/.test(f.reason) || /[\r\n\u0000]/.test(f.sni), where).toBe(false);
        if (f.verdict === 'error') expect(f.reason, where).toMatch(/^bad ClientHello: /);
      }
      // The name was read as bytes and not routed: nothing was dialed for any of them.
      expect(flows.every((f) => f.bytesOut === 0)).toBe(true);
      expect(gw.connections).toBe(0);
    } finally {
      await gw.stop();
    }
  });
});
