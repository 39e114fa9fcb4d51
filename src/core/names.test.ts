import { describe, expect, it } from 'vitest';
import {
  formatHostPort,
  isDatacenterName,
  isDatacenterRef,
  isHostPort,
  isServiceName,
  parseHostPort,
  parseServerSpiffeId,
  parseServiceSpiffeId,
  parseSni,
  readHostPort,
  redactUrl,
  redactUrlsIn,
  serverSni,
  serverSpiffeId,
  serviceDnsName,
  serviceSni,
  serviceSpiffeId,
  spiffeIdOfSan,
  trustDomainSpiffeId,
  uriSans,
} from './names.js';

const TD = '7f3a9c.isthmus';

describe('SNI names', () => {
  it('builds the names of DESIGN.md', () => {
    expect(serviceSni({ service: 'api', namespace: 'default', dc: 'dc2', trustDomain: TD })).toBe(`api.default.dc2.internal.${TD}`);
    expect(serviceSni({ service: 'api', namespace: 'default', dc: 'dc2', trustDomain: TD, subset: 'v1' })).toBe(`v1.api.default.dc2.internal.${TD}`);
    expect(serverSni({ dc: 'dc3', trustDomain: TD })).toBe(`server.dc3.${TD}`);
  });

  it('parses service, subset and server names back', () => {
    expect(parseSni(`api.default.dc2.internal.${TD}`, TD)).toEqual({ kind: 'service', service: 'api', namespace: 'default', dc: 'dc2', trustDomain: TD });
    expect(parseSni(`v1.api.team-a.dc1.internal.${TD}`, TD)).toEqual({
      kind: 'service',
      subset: 'v1',
      service: 'api',
      namespace: 'team-a',
      dc: 'dc1',
      trustDomain: TD,
    });
    expect(parseSni(`server.dc3.${TD}`, TD)).toEqual({ kind: 'server', dc: 'dc3', trustDomain: TD });
    // A service may be called "server" or "internal": the shape decides, not the words.
    expect(parseSni(`server.default.dc1.internal.${TD}`, TD)).toMatchObject({ kind: 'service', service: 'server' });
    expect(parseSni(`internal.default.dc1.internal.${TD}`, TD)).toMatchObject({ kind: 'service', service: 'internal' });
    expect(parseSni(`web_1.default.dc1.internal.${TD}`, TD)).toMatchObject({ kind: 'service', service: 'web_1' });
  });

  it('reads back what it builds', () => {
    const svc = { service: 'api', namespace: 'team', dc: 'dc9', trustDomain: TD, subset: 'canary' };
    expect(parseSni(serviceSni(svc), TD)).toEqual({ kind: 'service', ...svc });
    expect(parseSni(serverSni({ dc: 'dc9', trustDomain: TD }), TD)).toEqual({ kind: 'server', dc: 'dc9', trustDomain: TD });
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

describe('SPIFFE IDs', () => {
  it('builds service, server and trust-domain IDs and the leaf DNS name', () => {
    const id = { trustDomain: TD, namespace: 'default', dc: 'dc1', service: 'web' };
    expect(serviceSpiffeId(id)).toBe(`spiffe://${TD}/ns/default/dc/dc1/svc/web`);
    expect(serverSpiffeId({ trustDomain: TD, dc: 'dc2' })).toBe(`spiffe://${TD}/agent/server/dc/dc2`);
    expect(trustDomainSpiffeId(TD)).toBe(`spiffe://${TD}`);
    expect(serviceDnsName(id)).toBe(`web.svc.default.dc1.${TD}`);
  });

  it('parses each kind only as itself', () => {
    expect(parseServiceSpiffeId(`spiffe://${TD}/ns/team_a/dc/dc1/svc/web-1`)).toEqual({ trustDomain: TD, namespace: 'team_a', dc: 'dc1', service: 'web-1' });
    expect(parseServerSpiffeId(`spiffe://${TD}/agent/server/dc/dc2`)).toEqual({ trustDomain: TD, dc: 'dc2' });
    expect(parseServiceSpiffeId(`spiffe://${TD}/agent/server/dc/dc2`)).toBeUndefined();
    expect(parseServerSpiffeId(`spiffe://${TD}/ns/default/dc/dc1/svc/web`)).toBeUndefined();
    for (const bad of [
      `spiffe://${TD}/svc/web`,
      `spiffe://${TD}/ns/default/dc/DC1/svc/web`,
      `spiffe://${TD}/ns/default/dc/dc1/svc/web/x`,
      `spiffe://${TD}/ns/a b/dc/dc1/svc/web`,
      `https://${TD}/ns/default/dc/dc1/svc/web`,
      '',
    ]) {
      expect(parseServiceSpiffeId(bad), bad).toBeUndefined();
    }
    for (const bad of [
      `spiffe://${TD}/agent/server/dc/`,
      `spiffe://${TD}/agent/server/dc/dc2/x`,
      `spiffe://${TD}/agent/server/dc/Dc2`,
      `spiffe://Other/agent/server/dc/dc2`,
    ]) {
      expect(parseServerSpiffeId(bad), bad).toBeUndefined();
    }
  });

  it('reads back what it builds', () => {
    const id = { trustDomain: TD, namespace: 'ns1', dc: 'dc-east', service: 'db_main' };
    expect(parseServiceSpiffeId(serviceSpiffeId(id))).toEqual(id);
    expect(parseServerSpiffeId(serverSpiffeId({ trustDomain: TD, dc: 'dc-east' }))).toEqual({ trustDomain: TD, dc: 'dc-east' });
  });

  it('finds URIs in a subjectAltName as Node writes it', () => {
    const san = `DNS:web.svc.default.dc1.${TD}, URI:https://example.com/x, URI:spiffe://${TD}/ns/default/dc/dc1/svc/web`;
    expect(uriSans(san)).toEqual(['https://example.com/x', `spiffe://${TD}/ns/default/dc/dc1/svc/web`]);
    expect(spiffeIdOfSan(san)).toBe(`spiffe://${TD}/ns/default/dc/dc1/svc/web`);
    expect(spiffeIdOfSan('DNS:a, URI:https://example.com')).toBeUndefined();
    expect(uriSans(undefined)).toEqual([]);
    expect(spiffeIdOfSan(undefined)).toBeUndefined();
  });
});

describe('name rules', () => {
  it('names a datacenter as a lowercase DNS label', () => {
    for (const ok of ['dc1', 'a', 'eu-west-1', '0', 'x'.repeat(63)]) expect(isDatacenterName(ok), ok).toBe(true);
    for (const bad of ['', 'DC1', '-dc', 'dc-', 'dc_1', 'dc.1', 'x'.repeat(64), 'dc 1', 'dc1\n', 42]) expect(isDatacenterName(bad), String(bad)).toBe(false);
  });

  it('takes references to a datacenter in the looser shape they always had', () => {
    for (const ok of ['dc1', '-dc', 'dc-', 'x'.repeat(63)]) expect(isDatacenterRef(ok), ok).toBe(true);
    for (const bad of ['', 'DC1', 'dc_1', 'x'.repeat(64), 'a/b', undefined]) expect(isDatacenterRef(bad), String(bad)).toBe(false);
  });

  it('names a service or namespace with letters, digits, dashes and underscores, at most 63', () => {
    for (const ok of ['web', 'Web_1', 'a', '9-x', 'x'.repeat(63)]) expect(isServiceName(ok), ok).toBe(true);
    for (const bad of ['', '_web', '-web', 'a.b', 'a/b', 'x'.repeat(64), '*', 'é', null]) expect(isServiceName(bad), String(bad)).toBe(false);
  });
});

describe('host:port', () => {
  it('reads host:port and [v6]:port, with ports 1..65535', () => {
    expect(parseHostPort('127.0.0.1:8443')).toEqual({ host: '127.0.0.1', port: 8443 });
    expect(parseHostPort('[::1]:8443')).toEqual({ host: '::1', port: 8443 });
    expect(parseHostPort('gw.example:1')).toEqual({ host: 'gw.example', port: 1 });
    expect(parseHostPort('gw_1.example:65535')).toEqual({ host: 'gw_1.example', port: 65535 });
    for (const bad of ['127.0.0.1', '127.0.0.1:0', '127.0.0.1:70000', '::1:8443', ':8443', '', 'a b:1', '[::1]', 'host:123456'])
      expect(parseHostPort(bad), bad).toBeUndefined();
  });

  it('takes port 0 only for listen addresses, and only name characters for configured ones', () => {
    expect(parseHostPort('0.0.0.0:0', { portZero: true })).toEqual({ host: '0.0.0.0', port: 0 });
    expect(parseHostPort('gw_1:80', { host: 'address' })).toBeUndefined();
    expect(parseHostPort('[fe80::1]:80', { host: 'address' })).toEqual({ host: 'fe80::1', port: 80 });
    expect(readHostPort('10.0.0.1:65536', { portZero: true })).toEqual({ problem: 'port out of range' });
    expect(readHostPort('10.0.0.1', { portZero: true })).toEqual({ problem: 'not host:port' });
    expect(isHostPort('10.0.0.1:80')).toBe(true);
    expect(isHostPort(8080)).toBe(false);
  });

  it('writes IPv6 hosts in brackets, and reads back what it writes', () => {
    expect(formatHostPort({ host: '::1', port: 8443 })).toBe('[::1]:8443');
    expect(formatHostPort({ host: '10.0.0.1', port: 80 })).toBe('10.0.0.1:80');
    for (const t of [
      { host: '2001:db8::7', port: 443 },
      { host: 'gw.example', port: 1 },
    ])
      expect(parseHostPort(formatHostPort(t))).toEqual(t);
  });
});

describe('credentials in URLs', () => {
  it('masks the password of one URL, whatever it holds', () => {
    expect(redactUrl('redis://user:s3cret@10.0.0.1:6379/0')).toBe('redis://user:*****@10.0.0.1:6379/0');
    expect(redactUrl('rediss://:p:a/ss@redis.example:6380')).toBe('rediss://:*****@redis.example:6380');
    expect(redactUrl('redis://10.0.0.1:6379')).toBe('redis://10.0.0.1:6379');
  });

  it('masks every URL password in free text, and nothing else', () => {
    expect(redactUrlsIn('cannot reach redis://u:pw@a:1 nor REDIS://v:pw2@b:2, user:name@example.com stays')).toBe(
      'cannot reach redis://u:*****@a:1 nor REDIS://v:*****@b:2, user:name@example.com stays',
    );
  });
});
