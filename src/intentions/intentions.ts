// Intentions stored through the Store: writes guarded by check-and-set with an audit event in the
// same commit, reads from the store's view, decisions from a compiled set rebuilt on change.
import { randomUUID } from 'node:crypto';
import { auditOp, type Actor } from '../core/audit.js';
import { conflict, ErrorCodes, invalid, IsthmusError, notFound, type Violation } from '../core/errors.js';
import type { Component } from '../core/lifecycle.js';
import { OwnedTables } from '../core/table-watch.js';
import type { Store, StoreEntry } from '../store/index.js';
import { compileIntentions, type CompiledIntentions, type Decision, type HttpRequestInfo } from './matcher.js';
import { isServiceName, parseServiceSpiffeId, SERVICE_NAME_RULE } from '../core/names.js';
import { intentionKey, precedence, splitName, type Intention, type IntentionBody } from './model.js';
import { entryFromIntentions, sourceFields, type ServiceIntentions, type StoredServiceIntentions } from './service-intentions.js';

export const INTENTIONS_TABLE = 'intentions';

/** The protocols whose requests a sidecar parses, so the only ones L7 permissions can be checked on. */
export const L7_PROTOCOLS: readonly string[] = ['http', 'http2', 'grpc'];

/** A destination's protocol and where it was read (`service-defaults`, `proxy-defaults`, ...). */
export type ProtocolLookup = (destination: { namespace: string; name: string }) => { protocol: string; from: string };

export interface IntentionsOptions {
  store: Store;
  dc: string;
  defaultAllow: () => boolean;
  trustDomain: () => string | undefined;
  /**
   * False in a secondary: intentions replicate from the primary and are written there (the API
   * forwards such writes), so a local write is refused. Default true (a DC on its own).
   */
  primary?: boolean;
  /**
   * The destination's protocol, asked before an intention with L7 permissions is stored: what the
   * destination's sidecar cannot parse it cannot check, so such a write is refused. Absent (unit
   * tests, tools): not checked.
   */
  protocolOf?: ProtocolLookup;
}

/** Consul's `?cas=` for a service-intentions entry: 0 only if absent, N only if its ModifyIndex is N. */
export interface EntryWriteOptions {
  cas?: number;
}

export interface AuthorizeResult {
  allowed: boolean;
  reason: string;
  /** Intention ID or "default". */
  decidedBy: string;
  intention?: Intention;
  /** Store index of the intention set that decided. */
  index: number;
  l7?: boolean;
}

function withIndexes(e: StoreEntry<Intention>): Intention {
  const { EntryMeta: _entryMeta, ...rest } = e.value;
  return { ...rest, CreateIndex: e.createIndex, ModifyIndex: e.modifyIndex };
}

/** With the service-intentions entry's Meta kept, for building the entry. */
function withEntryMeta(e: StoreEntry<Intention>): Intention {
  return { ...e.value, CreateIndex: e.createIndex, ModifyIndex: e.modifyIndex };
}

export class Intentions extends OwnedTables<'intentions'> implements Component {
  readonly name = 'intentions';
  private compiled: CompiledIntentions | undefined;
  private compiledIndex = -1;
  private compiledDefault: boolean | undefined;
  private unsubscribe: (() => void) | undefined;
  private readonly l4Results = new Map<string, Map<string, Map<string, AuthorizeResult>>>();
  private l4Cached = 0;

  constructor(private readonly opts: IntentionsOptions) {
    super(opts.store, { intentions: INTENTIONS_TABLE });
  }

  async start(): Promise<void> {
    this.unsubscribe = this.opts.store.subscribe((changes) => {
      if (changes.some((c) => c.table === INTENTIONS_TABLE)) this.compiled = undefined;
    });
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
  }

  list(): Intention[] {
    return this.opts.store.list<Intention>(INTENTIONS_TABLE).map(withIndexes);
  }

  getById(id: string): Intention {
    const e = this.findById(id);
    if (!e) throw notFound(`intention ${id} not found`);
    return withIndexes(e);
  }

  getExact(source: string, destination: string): Intention {
    const s = splitName(source);
    const d = splitName(destination);
    const e = this.opts.store.get<Intention>(INTENTIONS_TABLE, intentionKey(s.ns, s.name, d.ns, d.name));
    if (!e) throw notFound(`no intention ${source} => ${destination}`);
    return withIndexes(e);
  }

  /** PUT /exact: creates or replaces the intention for the pair. */
  async upsertExact(source: string, destination: string, body: IntentionBody, actor: Actor): Promise<Intention> {
    const s = splitName(source);
    const d = splitName(destination);
    checkName('source', s.name);
    checkName('destination', d.name);
    const existing = this.opts.store.get<Intention>(INTENTIONS_TABLE, intentionKey(s.ns, s.name, d.ns, d.name));
    return this.write({ ...body, SourceNS: s.ns, SourceName: s.name, DestinationNS: d.ns, DestinationName: d.name }, existing, actor);
  }

  /** Legacy POST: creates; 409 when the pair has one already. */
  async create(body: IntentionBody, actor: Actor): Promise<Intention> {
    const missing: Violation[] = [];
    if (!body.SourceName) missing.push({ Field: 'SourceName', Message: 'is required' });
    if (!body.DestinationName) missing.push({ Field: 'DestinationName', Message: 'is required' });
    if (missing.length) throw invalid(missing);
    const key = intentionKey(body.SourceNS || 'default', body.SourceName!, body.DestinationNS || 'default', body.DestinationName!);
    if (this.opts.store.get(INTENTIONS_TABLE, key)) throw conflict(`an intention ${body.SourceName} => ${body.DestinationName} exists already`);
    return this.write(body, undefined, actor);
  }

  async updateById(id: string, body: IntentionBody, actor: Actor): Promise<Intention> {
    const e = this.findById(id);
    if (!e) throw notFound(`intention ${id} not found`);
    const v = e.value;
    const next = {
      ...body,
      SourceNS: body.SourceNS || v.SourceNS,
      SourceName: body.SourceName ?? v.SourceName,
      DestinationNS: body.DestinationNS || v.DestinationNS,
      DestinationName: body.DestinationName ?? v.DestinationName,
    };
    if (intentionKey(next.SourceNS, next.SourceName, next.DestinationNS, next.DestinationName) !== e.key) {
      throw invalid([{ Field: 'SourceName', Message: 'source and destination of an intention cannot change; delete it and create another' }]);
    }
    return this.write(next, e, actor);
  }

  async deleteById(id: string, actor: Actor): Promise<void> {
    const e = this.findById(id);
    if (!e) throw notFound(`intention ${id} not found`);
    await this.remove(e, actor);
  }

  async deleteExact(source: string, destination: string, actor: Actor): Promise<void> {
    const s = splitName(source);
    const d = splitName(destination);
    const e = this.opts.store.get<Intention>(INTENTIONS_TABLE, intentionKey(s.ns, s.name, d.ns, d.name));
    if (!e) throw notFound(`no intention ${source} => ${destination}`);
    await this.remove(e, actor);
  }

  /** The service-intentions entry of destination `name`, built from its intentions; undefined when it has none. */
  entry(name: string): StoredServiceIntentions | undefined {
    return entryFromIntentions(name, this.destinationRecords(name).map(withEntryMeta));
  }

  /** Every destination's service-intentions entry, sorted by name. */
  entries(): StoredServiceIntentions[] {
    const all = this.opts.store.list<Intention>(INTENTIONS_TABLE).map(withEntryMeta);
    const names = [...new Set(all.filter((i) => i.DestinationNS === 'default').map((i) => i.DestinationName))].sort();
    return names.map((n) => entryFromIntentions(n, all)!);
  }

  /**
   * Writes a service-intentions entry (already parsed): its sources become the destination's
   * intentions, in one commit with an audit event per intention created, changed or removed. A
   * source that names an existing intention's pair keeps its ID. False when `cas` does not match.
   */
  async putEntry(entry: ServiceIntentions, opts: EntryWriteOptions, actor: Actor): Promise<boolean> {
    this.assertWritable();
    const existing = this.destinationRecords(entry.Name);
    if (!casMatches(existing, opts.cas)) return false;
    const v: Violation[] = [];
    entry.Sources.forEach((s, i) => {
      if (s.Permissions?.length) {
        const refusal = this.l7Refusal('default', entry.Name);
        if (refusal) v.push({ Field: `Sources[${i}].Permissions`, Message: refusal });
      }
    });
    if (v.length) throw invalid(v);
    const now = new Date().toISOString();
    const byKey = new Map(existing.map((e) => [e.key, e]));
    const ops: Parameters<Store['commit']>[0] = [];
    const kept = new Set<string>();
    for (const s of entry.Sources) {
      const f = sourceFields(entry.Name, s);
      const key = intentionKey(f.base.SourceNS, f.base.SourceName, f.base.DestinationNS, f.base.DestinationName);
      kept.add(key);
      const before = byKey.get(key);
      const intention: Intention = {
        ID: before?.value.ID ?? randomUUID(),
        Description: f.description,
        ...f.base,
        SourceType: 'consul',
        ...f.rule,
        Precedence: f.precedence,
        Meta: f.meta,
        CreatedAt: before?.value.CreatedAt ?? now,
        UpdatedAt: now,
        ...(entry.Meta && Object.keys(entry.Meta).length ? { EntryMeta: entry.Meta } : {}),
      };
      ops.push({ op: 'put', table: INTENTIONS_TABLE, key, value: intention, ifIndex: before?.modifyIndex ?? 0 });
      ops.push(
        auditOp(actor, {
          Kind: 'intention',
          Action: before ? 'update' : 'create',
          Subject: `${intention.SourceName} => ${intention.DestinationName}`,
          Before: before?.value,
          After: intention,
        }),
      );
    }
    for (const e of existing) {
      if (kept.has(e.key)) continue;
      ops.push({ op: 'delete', table: INTENTIONS_TABLE, key: e.key, ifIndex: e.modifyIndex });
      ops.push(auditOp(actor, { Kind: 'intention', Action: 'delete', Subject: `${e.value.SourceName} => ${e.value.DestinationName}`, Before: e.value }));
    }
    await this.opts.store.commit(ops);
    return true;
  }

  /** Removes every intention of destination `name` (Consul's DELETE of the entry); absent is not an error. */
  async deleteEntry(name: string, opts: EntryWriteOptions, actor: Actor): Promise<boolean> {
    this.assertWritable();
    const existing = this.destinationRecords(name);
    // As Consul's: a check-and-set delete needs the entry at that index (so cas=0 never deletes).
    if (opts.cas !== undefined && (existing.length === 0 || !casMatches(existing, opts.cas))) return false;
    if (existing.length === 0) return true;
    await this.opts.store.commit(
      existing.flatMap((e) => [
        { op: 'delete' as const, table: INTENTIONS_TABLE, key: e.key, ifIndex: e.modifyIndex },
        auditOp(actor, { Kind: 'intention', Action: 'delete', Subject: `${e.value.SourceName} => ${e.value.DestinationName}`, Before: e.value }),
      ]),
    );
    return true;
  }

  /** Consul's match: for each name, the intentions that apply to it (as source or destination), in evaluation order. */
  match(by: 'source' | 'destination', names: string[]): Record<string, Intention[]> {
    const all = this.list();
    const out: Record<string, Intention[]> = {};
    for (const raw of names) {
      const { ns, name } = splitName(raw);
      out[raw] = all
        .filter((i) => {
          const [iNS, iName] = by === 'source' ? [i.SourceNS, i.SourceName] : [i.DestinationNS, i.DestinationName];
          return (iNS === '*' || iNS === ns) && (iName === '*' || iName === name);
        })
        .sort((a, b) => b.Precedence - a.Precedence || ((a.Action ?? '') === 'deny' ? -1 : 1) - ((b.Action ?? '') === 'deny' ? -1 : 1));
    }
    return out;
  }

  /** Would `source` be allowed to connect to `destination` (L4; L7 intentions count as deny, as in Consul)? */
  check(source: string, destination: string): Decision {
    const s = splitName(source);
    const d = splitName(destination);
    return this.matcher().decide({ namespace: s.ns, service: s.name }, { namespace: d.ns, service: d.name });
  }

  /** Decides for a caller identified by its SPIFFE URI; refuses malformed URIs and other trust domains. */
  authorize(sourceUri: string, destination: { name: string; namespace?: string }, request?: HttpRequestInfo): AuthorizeResult {
    const matcher = this.matcher();
    if (!request) {
      // The hot path: one map lookup per decision once the pair has been seen at this index.
      // Nested maps by namespace, name, caller: no key string built per call.
      const ns = destination.namespace ?? 'default';
      let byName = this.l4Results.get(ns);
      if (!byName) this.l4Results.set(ns, (byName = new Map()));
      let byCaller = byName.get(destination.name);
      if (!byCaller) byName.set(destination.name, (byCaller = new Map()));
      let r = byCaller.get(sourceUri);
      if (!r) {
        r = this.authorizeUncached(matcher, sourceUri, destination);
        if (++this.l4Cached > 200_000) {
          this.l4Results.clear();
          this.l4Cached = 0;
          this.l4Cached = 0;
        }
        byCaller.set(sourceUri, r);
      }
      return r;
    }
    return this.authorizeUncached(matcher, sourceUri, destination, request);
  }

  private authorizeUncached(
    matcher: CompiledIntentions,
    sourceUri: string,
    destination: { name: string; namespace?: string },
    request?: HttpRequestInfo,
  ): AuthorizeResult {
    const index = this.compiledIndex;
    const id = parseServiceSpiffeId(sourceUri);
    if (!id) return { allowed: false, reason: `"${sourceUri}" is not a service SPIFFE ID`, decidedBy: 'default', index };
    const td = this.opts.trustDomain();
    if (td && id.trustDomain !== td) {
      return { allowed: false, reason: `caller's trust domain ${id.trustDomain} is not this cluster's (${td})`, decidedBy: 'default', index };
    }
    const d = matcher.decide(
      { namespace: id.namespace, service: id.service },
      { namespace: destination.namespace ?? 'default', service: destination.name },
      request,
    );
    return { ...d, index };
  }

  /** The compiled set, rebuilt only after the intentions table or the default policy changed. */
  matcher(): CompiledIntentions {
    const idx = this.index();
    const def = this.opts.defaultAllow();
    if (!this.compiled || this.compiledIndex !== idx || this.compiledDefault !== def) {
      this.compiled = compileIntentions(this.list(), { defaultAllow: def });
      this.l4Results.clear();
      this.l4Cached = 0;
      this.compiledIndex = idx;
      this.compiledDefault = def;
    }
    return this.compiled;
  }

  private assertWritable(): void {
    if (this.opts.primary === false) throw notPrimary(this.opts.dc);
  }

  private destinationRecords(name: string): StoreEntry<Intention>[] {
    return this.opts.store.list<Intention>(INTENTIONS_TABLE).filter((e) => e.value.DestinationNS === 'default' && e.value.DestinationName === name);
  }

  /** Why L7 permissions for this destination cannot be enforced, or undefined when they can. */
  private l7Refusal(ns: string, name: string): string | undefined {
    if (!this.opts.protocolOf || name === '*') return undefined;
    const { protocol, from } = this.opts.protocolOf({ namespace: ns, name });
    if (L7_PROTOCOLS.includes(protocol)) return undefined;
    return (
      `destination "${name}" speaks ${protocol} (from ${from}); L7 permissions need http, http2 or grpc: ` +
      `set it with a service-defaults entry (Protocol = "http")`
    );
  }

  private findById(id: string): StoreEntry<Intention> | undefined {
    return this.opts.store.list<Intention>(INTENTIONS_TABLE).find((e) => e.value.ID === id);
  }

  private async write(
    body: IntentionBody & { SourceName?: string; DestinationName?: string },
    existing: StoreEntry<Intention> | undefined,
    actor: Actor,
  ): Promise<Intention> {
    this.assertWritable();
    const v: Violation[] = [];
    const hasPerms = (body.Permissions?.length ?? 0) > 0;
    if (body.Action && hasPerms) v.push({ Field: 'Action', Message: 'an intention has either Action or Permissions, not both' });
    if (!body.Action && !hasPerms) v.push({ Field: 'Action', Message: 'is required (allow or deny) unless Permissions are given' });
    const dstName = body.DestinationName!;
    if (hasPerms && dstName === '*') v.push({ Field: 'Permissions', Message: 'L7 permissions are not allowed on a wildcard destination' });
    const srcNS = body.SourceNS || 'default';
    const dstNS = body.DestinationNS || 'default';
    for (const [f, ns] of [
      ['SourceNS', srcNS],
      ['DestinationNS', dstNS],
    ] as const) {
      if (ns !== '*' && !isServiceName(ns)) v.push({ Field: f, Message: 'must be "*" or a namespace name' });
    }
    if (srcNS === '*' && body.SourceName !== '*') v.push({ Field: 'SourceName', Message: 'must be "*" when SourceNS is "*"' });
    if (dstNS === '*' && dstName !== '*') v.push({ Field: 'DestinationName', Message: 'must be "*" when DestinationNS is "*"' });
    if (v.length) throw invalid(v);
    const refusal = hasPerms ? this.l7Refusal(dstNS, dstName) : undefined;
    if (refusal) throw invalid([{ Field: 'Permissions', Message: refusal }]);
    const now = new Date().toISOString();
    const base = { SourceNS: srcNS, SourceName: body.SourceName!, DestinationNS: dstNS, DestinationName: dstName };
    const intention: Intention = {
      ID: existing?.value.ID ?? randomUUID(),
      Description: body.Description ?? '',
      ...base,
      SourceType: 'consul',
      ...(hasPerms ? { Permissions: body.Permissions } : { Action: body.Action }),
      Precedence: precedence(base),
      Meta: body.Meta ?? {},
      CreatedAt: existing?.value.CreatedAt ?? now,
      UpdatedAt: now,
    };
    // An intention written through this API joins its destination's service-intentions entry as it is.
    const entryMeta = dstNS === 'default' ? (existing ?? this.destinationRecords(dstName).find((e) => e.value.EntryMeta))?.value.EntryMeta : undefined;
    if (entryMeta) intention.EntryMeta = entryMeta;
    const key = intentionKey(base.SourceNS, base.SourceName, base.DestinationNS, base.DestinationName);
    const r = await this.opts.store.commit([
      { op: 'put', table: INTENTIONS_TABLE, key, value: intention, ifIndex: existing?.modifyIndex ?? 0 },
      auditOp(actor, {
        Kind: 'intention',
        Action: existing ? 'update' : 'create',
        Subject: `${base.SourceName} => ${base.DestinationName}`,
        Before: existing?.value,
        After: intention,
      }),
    ]);
    const { EntryMeta: _entryMeta, ...answered } = intention;
    return { ...answered, CreateIndex: existing?.createIndex ?? r.index, ModifyIndex: r.index };
  }

  private async remove(e: StoreEntry<Intention>, actor: Actor): Promise<void> {
    this.assertWritable();
    await this.opts.store.commit([
      { op: 'delete', table: INTENTIONS_TABLE, key: e.key, ifIndex: e.modifyIndex },
      auditOp(actor, { Kind: 'intention', Action: 'delete', Subject: `${e.value.SourceName} => ${e.value.DestinationName}`, Before: e.value }),
    ]);
  }
}

function casMatches(existing: StoreEntry<Intention>[], cas: number | undefined): boolean {
  if (cas === undefined) return true;
  if (cas === 0) return existing.length === 0;
  return existing.length > 0 && Math.max(...existing.map((e) => e.modifyIndex)) === cas;
}

function notPrimary(dc: string): IsthmusError {
  return new IsthmusError(ErrorCodes.PRIMARY_UNREACHABLE, `intentions are written in the primary datacenter, not in ${dc}; nothing was changed`);
}

function checkName(field: 'source' | 'destination', name: string): void {
  if (name !== '*' && !isServiceName(name)) {
    throw invalid([{ Field: field, Message: `"${name}" must be "*" or a service name (${SERVICE_NAME_RULE})` }]);
  }
}
