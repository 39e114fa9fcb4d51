// ACL tokens and policies in the Store: bootstrap once, token resolution through a cache that is
// dropped whenever an ACL table changes, and an audit event (without secrets) for every change.
import { randomUUID } from 'node:crypto';
import { auditOp, type Actor } from '../core/audit.js';
import { conflict, ErrorCodes, invalid, IsthmusError, notFound, type Violation } from '../core/errors.js';
import type { Component } from '../core/lifecycle.js';
import { OwnedTables } from '../core/table-watch.js';
import type { Store, StoreOp } from '../store/index.js';
import { allowAll, type Authorizer } from './authorizer.js';
import { compileAuthorizer } from './compile.js';
import { parseRules, type Rules } from './rules.js';

export const ACL_TOKENS = 'acl-tokens';
export const ACL_POLICIES = 'acl-policies';
export const ACL_META = 'acl-meta';
export const MANAGEMENT_POLICY_ID = '00000000-0000-0000-0000-000000000001';
export const ANONYMOUS_ACCESSOR = '00000000-0000-0000-0000-000000000002';

export interface PolicyLink {
  ID: string;
  Name: string;
}

export interface Token {
  AccessorID: string;
  SecretID: string;
  Description: string;
  Policies: PolicyLink[];
  Local: boolean;
  CreateTime: string;
  ExpirationTime?: string;
  CreateIndex?: number;
  ModifyIndex?: number;
}

export interface Policy {
  ID: string;
  Name: string;
  Description: string;
  Rules: string;
  Datacenters: string[];
  CreateIndex?: number;
  ModifyIndex?: number;
}

export interface AclOptions {
  store: Store;
  dc: string;
  defaultPolicy: 'allow' | 'deny';
  /**
   * False in a secondary: tokens and policies replicate from the primary and are written there (the
   * API forwards such writes), so a local write is refused rather than made and later overwritten.
   * Default true (a DC on its own).
   */
  primary?: boolean;
}

export interface Resolved {
  authz: Authorizer;
  actor: Actor;
  token?: Token;
}

/** The parts of the ACL state a blocking read can follow. */
export type AclPart = 'tokens' | 'policies';
const PART_TABLE: Record<AclPart, string> = { tokens: ACL_TOKENS, policies: ACL_POLICIES };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const POLICY_NAME = /^[A-Za-z0-9_-]{1,128}$/;
const MANAGEMENT: Policy = {
  ID: MANAGEMENT_POLICY_ID,
  Name: 'global-management',
  Description: 'Builtin Policy that grants unlimited access',
  Rules: '',
  Datacenters: [],
};

export class Acl extends OwnedTables<AclPart> implements Component {
  readonly name = 'acl';
  private bySecret = new Map<string, string>();
  private readonly resolved = new Map<string, Resolved>();
  private unsubscribe: (() => void) | undefined;
  private readonly anonymous: Resolved;

  constructor(private readonly opts: AclOptions) {
    super(opts.store, PART_TABLE);
    this.anonymous = {
      authz: compileAuthorizer([], opts.defaultPolicy),
      actor: { accessorId: ANONYMOUS_ACCESSOR, description: 'Anonymous Token', dc: opts.dc },
    };
  }

  get defaultPolicy(): 'allow' | 'deny' {
    return this.opts.defaultPolicy;
  }

  async start(): Promise<void> {
    this.reindex();
    this.unsubscribe = this.opts.store.subscribe((changes) => {
      if (changes.some((c) => c.table === ACL_TOKENS || c.table === ACL_POLICIES)) this.reindex();
    });
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
  }

  private reindex(): void {
    this.bySecret = new Map(this.opts.store.list<Token>(ACL_TOKENS).map((e) => [e.value.SecretID, e.key]));
    this.resolved.clear();
  }

  /** Who a request is, from its token secret (none = anonymous). An unknown secret is refused. */
  resolve(secret: string | undefined): Resolved {
    if (!secret) return this.anonymous;
    const hit = this.resolved.get(secret);
    if (hit && (!hit.token?.ExpirationTime || Date.parse(hit.token.ExpirationTime) > Date.now())) return hit;
    const accessor = this.bySecret.get(secret);
    const token = accessor ? this.opts.store.get<Token>(ACL_TOKENS, accessor)?.value : undefined;
    if (!token || (token.ExpirationTime && Date.parse(token.ExpirationTime) <= Date.now())) {
      throw new IsthmusError(ErrorCodes.ACL_NOT_FOUND, 'ACL not found');
    }
    const ids = token.Policies.map((p) => p.ID);
    const authz = ids.includes(MANAGEMENT_POLICY_ID)
      ? allowAll
      : compileAuthorizer(
          ids
            .map((id) => this.opts.store.get<Policy>(ACL_POLICIES, id)?.value)
            .filter((p): p is Policy => !!p && (p.Datacenters.length === 0 || p.Datacenters.includes(this.opts.dc)))
            .map((p) => parseRules(p.Rules)),
          // A token's missing rules fall to deny when the cluster denies by default.
          this.opts.defaultPolicy,
        );
    const r: Resolved = { authz, token, actor: { accessorId: token.AccessorID, description: token.Description, dc: this.opts.dc } };
    this.resolved.set(secret, r);
    return r;
  }

  async bootstrap(actor: Actor): Promise<Token> {
    this.assertWritable();
    if (this.opts.store.get(ACL_META, 'bootstrap')) throw new IsthmusError(ErrorCodes.ACL_BOOTSTRAPPED, 'ACL bootstrap no longer allowed');
    const token = this.newToken({ Description: 'Bootstrap Token (Global Management)', Policies: [{ ID: MANAGEMENT_POLICY_ID, Name: MANAGEMENT.Name }] });
    try {
      const r = await this.opts.store.commit([
        { op: 'put', table: ACL_META, key: 'bootstrap', value: { AccessorID: token.AccessorID, Time: token.CreateTime }, ifIndex: 0 },
        { op: 'put', table: ACL_TOKENS, key: token.AccessorID, value: token, ifIndex: 0 },
        auditOp(actor, { Kind: 'acl-token', Action: 'create', Subject: `bootstrap token ${token.AccessorID}`, After: redactToken(token) }),
      ]);
      return { ...token, CreateIndex: r.index, ModifyIndex: r.index };
    } catch (err) {
      if (err instanceof IsthmusError && err.code === ErrorCodes.CONFLICT)
        throw new IsthmusError(ErrorCodes.ACL_BOOTSTRAPPED, 'ACL bootstrap no longer allowed');
      throw err;
    }
  }

  // ---- policies ----

  policies(): Policy[] {
    return [MANAGEMENT, ...this.opts.store.list<Policy>(ACL_POLICIES).map((e) => ({ ...e.value, CreateIndex: e.createIndex, ModifyIndex: e.modifyIndex }))];
  }

  policy(id: string): Policy {
    if (id === MANAGEMENT_POLICY_ID) return MANAGEMENT;
    const e = this.opts.store.get<Policy>(ACL_POLICIES, id);
    if (!e) throw notFound(`ACL policy ${id} not found`);
    return { ...e.value, CreateIndex: e.createIndex, ModifyIndex: e.modifyIndex };
  }

  policyByName(name: string): Policy {
    const p = this.policies().find((x) => x.Name === name);
    if (!p) throw notFound(`ACL policy named "${name}" not found`);
    return p;
  }

  async upsertPolicy(
    body: { ID?: string; Name: string; Description?: string; Rules?: string; Datacenters?: string[] },
    actor: Actor,
    id?: string,
  ): Promise<Policy> {
    this.assertWritable();
    const v: Violation[] = [];
    if (!POLICY_NAME.test(body.Name ?? '')) v.push({ Field: 'Name', Message: 'must be 1-128 letters, digits, dashes or underscores' });
    if (id === MANAGEMENT_POLICY_ID) v.push({ Field: 'ID', Message: 'the built-in global-management policy cannot be changed' });
    if (v.length) throw invalid(v);
    parseRules(body.Rules ?? '');
    const existing = id ? this.opts.store.get<Policy>(ACL_POLICIES, id) : undefined;
    if (id && !existing) throw notFound(`ACL policy ${id} not found`);
    const clash = this.policies().find((p) => p.Name === body.Name && p.ID !== id);
    if (clash) throw conflict(`an ACL policy named "${body.Name}" exists already`);
    const policy: Policy = {
      ID: id ?? randomUUID(),
      Name: body.Name,
      Description: body.Description ?? '',
      Rules: body.Rules ?? '',
      Datacenters: body.Datacenters ?? [],
    };
    const r = await this.opts.store.commit([
      { op: 'put', table: ACL_POLICIES, key: policy.ID, value: policy, ifIndex: existing?.modifyIndex ?? 0 },
      auditOp(actor, { Kind: 'acl-policy', Action: existing ? 'update' : 'create', Subject: `policy ${policy.Name}`, Before: existing?.value, After: policy }),
    ]);
    return { ...policy, CreateIndex: existing?.createIndex ?? r.index, ModifyIndex: r.index };
  }

  async deletePolicy(id: string, actor: Actor): Promise<void> {
    this.assertWritable();
    if (id === MANAGEMENT_POLICY_ID) throw invalid([{ Field: 'ID', Message: 'the built-in global-management policy cannot be deleted' }]);
    const e = this.opts.store.get<Policy>(ACL_POLICIES, id);
    if (!e) throw notFound(`ACL policy ${id} not found`);
    await this.opts.store.commit([
      { op: 'delete', table: ACL_POLICIES, key: id, ifIndex: e.modifyIndex },
      auditOp(actor, { Kind: 'acl-policy', Action: 'delete', Subject: `policy ${e.value.Name}`, Before: e.value }),
    ]);
  }

  // ---- tokens ----

  tokens(): Token[] {
    return this.opts.store.list<Token>(ACL_TOKENS).map((e) => ({ ...e.value, CreateIndex: e.createIndex, ModifyIndex: e.modifyIndex }));
  }

  token(accessor: string): Token {
    const e = this.opts.store.get<Token>(ACL_TOKENS, accessor);
    if (!e) throw notFound(`ACL token ${accessor} not found`);
    return { ...e.value, CreateIndex: e.createIndex, ModifyIndex: e.modifyIndex };
  }

  async upsertToken(
    body: {
      AccessorID?: string;
      SecretID?: string;
      Description?: string;
      Policies?: { ID?: string; Name?: string }[];
      Local?: boolean;
      ExpirationTTL?: number;
    },
    actor: Actor,
    accessor?: string,
  ): Promise<Token> {
    this.assertWritable();
    const v: Violation[] = [];
    const links: PolicyLink[] = [];
    (body.Policies ?? []).forEach((p, i) => {
      try {
        const pol = p.ID ? this.policy(p.ID) : p.Name ? this.policyByName(p.Name) : undefined;
        if (!pol) v.push({ Field: `Policies[${i}]`, Message: 'needs ID or Name' });
        else links.push({ ID: pol.ID, Name: pol.Name });
      } catch {
        v.push({ Field: `Policies[${i}]`, Message: `no policy ${p.ID ?? `named "${p.Name}"`}` });
      }
    });
    for (const f of ['AccessorID', 'SecretID'] as const) if (body[f] !== undefined && !UUID.test(body[f]!)) v.push({ Field: f, Message: 'must be a UUID' });
    if (v.length) throw invalid(v);
    const existing = accessor ? this.opts.store.get<Token>(ACL_TOKENS, accessor) : undefined;
    if (accessor && !existing) throw notFound(`ACL token ${accessor} not found`);
    if (!existing && body.SecretID && this.bySecret.has(body.SecretID)) throw conflict('a token with that SecretID exists already');
    const token: Token = existing
      ? {
          ...existing.value,
          Description: body.Description ?? existing.value.Description,
          Policies: body.Policies ? links : existing.value.Policies,
          Local: body.Local ?? existing.value.Local,
        }
      : this.newToken({ ...body, Policies: links });
    const r = await this.opts.store.commit([
      { op: 'put', table: ACL_TOKENS, key: token.AccessorID, value: token, ifIndex: existing?.modifyIndex ?? 0 },
      auditOp(actor, {
        Kind: 'acl-token',
        Action: existing ? 'update' : 'create',
        Subject: `token ${token.AccessorID}`,
        Before: existing ? redactToken(existing.value) : undefined,
        After: redactToken(token),
      }),
    ]);
    return { ...token, CreateIndex: existing?.createIndex ?? r.index, ModifyIndex: r.index };
  }

  async deleteToken(accessor: string, actor: Actor): Promise<void> {
    this.assertWritable();
    const e = this.opts.store.get<Token>(ACL_TOKENS, accessor);
    if (!e) throw notFound(`ACL token ${accessor} not found`);
    const ops: StoreOp[] = [
      { op: 'delete', table: ACL_TOKENS, key: accessor, ifIndex: e.modifyIndex },
      auditOp(actor, { Kind: 'acl-token', Action: 'delete', Subject: `token ${accessor}`, Before: redactToken(e.value) }),
    ];
    await this.opts.store.commit(ops);
  }

  private assertWritable(): void {
    if (this.opts.primary === false) {
      throw new IsthmusError(
        ErrorCodes.PRIMARY_UNREACHABLE,
        `ACL tokens and policies are written in the primary datacenter, not in ${this.opts.dc}; nothing was changed`,
      );
    }
  }

  private newToken(body: {
    AccessorID?: string;
    SecretID?: string;
    Description?: string;
    Policies: PolicyLink[];
    Local?: boolean;
    ExpirationTTL?: number;
  }): Token {
    const now = Date.now();
    return {
      AccessorID: body.AccessorID ?? randomUUID(),
      SecretID: body.SecretID ?? randomUUID(),
      Description: body.Description ?? '',
      Policies: body.Policies,
      Local: body.Local ?? false,
      CreateTime: new Date(now).toISOString(),
      ...(body.ExpirationTTL ? { ExpirationTime: new Date(now + body.ExpirationTTL).toISOString() } : {}),
    };
  }
}

/** A token as it may appear in an audit event or a log: never its secret. */
export function redactToken(t: Token): Omit<Token, 'SecretID'> {
  const { SecretID: _secret, ...rest } = t;
  return rest;
}

export type { Rules };
