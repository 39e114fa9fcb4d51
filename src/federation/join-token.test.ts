import { describe, expect, it } from 'vitest';
import { checkJoin, decodeJoinToken, encodeJoinToken, newSecret, secretHash, type JoinToken } from './join-token.js';

const token = (over: Partial<JoinToken> = {}): JoinToken => ({
  v: 1,
  primary: 'dc1',
  dc: 'dc2',
  trustDomain: 'abc.isthmus',
  gateways: ['127.0.1.1:8443'],
  servers: ['127.0.1.1:8503'],
  root: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n',
  secret: newSecret(),
  expires: Date.now() + 60_000,
  ...over,
});

describe('join tokens', () => {
  it('round-trips and names every bad field', () => {
    const t = token();
    expect(decodeJoinToken(encodeJoinToken(t))).toEqual(t);
    expect(() => decodeJoinToken('hello')).toThrow(/not an Isthmus join token/);
    expect(() => decodeJoinToken('isthmus-join.%%%')).toThrow(/damaged/);
    try {
      decodeJoinToken(encodeJoinToken(token({ dc: 'DC 2', gateways: ['nope'], root: 'x' })));
      expect.unreachable();
    } catch (err) {
      expect((err as { violations: { Field: string }[] }).violations.map((v) => v.Field)).toEqual(['join-token.dc', 'join-token.gateways', 'join-token.root']);
    }
  });

  it('accepts a secret once, for its DC, before it expires', () => {
    const secret = newSecret();
    const hash = secretHash(secret);
    const now = Date.now();
    const stored = { Datacenter: 'dc2', Expires: now + 1000, CreatedAt: new Date(now).toISOString() };
    expect(() => checkJoin(stored, secret, hash, 'dc2', now)).not.toThrow();
    expect(() => checkJoin(stored, secret, hash, 'dc3', now)).toThrow(/for datacenter dc2/);
    expect(() => checkJoin({ ...stored, UsedAt: 'then' }, secret, hash, 'dc2', now)).toThrow(/already used/);
    expect(() => checkJoin(stored, secret, hash, 'dc2', now + 2000)).toThrow(/expired/);
    expect(() => checkJoin(undefined, secret, hash, 'dc2', now)).toThrow(/unknown token/);
    expect(() => checkJoin(stored, newSecret(), hash, 'dc2', now)).toThrow(/unknown token/);
  });
});
