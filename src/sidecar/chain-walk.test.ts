import type { OutgoingHttpHeaders } from 'node:http';
import { describe, expect, it } from 'vitest';
import type { ChainRoute, CompiledChain } from '../config-entries/index.js';
import { ChainWalker, applyHeaderEdits, chooseSplit, failoverOrder, planTargets, rewritePath, type RequestView } from './chain-walk.js';
import type { SidecarTarget } from './sidecar-config.js';
import { apiChain, chainTarget, resolverNode } from './testing/fixtures.js';

const target = (id: string) => chainTarget(id, 't.isthmus');

/** router (given routes, then a default) -> resolvers; the default route goes to a 90/10 splitter. */
function chain(routes: ChainRoute[]): CompiledChain {
  return apiChain(
    'http',
    [
      ...routes.map((r) => ({ Definition: r, NextNode: 'resolver:v2.api.default.dc1' })),
      { Definition: { Match: { HTTP: { PathPrefix: '/' } } }, NextNode: 'splitter:api.default' },
    ],
    {
      'splitter:api.default': {
        Type: 'splitter',
        Name: 'api.default',
        Splits: [
          { Weight: 90, NextNode: 'resolver:v1.api.default.dc1', RequestHeaders: { Set: { 'x-split': 'v1' } } },
          { Weight: 10, NextNode: 'resolver:v2.api.default.dc1', ResponseHeaders: { Add: { 'x-split': 'v2' } } },
        ],
      },
      'resolver:v1.api.default.dc1': resolverNode('v1.api.default.dc1', ['v1.api.default.dc2']),
      'resolver:v2.api.default.dc1': resolverNode('v2.api.default.dc1'),
    },
    Object.fromEntries(['v1.api.default.dc1', 'v1.api.default.dc2', 'v2.api.default.dc1'].map((id) => [id, target(id)])),
  );
}

const req = (url: string, headers: Record<string, string> = {}, method = 'GET'): RequestView => ({ method, url, headers });

describe('ChainWalker route matching', () => {
  const cases: { name: string; route: ChainRoute; yes: RequestView[]; no: RequestView[] }[] = [
    { name: 'PathExact', route: { Match: { HTTP: { PathExact: '/a' } } }, yes: [req('/a'), req('/a?x=1')], no: [req('/a/'), req('/A'), req('/ab')] },
    {
      name: 'PathExact, CaseInsensitive',
      route: { Match: { HTTP: { PathExact: '/Admin', CaseInsensitive: true } } },
      yes: [req('/admin'), req('/ADMIN')],
      no: [req('/admin/x')],
    },
    { name: 'PathPrefix', route: { Match: { HTTP: { PathPrefix: '/v2' } } }, yes: [req('/v2'), req('/v2/x'), req('/v2x')], no: [req('/v1/v2'), req('/V2')] },
    {
      name: 'PathRegex (whole path, RE2)',
      route: { Match: { HTTP: { PathRegex: '/users/[0-9]+' } } },
      yes: [req('/users/42?q')],
      no: [req('/users/42/x'), req('/users/')],
    },
    {
      name: 'Header Exact',
      route: { Match: { HTTP: { Header: [{ Name: 'X-Version', Exact: 'v2' }] } } },
      yes: [req('/', { 'x-version': 'v2' })],
      no: [req('/'), req('/', { 'x-version': 'v2 ' })],
    },
    {
      name: 'Header Present',
      route: { Match: { HTTP: { Header: [{ Name: 'x-debug', Present: true }] } } },
      yes: [req('/', { 'x-debug': '' })],
      no: [req('/')],
    },
    {
      name: 'Header Prefix, Suffix',
      route: {
        Match: {
          HTTP: {
            Header: [
              { Name: 'user-agent', Prefix: 'curl/' },
              { Name: 'x-region', Suffix: '-east' },
            ],
          },
        },
      },
      yes: [req('/', { 'user-agent': 'curl/8', 'x-region': 'us-east' })],
      no: [req('/', { 'user-agent': 'curl/8', 'x-region': 'us-west' }), req('/', { 'user-agent': 'wget', 'x-region': 'us-east' })],
    },
    {
      name: 'Header Regex, Invert',
      route: { Match: { HTTP: { Header: [{ Name: 'x-user', Regex: 'admin-[a-z]+', Invert: true }] } } },
      yes: [req('/', { 'x-user': 'bob' }), req('/'), req('/', { 'x-user': 'admin-x1' })],
      no: [req('/', { 'x-user': 'admin-root' })],
    },
    {
      name: 'QueryParam Present, Exact, Regex',
      route: {
        Match: {
          HTTP: {
            QueryParam: [
              { Name: 'debug', Present: true },
              { Name: 'mode', Exact: 'canary' },
              { Name: 'id', Regex: '[0-9]{3}' },
            ],
          },
        },
      },
      yes: [req('/x?debug&mode=canary&id=123')],
      no: [req('/x?mode=canary&id=123'), req('/x?debug=1&mode=Canary&id=123'), req('/x?debug=1&mode=canary&id=1234')],
    },
    { name: 'Methods', route: { Match: { HTTP: { Methods: ['POST', 'PUT'] } } }, yes: [req('/', {}, 'POST'), req('/', {}, 'put')], no: [req('/')] },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const w = new ChainWalker(chain([c.route]));
      for (const r of c.yes) expect(w.walk(r, () => 0)?.routeIndex, `${r.method} ${r.url} ${JSON.stringify(r.headers)}`).toBe(0);
      for (const r of c.no) expect(w.walk(r, () => 0)?.routeIndex, `${r.method} ${r.url} ${JSON.stringify(r.headers)}`).toBe(1);
    });
  }

  it('takes the first matching route, in order, and ends at its resolver', () => {
    const w = new ChainWalker(chain([{ Match: { HTTP: { PathPrefix: '/a' } } }, { Match: { HTTP: { PathPrefix: '/' } } }]));
    const got = w.walk(req('/a/b'))!;
    expect(got.routeIndex).toBe(0);
    expect(got.resolver.Resolver.Target).toBe('v2.api.default.dc1');
    expect(w.walk(req('/b'))!.routeIndex).toBe(1);
  });

  it("a connection (no request to match) takes the router's last route, Consul's catch-all", () => {
    const w = new ChainWalker(chain([{ Match: { HTTP: { PathPrefix: '/a' } } }]));
    const got = w.walk(undefined, () => 0.95)!;
    expect(got.routeIndex).toBe(1);
    expect(got.splitIndex).toBe(1);
  });

  it('a route whose regex does not compile matches nothing (the next route takes the request)', () => {
    const w = new ChainWalker(chain([{ Match: { HTTP: { PathRegex: '(?<=a)b' } } }]));
    expect(w.walk(req('/ab'))?.routeIndex).toBe(1);
  });

  it('answers undefined for a chain that leads nowhere', () => {
    const c = chain([]);
    c.StartNode = 'router:missing';
    expect(new ChainWalker(c).walk(req('/'))).toBeUndefined();
  });
});

describe('splits', () => {
  it('sends 90/10 within 3 points over 1,000 requests', () => {
    const w = new ChainWalker(chain([]));
    const counts = [0, 0];
    for (let i = 0; i < 1000; i++) counts[w.walk(req('/'))!.splitIndex!]++;
    expect(Math.abs(counts[0] / 1000 - 0.9)).toBeLessThanOrEqual(0.03);
    expect(Math.abs(counts[1] / 1000 - 0.1)).toBeLessThanOrEqual(0.03);
  });

  it('counts weights in hundredths: 0.01 is one draw in 10,000, and zero weights never win', () => {
    const node = {
      Splits: [
        { Weight: 0, NextNode: 'a' },
        { Weight: 0.01, NextNode: 'b' },
        { Weight: 99.99, NextNode: 'c' },
      ],
    };
    expect(chooseSplit(node, 0)).toBe(1);
    expect(chooseSplit(node, 0.0001)).toBe(2);
    expect(chooseSplit(node, 0.99999)).toBe(2);
    const thirds = { Splits: [33.33, 33.33, 33.34].map((Weight, i) => ({ Weight, NextNode: String(i) })) };
    expect([0.3332, 0.3334, 0.6665, 0.6666, 0.9999].map((r) => chooseSplit(thirds, r))).toEqual([0, 1, 1, 2, 2]);
  });
});

describe('header edits and prefix rewrite', () => {
  it("applies the split's edits, then the route's: Remove, Add (appending), Set (replacing)", () => {
    const w = new ChainWalker(
      chain([
        {
          Match: { HTTP: { PathPrefix: '/x' } },
          Destination: { RequestHeaders: { Set: { 'x-split': 'route' }, Add: { 'x-tag': 'r' }, Remove: ['x-secret'] } },
        },
      ]),
    );
    const walk = w.walk(req('/y'), () => 0)!;
    const e = w.edits(walk);
    const h: OutgoingHttpHeaders = { 'x-split': 'caller' };
    applyHeaderEdits(h, e.request);
    expect(h['x-split']).toBe('v1');
    const routed = w.walk(req('/x'))!;
    const h2: OutgoingHttpHeaders = { 'x-tag': 'caller', 'x-secret': 's', 'x-split': 'caller' };
    applyHeaderEdits(h2, w.edits(routed).request);
    expect(h2).toEqual({ 'x-tag': ['caller', 'r'], 'x-split': 'route' });
    const v2 = w.walk(req('/y'), () => 0.95)!;
    const out: OutgoingHttpHeaders = {};
    applyHeaderEdits(out, w.edits(v2).response);
    expect(out).toEqual({ 'x-split': 'v2' });
  });

  it('Set beats Add of the same edit, and names are case-insensitive', () => {
    const h: OutgoingHttpHeaders = { 'x-a': '1' };
    applyHeaderEdits(h, [{ Add: { 'X-A': '2', 'X-B': 'b' }, Set: { 'X-A': '3' } }]);
    expect(h).toEqual({ 'x-a': '3', 'x-b': 'b' });
  });

  it('rewrites the matched prefix (or exact path) and keeps the query', () => {
    expect(rewritePath('/api/v1/users?x=1', { PathPrefix: '/api/' }, '/')).toBe('/v1/users?x=1');
    expect(rewritePath('/old', { PathExact: '/old' }, '/new')).toBe('/new');
    expect(rewritePath('/api/x', { PathPrefix: '/api' }, '/svc')).toBe('/svc/x');
    expect(rewritePath('/api/x', { PathPrefix: '/api' }, undefined)).toBe('/api/x');
    expect(rewritePath('/api/x', { PathRegex: '/api/.*' }, '/z')).toBe('/api/x');
  });
});

describe('planTargets (failover order)', () => {
  const ep = (host: string) => ({ host, port: 8443, sni: 's', spiffeId: 'x' });
  const t = (id: string, healthy: boolean, hosts: string[]): SidecarTarget => ({
    id,
    datacenter: id.split('.').at(-1)!,
    healthy,
    healthAgeMs: 0,
    endpoints: hosts.map(ep),
  });
  const order = failoverOrder(resolverNode('api.default.dc1', ['api.default.dc2', 'api.default.dc3']));
  const map = (...ts: SidecarTarget[]) => new Map(ts.map((x) => [x.id, x]));
  const none = () => false;

  it("takes the resolver's target while it is healthy, then the failover targets in order", () => {
    const plan = planTargets(order, map(t('api.default.dc1', true, ['a', 'b']), t('api.default.dc2', true, ['c']), t('api.default.dc3', true, ['d'])), none);
    expect(plan.failover).toBe('');
    expect(plan.targets.map((p) => [p.target.id, p.endpoints.map((e) => e.host)])).toEqual([
      ['api.default.dc1', ['a', 'b']],
      ['api.default.dc2', ['c']],
      ['api.default.dc3', ['d']],
    ]);
  });

  it('skips an unhealthy target and says why; unhealthy targets go last', () => {
    const plan = planTargets(order, map(t('api.default.dc1', false, ['a']), t('api.default.dc2', true, ['c']), t('api.default.dc3', true, ['d'])), none);
    expect(plan.targets.map((p) => p.target.id)).toEqual(['api.default.dc2', 'api.default.dc3', 'api.default.dc1']);
    expect(plan.failover).toBe('no healthy instance of api.default.dc1');
  });

  it('skips a target whose endpoints are all ejected, and leaves ejected endpoints out while others remain', () => {
    const ejected = (_t: string, e: { host: string }) => e.host === 'a' || e.host === 'b' || e.host === 'c';
    const plan = planTargets(order, map(t('api.default.dc1', true, ['a', 'b']), t('api.default.dc2', true, ['c', 'd'])), ejected);
    expect(plan.failover).toBe('api.default.dc1: 2 endpoints ejected');
    expect(plan.targets.map((p) => [p.target.id, p.endpoints.map((e) => e.host)])).toEqual([
      ['api.default.dc2', ['d']],
      ['api.default.dc1', ['a', 'b']],
    ]);
  });

  it('with no healthy target, takes the first with endpoints; rotates endpoints for round robin', () => {
    const plan = planTargets(order, map(t('api.default.dc1', false, []), t('api.default.dc2', false, ['c', 'd'])), none, (_, eps) => [...eps.slice(1), eps[0]]);
    expect(plan.targets[0].endpoints.map((e) => e.host)).toEqual(['d', 'c']);
    expect(plan.failover).toBe('no healthy instance of api.default.dc1');
    expect(planTargets(order, map(t('api.default.dc1', false, [])), none).targets).toEqual([]);
  });
});
