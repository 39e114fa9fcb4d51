import { describe, expect, it } from 'vitest';
import { cookieValue, requestHash, setCookieValue } from './load-balancer-hash.js';
import { EndpointBalancer, Maglev, Ring, type LbRequest, type LoadBalancer } from './load-balancer.js';
import type { SidecarEndpoint } from './sidecar-config.js';
import { endpointKey } from './upstream-state.js';

const ep = (i: number): SidecarEndpoint => ({
  host: `127.0.0.${i + 1}`,
  port: 21000,
  sni: 'api.default.dc1.internal.t.isthmus',
  spiffeId: 'spiffe://t.isthmus/ns/default/dc/dc1/svc/api',
});
const eps = (n: number) => Array.from({ length: n }, (_, i) => ep(i));
const T = 'api.default.dc1';

/** Picks per endpoint host over `n` calls. */
function spread(n: number, pick: (i: number) => SidecarEndpoint): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const h = pick(i).host;
    m.set(h, (m.get(h) ?? 0) + 1);
  }
  return m;
}

function order(b: EndpointBalancer, lb: LoadBalancer | undefined, list: SidecarEndpoint[], req?: LbRequest, rotate = 0) {
  return b.forCall(lb, req, rotate).order(T, list);
}

const header = (name: string, value: string): LbRequest => ({ headers: { [name]: value } });

describe('every policy', () => {
  it.each(['round_robin', 'random', 'least_request', 'ring_hash', 'maglev'] as const)('%s orders every endpoint exactly once', (Policy) => {
    const b = new EndpointBalancer(endpointKey);
    const list = eps(7);
    for (let i = 0; i < 50; i++) {
      const got = order(
        b,
        { Policy, HashPolicies: Policy.endsWith('hash') || Policy === 'maglev' ? [{ Field: 'header', FieldValue: 'x-user' }] : undefined },
        list,
        header('x-user', `u${i}`),
        i,
      );
      expect(got).toHaveLength(7);
      expect(new Set(got.map(endpointKey)).size).toBe(7);
    }
  });
});

describe('round_robin and random', () => {
  it('round robin takes each endpoint in turn (no LoadBalancer means round robin)', () => {
    const b = new EndpointBalancer(endpointKey);
    const list = eps(3);
    const got = spread(3000, (i) => order(b, undefined, list, undefined, i)[0]);
    expect([...got.values()]).toEqual([1000, 1000, 1000]);
    expect(order(b, { Policy: 'round_robin' }, list, undefined, 4).map((e) => e.host)).toEqual(['127.0.0.2', '127.0.0.3', '127.0.0.1']);
  });

  it('random spreads 3,000 picks over 3 endpoints evenly, within binomial tolerance', () => {
    const b = new EndpointBalancer(endpointKey);
    const list = eps(3);
    const got = spread(3000, () => order(b, { Policy: 'random' }, list)[0]);
    expect(got.size).toBe(3);
    // Each count is Binomial(3000, 1/3): mean 1000, sd 25.8; 6 sd either side fails about once in 1e9.
    for (const n of got.values()) expect(Math.abs(n - 1000)).toBeLessThan(155);
    // And not in turn: a random order's second place varies for one first place.
    const seconds = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const o = order(b, { Policy: 'random' }, list);
      if (o[0].host === '127.0.0.1') seconds.add(o[1].host);
    }
    expect(seconds.size).toBe(2);
  });
});

describe('least_request', () => {
  it('prefers the endpoint with fewer requests in flight (power of two choices)', () => {
    const b = new EndpointBalancer(endpointKey);
    const list = eps(2);
    // Endpoint 0 has five in flight, endpoint 1 none: with two draws, 0 wins only when both draws are 0 (1 in 4).
    for (let i = 0; i < 5; i++) b.started(T, list[0]);
    const got = spread(4000, () => order(b, { Policy: 'least_request' }, list)[0]);
    const busy = got.get('127.0.0.1') ?? 0;
    // Binomial(4000, 1/4): mean 1000, sd 27.4.
    expect(Math.abs(busy - 1000)).toBeLessThan(165);
    // ChoiceCount 5: the busy one is picked only when all five draws are it (1 in 32).
    const five = spread(3200, () => order(b, { Policy: 'least_request', LeastRequestConfig: { ChoiceCount: 5 } }, list)[0]);
    expect(five.get('127.0.0.1') ?? 0).toBeLessThan(200);
    // Once they are even again, both take calls about equally.
    for (let i = 0; i < 5; i++) b.finished(T, list[0]);
    expect(b.active(T, list[0])).toBe(0);
    const even = spread(3000, () => order(b, { Policy: 'least_request' }, list)[0]);
    for (const n of even.values()) expect(Math.abs(n - 1500)).toBeLessThan(165);
  });

  it('tries the rest by fewest in flight', () => {
    const b = new EndpointBalancer(endpointKey, () => 0); // every draw lands on endpoint 0
    const list = eps(3);
    b.started(T, list[0]);
    b.started(T, list[1]);
    b.started(T, list[1]);
    expect(order(b, { Policy: 'least_request' }, list).map((e) => e.host)).toEqual(['127.0.0.1', '127.0.0.3', '127.0.0.2']);
    // Counts are per target: the same endpoint of another target starts at zero.
    expect(b.active('other', list[1])).toBe(0);
  });
});

describe.each(['ring_hash', 'maglev'] as const)('%s', (Policy) => {
  const lb: LoadBalancer = { Policy, HashPolicies: [{ Field: 'header', FieldValue: 'x-user' }] };

  it('sends the same header value to the same endpoint every time, and 1,000 values over all endpoints', () => {
    const b = new EndpointBalancer(endpointKey);
    const list = eps(5);
    for (let u = 0; u < 20; u++) {
      const firsts = new Set<string>();
      for (let i = 0; i < 10; i++) firsts.add(endpointKey(order(b, lb, list, header('x-user', `user-${u}`))[0]));
      expect(firsts.size).toBe(1);
    }
    // The order of the endpoint list does not matter: the table is built over them sorted.
    expect(order(b, lb, [...list].reverse(), header('x-user', 'user-1'))[0]).toEqual(order(b, lb, list, header('x-user', 'user-1'))[0]);
    const got = spread(1000, (i) => order(b, lb, list, header('x-user', `user-${i}`))[0]);
    expect(got.size).toBe(5);
    // Each endpoint's share of 1,000 keys, about 200: the tables give each a near-equal part of the hash space.
    for (const n of got.values()) expect(n).toBeGreaterThan(120);
  });

  it('draws at random when no policy yields a hash (Envoy), spreading over the endpoints', () => {
    const b = new EndpointBalancer(endpointKey);
    const list = eps(3);
    const got = spread(3000, () => order(b, lb, list, { headers: {} })[0]);
    expect(got.size).toBe(3);
    for (const n of got.values()) expect(Math.abs(n - 1000)).toBeLessThan(200);
  });

  it('hashes the source IP for a connection (tcp): one caller sticks, many spread', () => {
    const b = new EndpointBalancer(endpointKey);
    const list = eps(4);
    const byIp: LoadBalancer = { Policy, HashPolicies: [{ SourceIP: true }] };
    const one = new Set<string>();
    for (let i = 0; i < 20; i++) one.add(endpointKey(order(b, byIp, list, { headers: {}, sourceIp: '10.0.0.7' })[0]));
    expect(one.size).toBe(1);
    const many = spread(400, (i) => order(b, byIp, list, { headers: {}, sourceIp: `10.0.${i >> 8}.${i & 255}` })[0]);
    expect(many.size).toBe(4);
  });
});

describe('stability when an endpoint leaves', () => {
  const ten = eps(10);
  const keysOf = (list: SidecarEndpoint[]) => list.map(endpointKey);
  // 10,000 keys hashed as a request's would be.
  const hashes = Array.from({ length: 10_000 }, (_, i) => requestHash([{ Field: 'header', FieldValue: 'x-user' }], header('x-user', `key-${i}`)).hash!);
  const land = (t: Ring | Maglev) => hashes.map((h) => endpointKey(t.eps[t.order(h)[0]]));
  const removed = endpointKey(ten[3]);
  const nine = ten.filter((_, i) => i !== 3);

  it('ring_hash moves only the keys that were on it: about a tenth, none that was on another endpoint', () => {
    const before = land(new Ring(ten, keysOf(ten)));
    const after = land(new Ring(nine, keysOf(nine)));
    const moved = before.map((b, i) => b !== after[i]);
    const count = moved.filter(Boolean).length;
    expect(moved.every((m, i) => !m || before[i] === removed)).toBe(true);
    expect(before.filter((b) => b === removed).length).toBe(count);
    // A tenth of 10,000, within what 1,024 points per endpoint leave of unevenness.
    expect(count).toBeGreaterThan(700);
    expect(count).toBeLessThan(1300);
  });

  it('maglev moves the keys that were on it, and few others', () => {
    const before = land(new Maglev(ten, keysOf(ten)));
    const after = land(new Maglev(nine, keysOf(nine)));
    const fromRemoved = before.filter((b, i) => b === removed && after[i] !== b).length;
    const others = before.filter((b, i) => b !== removed && after[i] !== b).length;
    expect(before.filter((b) => b === removed).length).toBe(fromRemoved);
    expect(fromRemoved).toBeGreaterThan(800);
    expect(fromRemoved).toBeLessThan(1200);
    // Maglev trades a little disruption for its even spread: the survivors' permutations are the
    // same, but a slot the removed endpoint had claimed early is taken by whichever survivor reaches
    // it, which shifts what that survivor claims after. With M (65,537) far above N that touches
    // well under 1 % of slots (the NSDI paper's measurements); the table depends only on the keys,
    // so this is exact: 19 of these 10,000 keys move between survivors.
    expect(others).toBeLessThan(100);
  });
});

describe('hash policies (Envoy)', () => {
  const h = (policies: Parameters<typeof requestHash>[0], req: LbRequest) => requestHash(policies, req).hash;
  const req: LbRequest = {
    headers: { 'x-user': 'ann', cookie: 'a=1; session="s-42"; b=2', 'x-tenant': ['t1', 't2'] },
    path: '/p?team=blue&x=1',
    sourceIp: '10.1.2.3',
  };

  it('hashes a header (first value), a cookie, a query parameter and the source IP; nothing when absent', () => {
    expect(h([{ Field: 'header', FieldValue: 'X-User' }], req)).toBe(h([{ Field: 'header', FieldValue: 'x-user' }], { headers: { 'x-user': 'ann' } }));
    expect(h([{ Field: 'header', FieldValue: 'x-tenant' }], req)).toBe(h([{ Field: 'header', FieldValue: 'x-tenant' }], { headers: { 'x-tenant': 't1' } }));
    expect(h([{ Field: 'cookie', FieldValue: 'session' }], req)).toBe(h([{ Field: 'cookie', FieldValue: 'session' }], { headers: { cookie: 'session=s-42' } }));
    expect(h([{ Field: 'query_parameter', FieldValue: 'team' }], req)).toBe(
      h([{ Field: 'query_parameter', FieldValue: 'team' }], { headers: {}, path: '/?team=blue' }),
    );
    expect(h([{ SourceIP: true }], req)).toBe(h([{ SourceIP: true }], { headers: {}, sourceIp: '10.1.2.3' }));
    expect(h([{ Field: 'query_parameter', FieldValue: 'team' }], { headers: {}, path: '/?team=red' })).not.toBe(
      h([{ Field: 'query_parameter', FieldValue: 'team' }], req),
    );
    for (const p of [
      { Field: 'header' as const, FieldValue: 'x-none' },
      { Field: 'cookie' as const, FieldValue: 'none' },
      { Field: 'query_parameter' as const, FieldValue: 'none' },
    ])
      expect(h([p], req)).toBeUndefined();
    expect(h([{ SourceIP: true }], { headers: {} })).toBeUndefined();
  });

  it('combines the policies that yield (rotl 1, XOR) and stops at a Terminal one once there is a hash', () => {
    const user = h([{ Field: 'header', FieldValue: 'x-user' }], req)!;
    const team = h([{ Field: 'query_parameter', FieldValue: 'team' }], req)!;
    const both = h(
      [
        { Field: 'header', FieldValue: 'x-user' },
        { Field: 'header', FieldValue: 'x-none' },
        { Field: 'query_parameter', FieldValue: 'team' },
      ],
      req,
    );
    expect(both).toBe(BigInt.asUintN(64, (user << 1n) | (user >> 63n)) ^ team);
    // Terminal after a hash: the rest are not looked at.
    expect(
      h(
        [
          { Field: 'header', FieldValue: 'x-user', Terminal: true },
          { Field: 'query_parameter', FieldValue: 'team' },
        ],
        req,
      ),
    ).toBe(user);
    // A Terminal policy that yields nothing, with nothing before it, does not stop the rest.
    expect(
      h(
        [
          { Field: 'header', FieldValue: 'x-none', Terminal: true },
          { Field: 'query_parameter', FieldValue: 'team' },
        ],
        req,
      ),
    ).toBe(team);
  });

  it('makes up a cookie for a CookieConfig with TTL or Session, and says so in Set-Cookie', () => {
    const ttl = requestHash([{ Field: 'cookie', FieldValue: 'sticky', CookieConfig: { TTL: '1h', Path: '/app' } }], { headers: {}, connection: 'c1' });
    expect(ttl.setCookies).toHaveLength(1);
    const m = /^sticky="([0-9a-f]{16})"; Max-Age=3600; Path=\/app; HttpOnly$/.exec(ttl.setCookies[0]);
    expect(m).not.toBeNull();
    // The made-up value is the hash the request was balanced on: the next request, carrying it, lands alike.
    const again = requestHash([{ Field: 'cookie', FieldValue: 'sticky', CookieConfig: { TTL: '1h' } }], { headers: { cookie: `sticky="${m![1]}"` } });
    expect(again.hash).toBe(ttl.hash);
    expect(again.setCookies).toEqual([]);
    // One connection's racing requests get the same cookie (Envoy names it after the connection).
    expect(
      requestHash([{ Field: 'cookie', FieldValue: 'sticky', CookieConfig: { TTL: '1h', Path: '/app' } }], { headers: {}, connection: 'c1' }).setCookies,
    ).toEqual(ttl.setCookies);
    const session = requestHash([{ Field: 'cookie', FieldValue: 'sticky', CookieConfig: { Session: true } }], { headers: {} });
    expect(session.setCookies[0]).toMatch(/^sticky="[0-9a-f]{16}"; HttpOnly$/);
    // Without TTL or Session there is nothing to make up: no hash, no cookie.
    const none = requestHash([{ Field: 'cookie', FieldValue: 'sticky', CookieConfig: { Path: '/' } }], { headers: {} });
    expect(none).toEqual({ hash: undefined, setCookies: [] });
  });

  it('reads cookies as Envoy does: the first pair by name, quotes taken off', () => {
    expect(cookieValue('a=1; b="two"; a=3', 'a')).toBe('1');
    expect(cookieValue(['x=1', 'b="two"'], 'b')).toBe('two');
    expect(cookieValue('ab=1', 'a')).toBeUndefined();
    expect(setCookieValue('s', 'v', '', 0)).toBe('s="v"; HttpOnly');
  });
});

describe('the hash tables', () => {
  it('are built once per endpoint set and reused', () => {
    const b = new EndpointBalancer(endpointKey);
    const lb: LoadBalancer = { Policy: 'ring_hash', RingHashConfig: { MinimumRingSize: 16 } };
    const list = eps(3);
    const first = order(b, lb, list, header('x', '1'));
    // A small ring (16 points each) still orders every endpoint.
    expect(first).toHaveLength(3);
    const ring = new Ring(list, list.map(endpointKey), { MinimumRingSize: 16 });
    expect(ring.points).toHaveLength(48);
    expect([...ring.points].every((p, i, a) => i === 0 || a[i - 1] <= p)).toBe(true);
    // MaximumRingSize caps the whole ring.
    expect(new Ring(list, list.map(endpointKey), { MaximumRingSize: 300 }).points).toHaveLength(300);
  });

  it('maglev fills every slot, each endpoint about M/N of them', () => {
    const list = eps(7);
    const t = new Maglev(list, list.map(endpointKey));
    const counts = new Array<number>(7).fill(0);
    for (const i of t.table) counts[i]++;
    expect(counts.reduce((a, b) => a + b)).toBe(65_537);
    // Equal weights take turns: counts differ by at most one.
    expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
  });
});
