// Join tokens: made at the primary for one named DC, used once. A token carries where the primary
// can be reached, the root to pin for that first connection, and a one-time secret whose hash the
// primary keeps (the secret itself is never stored).
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { ErrorCodes, IsthmusError, invalid } from '../core/errors.js';
import { isDatacenterName, isHostPort, TRUST_DOMAIN_RE } from '../core/names.js';

const PREFIX = 'isthmus-join.';

export interface JoinToken {
  v: 1;
  /** The primary DC. */
  primary: string;
  /** The DC this token lets join. */
  dc: string;
  trustDomain: string;
  /** WAN addresses of the primary's mesh gateways. */
  gateways: string[];
  /** The primary servers' federation addresses, tried when no gateway answers. */
  servers: string[];
  /** PEM of the primary's active root: the first connection trusts nothing else. */
  root: string;
  secret: string;
  /** Epoch ms after which the primary refuses it. */
  expires: number;
}

/** What the primary keeps of a token it made. */
export interface StoredJoinToken {
  Datacenter: string;
  Expires: number;
  CreatedAt: string;
  UsedAt?: string;
}

export function newSecret(): string {
  return randomBytes(32).toString('base64url');
}

export function secretHash(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

export function encodeJoinToken(t: JoinToken): string {
  return PREFIX + Buffer.from(JSON.stringify(t)).toString('base64url');
}

/** Reads a token, naming what is wrong with it; never trusts it further than its shape. */
export function decodeJoinToken(text: string, field = 'join-token'): JoinToken {
  const s = text.trim();
  if (!s.startsWith(PREFIX))
    throw invalid([
      { Field: field, Message: `not an Isthmus join token (it starts with "${PREFIX}"; make one with isthmus federation token --dc <dc> at the primary)` },
    ]);
  let t: Partial<JoinToken>;
  try {
    t = JSON.parse(Buffer.from(s.slice(PREFIX.length), 'base64url').toString('utf8')) as Partial<JoinToken>;
  } catch {
    throw invalid([{ Field: field, Message: 'the token is damaged (not base64url JSON); copy it again whole' }]);
  }
  const v: { Field: string; Message: string }[] = [];
  if (t.v !== 1) v.push({ Field: `${field}.v`, Message: 'unsupported token version' });
  if (!isDatacenterName(t.primary)) v.push({ Field: `${field}.primary`, Message: 'must name the primary DC' });
  if (!isDatacenterName(t.dc)) v.push({ Field: `${field}.dc`, Message: 'must name the joining DC' });
  if (typeof t.trustDomain !== 'string' || !TRUST_DOMAIN_RE.test(t.trustDomain)) v.push({ Field: `${field}.trustDomain`, Message: 'must be a trust domain' });
  const addrs = (x: unknown) => Array.isArray(x) && x.every((a) => isHostPort(a));
  if (!addrs(t.gateways)) v.push({ Field: `${field}.gateways`, Message: 'must be a list of host:port' });
  if (!addrs(t.servers)) v.push({ Field: `${field}.servers`, Message: 'must be a list of host:port' });
  if (Array.isArray(t.gateways) && Array.isArray(t.servers) && t.gateways.length + t.servers.length === 0)
    v.push({ Field: `${field}.gateways`, Message: 'the token names no address of the primary' });
  if (typeof t.root !== 'string' || !t.root.includes('BEGIN CERTIFICATE')) v.push({ Field: `${field}.root`, Message: 'must hold the PEM of the root to pin' });
  if (typeof t.secret !== 'string' || t.secret.length < 32) v.push({ Field: `${field}.secret`, Message: 'missing or too short' });
  if (typeof t.expires !== 'number') v.push({ Field: `${field}.expires`, Message: 'must be a time' });
  if (v.length) throw invalid(v);
  return t as JoinToken;
}

/** Checks a presented secret against what the primary stored; throws PERMISSION_DENIED naming why. */
export function checkJoin(stored: StoredJoinToken | undefined, secret: string, hash: string, dc: string, now: number): void {
  const deny = (why: string) => new IsthmusError(ErrorCodes.PERMISSION_DENIED, `join refused: ${why}`);
  if (!stored) throw deny('unknown token (forged, or made by another primary)');
  // The lookup is by hash already; compare again in constant time to keep the check honest.
  const a = Buffer.from(secretHash(secret), 'hex');
  const b = Buffer.from(hash, 'hex');
  if (a.length !== b.length || !timingSafeEqual(a, b)) throw deny('unknown token');
  if (stored.UsedAt) throw deny(`the token was already used at ${stored.UsedAt}; make a new one with isthmus federation token --dc ${stored.Datacenter}`);
  if (stored.Expires < now) throw deny('the token has expired; make a new one');
  if (stored.Datacenter !== dc) throw deny(`the token is for datacenter ${stored.Datacenter}, not ${dc}`);
}
