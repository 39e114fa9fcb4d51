import { describe, expect, it } from 'vitest';
import { parseSni, serverSni, serviceSni } from './sni.js';

const TD = '7f3a9c.isthmus';

describe('SNI names', () => {
  it('builds the names of DESIGN.md', () => {
    expect(serviceSni('api', 'default', 'dc2', TD)).toBe(`api.default.dc2.internal.${TD}`);
    expect(serviceSni('api', 'default', 'dc2', TD, 'v1')).toBe(`v1.api.default.dc2.internal.${TD}`);
    expect(serverSni('dc3', TD)).toBe(`server.dc3.${TD}`);
  });

  it('parses service, subset and server names back', () => {
    expect(parseSni(`api.default.dc2.internal.${TD}`, TD)).toEqual({ kind: 'service', service: 'api', namespace: 'default', dc: 'dc2', trustDomain: TD });
    expect(parseSni(`v1.api.team-a.dc1.internal.${TD}`, TD)).toEqual({ kind: 'service', subset: 'v1', service: 'api', namespace: 'team-a', dc: 'dc1', trustDomain: TD });
    expect(parseSni(`server.dc3.${TD}`, TD)).toEqual({ kind: 'server', dc: 'dc3', trustDomain: TD });
    // A service may be called "server" or "internal": the shape decides, not the words.
    expect(parseSni(`server.default.dc1.internal.${TD}`, TD)).toMatchObject({ kind: 'service', service: 'server' });
    expect(parseSni(`internal.default.dc1.internal.${TD}`, TD)).toMatchObject({ kind: 'service', service: 'internal' });
    expect(parseSni(`web_1.default.dc1.internal.${TD}`, TD)).toMatchObject({ kind: 'service', service: 'web_1' });
  });

  it('takes the trust domain and the fixed words in any case, keeps service names as sent', () => {
    expect(parseSni(`Api.default.DC2.INTERNAL.7F3A9C.Isthmus`, TD)).toMatchObject({ kind: 'service', service: 'Api', dc: 'dc2' });
    expect(parseSni(`SERVER.dc1.${TD.toUpperCase()}`, TD)).toMatchObject({ kind: 'server', dc: 'dc1' });
  });

  it('refuses other trust domains and other shapes, saying why', () => {
    const invalid = (s: string) => {
      const r = parseSni(s, TD);
      expect(r.kind).toBe('invalid');
      return r.kind === 'invalid' ? r.reason : '';
    };
    expect(invalid(`api.default.dc1.internal.other.isthmus`)).toMatch(/not in trust domain 7f3a9c\.isthmus/);
    expect(invalid(`api.default.dc1.internal.x${TD}`)).toMatch(/not in trust domain/);
    expect(invalid(TD)).toMatch(/not in trust domain/);
    expect(invalid(`.${TD}`)).toMatch(/not in trust domain/);
    expect(invalid(`api.default.internal.${TD}`)).toMatch(/neither/);
    expect(invalid(`a.b.api.default.dc1.internal.${TD}`)).toMatch(/neither/);
    expect(invalid(`api.default.dc1.external.${TD}`)).toMatch(/neither/);
    expect(invalid(`server.${TD}`)).toMatch(/neither/);
    expect(invalid(`node1.server.dc1.${TD}`)).toMatch(/neither/);
    expect(invalid(`api..dc1.internal.${TD}`)).toMatch(/malformed label/);
    expect(invalid(`-api.default.dc1.internal.${TD}`)).toMatch(/malformed label/);
  });
});
