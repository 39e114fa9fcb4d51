// The HTTP API of a real `isthmus dev` process: Consul shapes, headers, blocking queries, errors.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, startServer, type ServerProcess } from '../harness/server-process.js';

let srv: ServerProcess;
const call = (method: string, path: string, body?: unknown) => api(srv.url, method, path, body);

beforeAll(async () => {
  srv = await startServer('dev', []);
});
afterAll(async () => {
  await srv?.stop();
});

describe('isthmus dev over HTTP', () => {
  it('registers two services with a sidecar and shows them in catalog and health', async () => {
    const web = await call('PUT', '/v1/agent/service/register', {
      Name: 'web',
      ID: 'web-1',
      Port: 8080,
      Address: '127.0.0.1',
      Tags: ['v1'],
      Meta: { team: 'a' },
      Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindPort: 9191 }] } } },
      Check: { TTL: '30s' },
    });
    expect(web.status).toBe(200);
    expect((await call('PUT', '/v1/agent/service/register', { Name: 'api', Port: 9090, Check: { TTL: '30s' } })).status).toBe(200);

    const services = await call('GET', '/v1/catalog/services');
    expect(services.status).toBe(200);
    expect(services.body).toMatchObject({ web: ['v1'], api: [] });
    expect(Object.keys(services.body)).toContain('web-sidecar-proxy');
    expect(Number(services.headers.get('x-consul-index'))).toBeGreaterThan(0);
    expect(services.headers.get('x-consul-default-acl-policy')).toBe('allow');

    const inst = await call('GET', '/v1/catalog/service/web');
    expect(inst.body).toHaveLength(1);
    expect(inst.body[0]).toMatchObject({
      ServiceID: 'web-1',
      ServiceName: 'web',
      ServicePort: 8080,
      ServiceTags: ['v1'],
      ServiceMeta: { team: 'a' },
      Datacenter: 'dc1',
    });

    const sidecars = await call('GET', '/v1/catalog/connect/web');
    expect(sidecars.body).toHaveLength(1);
    expect(sidecars.body[0]).toMatchObject({ ServiceKind: 'connect-proxy', ServiceProxy: { DestinationServiceName: 'web' } });
    expect(sidecars.body[0].ServiceProxy.Upstreams[0]).toMatchObject({ DestinationName: 'api', LocalBindPort: 9191 });

    // A TTL check starts critical; passing it makes the instance show with ?passing.
    expect((await call('GET', '/v1/health/service/api?passing')).body).toHaveLength(0);
    expect((await call('PUT', '/v1/agent/check/pass/service:api?note=ok')).status).toBe(200);
    const healthy = await call('GET', '/v1/health/service/api?passing');
    expect(healthy.body).toHaveLength(1);
    expect(healthy.body[0].Service).toMatchObject({ ID: 'api', Service: 'api', Port: 9090 });
    expect(healthy.body[0].Checks.find((c: any) => c.CheckID === 'service:api')).toMatchObject({ Status: 'passing', Output: 'ok' });

    const agentServices = await call('GET', '/v1/agent/services');
    expect(agentServices.body['web-1']).toMatchObject({ ID: 'web-1', Service: 'web', Port: 8080 });
  });

  it('writes an intention, checks it, and authorizes by SPIFFE ID in the trust domain only', async () => {
    const roots = await call('GET', '/v1/connect/ca/roots');
    const td: string = roots.body.TrustDomain;
    expect(td).toMatch(/^[0-9a-f-]{36}\.isthmus$/);

    expect((await call('PUT', '/v1/connect/intentions/exact?source=web&destination=api', { Action: 'allow' })).status).toBe(200);
    expect((await call('PUT', '/v1/connect/intentions/exact?source=*&destination=api', { Action: 'deny' })).status).toBe(200);
    expect((await call('GET', '/v1/connect/intentions/check?source=web&destination=api')).body).toEqual({ Allowed: true });
    expect((await call('GET', '/v1/connect/intentions/check?source=other&destination=api')).body).toEqual({ Allowed: false });

    const ok = await call('POST', '/v1/agent/connect/authorize', { Target: 'api', ClientCertURI: `spiffe://${td}/ns/default/dc/dc1/svc/web` });
    expect(ok.body.Authorized).toBe(true);
    const foreign = await call('POST', '/v1/agent/connect/authorize', { Target: 'api', ClientCertURI: 'spiffe://other.isthmus/ns/default/dc/dc1/svc/web' });
    expect(foreign.body.Authorized).toBe(false);

    const audit = await call('GET', '/v1/audit?kind=intention');
    expect(audit.body.map((e: any) => e.Subject)).toEqual(expect.arrayContaining(['web => api', '* => api']));
  });

  it('answers a blocking query when the watched service changes, not before', async () => {
    const first = await call('GET', '/v1/health/service/blocky');
    const index = Number(first.headers.get('x-consul-index'));
    expect(index).toBeGreaterThan(0);
    const started = Date.now();
    const pending = call('GET', `/v1/health/service/blocky?index=${index}&wait=10s`);
    await new Promise((r) => setTimeout(r, 300));
    await call('PUT', '/v1/agent/service/register', { Name: 'blocky', Port: 1 });
    const res = await pending;
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(Date.now() - started).toBeLessThan(9000);
    expect(res.body).toHaveLength(1);
    expect(Number(res.headers.get('x-consul-index'))).toBeGreaterThan(index);
  });

  it('times out a blocking query with the same index when nothing changes', async () => {
    const first = await call('GET', '/v1/catalog/service/quiet');
    const index = Number(first.headers.get('x-consul-index'));
    const res = await call('GET', `/v1/catalog/service/quiet?index=${index}&wait=300ms`);
    expect(res.status).toBe(200);
    expect(Number(res.headers.get('x-consul-index'))).toBe(index);
  });

  it('refuses bad input with 400 naming the field, and changes nothing', async () => {
    const before = await call('GET', '/v1/catalog/services');
    const bad = await call('PUT', '/v1/agent/service/register', { Name: 'bad/name', Port: 70000 });
    expect(bad.status).toBe(400);
    expect(bad.body.Error).toBe('ISTHMUS_ERR_INVALID');
    const fields = bad.body.Violations.map((v: any) => v.Field);
    expect(fields).toEqual(expect.arrayContaining(['Name', 'Port']));
    const notJson = await call('PUT', '/v1/agent/service/register', '{"Name":');
    expect(notJson.status).toBe(400);
    const badRegex = await call('PUT', '/v1/connect/intentions/exact?source=web&destination=api', {
      Permissions: [{ Action: 'allow', HTTP: { PathRegex: '([' } }],
    });
    expect(badRegex.status).toBe(400);
    expect(badRegex.body.Violations[0].Field).toBe('Permissions[0].HTTP.PathRegex');
    // Valid for JavaScript, not RE2 (Consul's syntax): a lookahead is refused, naming the field.
    const lookahead = await call('PUT', '/v1/connect/intentions/exact?source=web&destination=api', {
      Permissions: [{ Action: 'allow', HTTP: { Header: [{ Name: 'x-env', Regex: 'prod(?!-test)' }] } }],
    });
    expect(lookahead.status).toBe(400);
    expect(lookahead.body.Violations[0]).toMatchObject({ Field: 'Permissions[0].HTTP.Header[0].Regex', Message: expect.stringContaining('RE2') });
    const after = await call('GET', '/v1/catalog/services');
    expect(after.headers.get('x-consul-index')).toBe(before.headers.get('x-consul-index'));
  });

  it('answers 404 for missing things and unknown endpoints', async () => {
    expect((await call('PUT', '/v1/agent/check/pass/service:nope')).status).toBe(404);
    expect((await call('GET', '/v1/connect/intentions/exact?source=x&destination=y')).status).toBe(404);
    const unknown = await call('GET', '/v1/no/such/thing');
    expect(unknown.status).toBe(404);
    expect(unknown.body.Error).toBe('ISTHMUS_ERR_NOT_FOUND');
  });

  it('reports leader, datacenters and Prometheus metrics', async () => {
    expect((await call('GET', '/v1/status/leader')).body).toBe(srv.addr);
    expect((await call('GET', '/v1/catalog/datacenters')).body).toEqual(['dc1']);
    const metrics = await fetch(srv.url + '/metrics').then((r) => r.text());
    expect(metrics).toMatch(/isthmus_http_requests_total\{[^}]*route="\/v1\/agent\/service\/register"[^}]*\} \d+/);
  });
});
