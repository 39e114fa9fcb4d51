// The join of a secondary. At the primary: one-time join tokens (made by an operator) and the join
// call, which checks the token, signs the secondary's intermediate (only its public key travels) and
// makes it a member. At the secondary: the first start with a token, which calls the primary and
// lands the roots, the intermediate and the join state in one commit.
import { auditOp, type Actor } from '../core/audit.js';
import { Backoff, sleep } from '../core/backoff.js';
import { ErrorCodes, IsthmusError, invalid, isIsthmusError } from '../core/errors.js';
import { DATACENTER_NAME_RULE, isDatacenterName } from '../core/names.js';
import type * as grpc from '@grpc/grpc-js';
import { newKeyPem, publicKeyPemOf, type CaRoot } from '../ca/index.js';
import type { Store } from '../store/index.js';
import { localGateways } from './catalog-export.js';
import type { FederationContext } from './context.js';
import { fromStatus, unary } from './grpc-calls.js';
import type { ServerIdentity } from './identity.js';
import { checkJoin, encodeJoinToken, newSecret, secretHash, type JoinToken, type StoredJoinToken } from './join-token.js';
import type { Membership } from './membership.js';
import type { JoinRequest, JoinResponse } from './proto.js';
import { FED_JOIN_TOKENS, FED_MEMBERS, FED_STATE, type JoinState, type Member } from './tables.js';

/** How the DC behind `store` joined its federation, if it is a secondary that did (read before the server is built). */
export function joinedAs(store: Store): Pick<JoinState, 'PrimaryDatacenter' | 'TrustDomain'> | undefined {
  return store.get<JoinState>(FED_STATE, 'join')?.value;
}

export class Join {
  constructor(
    private readonly ctx: FederationContext,
    private readonly members: Membership,
    private readonly identity: ServerIdentity,
    /** The server addresses of this DC's federation listener (offered in a token when there is no gateway). */
    private readonly serverAddresses: () => string[],
  ) {}

  /** Whether this DC has what a join brings (always, in the primary). */
  joined(): boolean {
    return this.ctx.isPrimary || (this.members.joinState() !== undefined && this.ctx.ca.intermediate() !== undefined);
  }

  /**
   * A secondary that has not joined yet joins the primary with its token. Runs before the CA starts,
   * so the CA finds its intermediate in place. With several servers of this DC on one Redis, only the
   * leader joins; the others wait until its join is in the store.
   */
  async join(signal?: AbortSignal): Promise<void> {
    if (this.joined()) return;
    const token = this.ctx.joinToken;
    if (!token) {
      throw new IsthmusError(
        ErrorCodes.BAD_CONFIG,
        `datacenter ${this.ctx.dc} has not joined ${this.ctx.primaryDc}: start it once with --join-token (made at the primary with: isthmus federation token --dc ${this.ctx.dc})`,
      );
    }
    if (token.dc !== this.ctx.dc) throw new IsthmusError(ErrorCodes.BAD_CONFIG, `the join token is for datacenter ${token.dc}, this server is ${this.ctx.dc}`);
    if (token.primary !== this.ctx.primaryDc)
      throw new IsthmusError(ErrorCodes.BAD_CONFIG, `the join token is from primary ${token.primary}, but --primary-dc says ${this.ctx.primaryDc}`);
    if (!this.ctx.store.isLeader()) await this.awaitLeadersJoin(signal);
    if (this.joined()) return;
    await this.callPrimary(token, signal);
  }

  /** Another replica leads: the join is its to make (a token is used once); wait for it, or for the leadership. */
  private async awaitLeadersJoin(signal?: AbortSignal): Promise<void> {
    const { store } = this.ctx;
    this.ctx.log.info('waiting for the leader of this datacenter to join the federation', { leader: store.leader() });
    while (!this.joined() && !store.isLeader()) {
      if (signal?.aborted || this.ctx.stopped) throw new IsthmusError(ErrorCodes.UNAVAILABLE, 'join abandoned: the server is stopping');
      await store.waitForChange([FED_STATE], store.tableIndex(FED_STATE), 1000, signal);
    }
  }

  private async callPrimary(token: JoinToken, signal?: AbortSignal): Promise<void> {
    const keyPem = await newKeyPem();
    const publicKeyPem = await publicKeyPemOf(keyPem);
    const addrs = [...new Set([...token.gateways, ...token.servers])];
    const backoff = new Backoff({ initialMs: 250, maxMs: 5000 });
    let res: JoinResponse | undefined;
    for (let attempt = 0; !res; attempt++) {
      if (signal?.aborted || this.ctx.stopped) throw new IsthmusError(ErrorCodes.UNAVAILABLE, 'join abandoned: the server is stopping');
      const addr = addrs[attempt % addrs.length];
      const client = this.identity.client(addr, token.primary, { roots: [token.root], trustDomain: token.trustDomain });
      try {
        res = await unary<JoinRequest, JoinResponse>(client.join.bind(client), { secret: token.secret, datacenter: this.ctx.dc, publicKeyPem }, 10_000);
      } catch (err) {
        const e = fromStatus(err as grpc.ServiceError, `primary ${token.primary} not reachable at ${addr}`);
        if (e.code !== ErrorCodes.PRIMARY_UNREACHABLE) throw e;
        this.ctx.log.warn('join: primary not reachable yet; retrying', { address: addr, error: e.message });
        if (attempt >= addrs.length * 20) throw e;
        await sleep(backoff.next(), signal);
      } finally {
        client.close();
      }
    }
    if (res.trustDomain !== token.trustDomain)
      throw new IsthmusError(
        ErrorCodes.TRUST_DOMAIN_MISMATCH,
        `the primary answered for trust domain ${res.trustDomain}, the token names ${token.trustDomain}`,
      );
    const roots = JSON.parse(res.rootsJson) as CaRoot[];
    const state: JoinState = {
      PrimaryDatacenter: token.primary,
      TrustDomain: token.trustDomain,
      Gateways: token.gateways,
      Servers: token.servers,
      JoinedAt: new Date().toISOString(),
    };
    await this.ctx.store.commit([
      ...this.ctx.ca.joinOps(roots, res.intermediateCertPem, keyPem, res.rootId),
      { op: 'put', table: FED_STATE, key: 'join', value: state },
    ]);
    this.ctx.log.info('joined the federation', { primary: token.primary, trustDomain: token.trustDomain });
  }

  /** Primary: a one-time token for `dc` to join with, valid for `ttlMs`. */
  async createToken(dc: string, ttlMs: number, actor: Actor): Promise<{ token: string; expires: string }> {
    const { ctx } = this;
    if (!ctx.isPrimary) throw new IsthmusError(ErrorCodes.PRIMARY_UNREACHABLE, `join tokens are made in the primary datacenter (${ctx.primaryDc})`);
    const v = [];
    if (!isDatacenterName(dc)) v.push({ Field: 'Datacenter', Message: `must be ${DATACENTER_NAME_RULE} (e.g. dc2)` });
    else if (dc === ctx.dc) v.push({ Field: 'Datacenter', Message: `${dc} is the primary itself` });
    if (!Number.isFinite(ttlMs) || ttlMs < 60_000 || ttlMs > 7 * 86_400_000) v.push({ Field: 'TTL', Message: 'must be between 1m and 168h' });
    if (v.length) throw invalid(v);
    const root = ctx.ca.activeRoot();
    if (!root) throw new IsthmusError(ErrorCodes.UNAVAILABLE, 'the primary has no root CA yet; try again in a moment');
    const secret = newSecret();
    const expires = Date.now() + ttlMs;
    const stored: StoredJoinToken = { Datacenter: dc, Expires: expires, CreatedAt: new Date().toISOString() };
    await ctx.store.commit([
      { op: 'put', table: FED_JOIN_TOKENS, key: secretHash(secret), value: stored, ifIndex: 0 },
      auditOp(actor, {
        Kind: 'federation',
        Action: 'create',
        Subject: `join token for ${dc}`,
        After: { Datacenter: dc, Expires: new Date(expires).toISOString() },
      }),
    ]);
    const gateways = localGateways(ctx.catalog).wan;
    const token: JoinToken = {
      v: 1,
      primary: ctx.dc,
      dc,
      trustDomain: ctx.trustDomain(),
      gateways,
      // Servers are reached through the gateways; their own address is offered only when there is
      // no gateway yet (one network, or a first test), as a server's port is not meant for the WAN.
      servers: gateways.length ? [] : this.serverAddresses(),
      root: root.RootCert,
      secret,
      expires,
    };
    return { token: encodeJoinToken(token), expires: new Date(expires).toISOString() };
  }

  /** Primary: the join call of a secondary. */
  async onJoin(req: JoinRequest): Promise<JoinResponse> {
    const { ctx } = this;
    if (!ctx.isPrimary) throw new IsthmusError(ErrorCodes.PRIMARY_UNREACHABLE, `join at the primary (${ctx.primaryDc}), not at ${ctx.dc}`);
    if (typeof req.secret !== 'string' || typeof req.datacenter !== 'string' || !req.publicKeyPem?.includes('PUBLIC KEY')) {
      throw invalid([{ Field: 'JoinRequest', Message: 'needs secret, datacenter and public_key_pem' }]);
    }
    const hash = secretHash(req.secret);
    const entry = ctx.store.get<StoredJoinToken>(FED_JOIN_TOKENS, hash);
    checkJoin(entry?.value, req.secret, hash, req.datacenter, Date.now());
    let signed: { certPem: string; rootId: string };
    try {
      signed = await ctx.ca.signIntermediateFor(req.datacenter, req.publicKeyPem);
    } catch (err) {
      if (isIsthmusError(err)) throw err;
      throw invalid([{ Field: 'public_key_pem', Message: 'not a P-256 public key' }]);
    }
    const member = ctx.store.get<Member>(FED_MEMBERS, req.datacenter);
    const now = new Date().toISOString();
    try {
      await ctx.store.commit([
        { op: 'put', table: FED_JOIN_TOKENS, key: hash, value: { ...entry!.value, UsedAt: now }, ifIndex: entry!.modifyIndex },
        {
          op: 'put',
          table: FED_MEMBERS,
          key: req.datacenter,
          value: { Datacenter: req.datacenter, JoinedAt: now, Gateways: member?.value.Gateways ?? [] } satisfies Member,
        },
      ]);
    } catch (err) {
      if (isIsthmusError(err, ErrorCodes.CONFLICT))
        throw new IsthmusError(ErrorCodes.PERMISSION_DENIED, 'join refused: the token was used at the same moment by another join');
      throw err;
    }
    ctx.log.info('datacenter joined', { dc: req.datacenter });
    return {
      trustDomain: ctx.trustDomain(),
      primaryDatacenter: ctx.dc,
      intermediateCertPem: signed.certPem,
      rootId: signed.rootId,
      rootsJson: JSON.stringify(ctx.ca.roots()),
      index: ctx.store.index(),
    };
  }
}
