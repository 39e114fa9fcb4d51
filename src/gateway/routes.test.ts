import { describe, expect, it } from 'vitest';
import { RouteTable, type GatewayRoutes } from './routes.js';

const TD = 'r.isthmus';
const input = (over: Partial<GatewayRoutes> = {}): GatewayRoutes => ({
  dc: 'dc1',
  trustDomain: TD,
  services: [
    {
      name: 'api',
      namespace: 'default',
      endpoints: [
        { host: '127.0.0.1', port: 21001, tags: ['v1'] },
        { host: '127.0.0.1', port: 21002, tags: ['v2'] },
        { host: '127.0.0.2', port: 21003, tags: ['v2'] },
      ],
    },
    { name: 'db', namespace: 'team', endpoints: [{ host: '10.0.0.9', port: 21000 }] },
    { name: 'empty', namespace: 'default', endpoints: [] },
  ],
  serverAddresses: ['127.0.1.1:8300', '127.0.1.2:8300'],
  remotes: [
    { dc: 'dc2', gateways: ['127.0.2.1:8443', '127.0.2.2:8443'] },
    { dc: 'dc3', gateways: [] },
    { dc: 'dc1', gateways: ['127.0.1.9:8443'] },
  ],
  ...over,
});

const targets = (t: RouteTable, sni: string) => {
  const d = t.resolve(sni);
  if (!d.ok) throw new Error(d.reason);
  return d.targets.map((x) => `${x.host}:${x.port}`);
};

describe('gateway routes', () => {
  it("sends this DC's service names to healthy local sidecars, round robin, the others next in line", () => {
    const t = new RouteTable(input());
    const sni = `api.default.dc1.internal.${TD}`;
    const firsts = [0, 1, 2, 3].map(() => targets(t, sni));
    expect(firsts.map((f) => f[0])).toEqual(['127.0.0.1:21001', '127.0.0.1:21002', '127.0.0.2:21003', '127.0.0.1:21001']);
    expect(firsts[1]).toEqual(['127.0.0.1:21002', '127.0.0.2:21003', '127.0.0.1:21001']);
    expect(t.resolve(sni)).toMatchObject({ ok: true, hop: 'gateway-ingress', route: 'api.default.dc1', name: { kind: 'service', service: 'api' } });
    expect(targets(t, `db.team.dc1.internal.${TD}`)).toEqual(['10.0.0.9:21000']);
  });

  it('sends a subset name to the instances tagged with it', () => {
    const t = new RouteTable(input());
    expect(targets(t, `v2.api.default.dc1.internal.${TD}`).sort()).toEqual(['127.0.0.1:21002', '127.0.0.2:21003']);
    expect(t.resolve(`v2.api.default.dc1.internal.${TD}`)).toMatchObject({ route: 'v2.api.default.dc1' });
    expect(t.resolve(`v9.api.default.dc1.internal.${TD}`)).toMatchObject({ ok: false, reason: expect.stringContaining('subset tag v9') });
  });

  it('sends server.<own dc> to a local server federation address', () => {
    const t = new RouteTable(input());
    expect(t.resolve(`server.dc1.${TD}`)).toMatchObject({ ok: true, hop: 'gateway-ingress', route: 'server.dc1' });
    expect([targets(t, `server.dc1.${TD}`)[0], targets(t, `server.dc1.${TD}`)[0]].sort()).toEqual(['127.0.1.1:8300', '127.0.1.2:8300']);
    expect(new RouteTable(input({ serverAddresses: [] })).resolve(`server.dc1.${TD}`)).toMatchObject({
      ok: false,
      reason: expect.stringContaining('no server federation address'),
    });
  });

  it("sends another DC's names (service or server) to that DC's gateways, each first in turn, the other after it", () => {
    const t = new RouteTable(input());
    const seen: string[][] = [];
    for (const sni of [`api.default.dc2.internal.${TD}`, `v1.x.y.dc2.internal.${TD}`, `server.dc2.${TD}`, `api.default.dc2.internal.${TD}`]) {
      const d = t.resolve(sni);
      expect(d).toMatchObject({ ok: true, hop: 'gateway-egress' });
      seen.push(d.ok ? d.targets.map((x) => `${x.host}:${x.port}`) : []);
    }
    // One rotation per remote DC, whatever the name: connections alternate between its two gateways,
    // and each keeps the other to fail over to.
    expect(seen.map((s) => s[0])).toEqual(['127.0.2.1:8443', '127.0.2.2:8443', '127.0.2.1:8443', '127.0.2.2:8443']);
    for (const s of seen) expect([...s].sort()).toEqual(['127.0.2.1:8443', '127.0.2.2:8443']);
    expect(t.resolve(`api.default.dc2.internal.${TD}`)).toMatchObject({ route: 'api.default.dc2' });
  });

  it('routes nothing else, saying why', () => {
    const t = new RouteTable(input());
    const no = (sni: string) => {
      const d = t.resolve(sni);
      expect(d.ok).toBe(false);
      return d.ok ? '' : d.reason;
    };
    expect(no(`api.default.dc1.internal.other.isthmus`)).toMatch(/not in trust domain/);
    expect(no(`ghost.default.dc1.internal.${TD}`)).toMatch(/no healthy instance of ghost in namespace default in dc1/);
    expect(no(`api.team.dc1.internal.${TD}`)).toMatch(/no healthy instance of api in namespace team/);
    expect(no(`empty.default.dc1.internal.${TD}`)).toMatch(/no healthy instance of empty/);
    expect(no(`api.default.dc3.internal.${TD}`)).toMatch(/no gateway known for datacenter dc3/);
    expect(no(`api.default.dc9.internal.${TD}`)).toMatch(/no gateway known for datacenter dc9/);
    expect(no('localhost')).toMatch(/not in trust domain/);
    expect(RouteTable.empty('dc1').resolve(`api.default.dc1.internal.${TD}`)).toMatchObject({
      ok: false,
      reason: expect.stringContaining('no routing configuration'),
    });
  });

  it('keeps round-robin positions across a swap', () => {
    const a = new RouteTable(input());
    const sni = `api.default.dc1.internal.${TD}`;
    expect(targets(a, sni)[0]).toBe('127.0.0.1:21001');
    const b = new RouteTable(input(), a);
    expect(targets(b, sni)[0]).toBe('127.0.0.1:21002');
  });

  it('reads host:port and [v6]:port targets, skipping what is neither', () => {
    expect(new RouteTable(input({ remotes: [{ dc: 'dc2', gateways: ['nonsense', '127.0.2.1:8443'] }] })).resolve(`a.b.dc2.internal.${TD}`)).toMatchObject({
      targets: [{ host: '127.0.2.1', port: 8443 }],
    });
  });
});
