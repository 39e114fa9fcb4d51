// Config entries stored through the Store, one table keyed `<kind>/<name>`: writes guarded by
// check-and-set as Consul's `?cas=`, audited in the same commit, refused in a secondary (they
// replicate from the primary), and checked against the other entries (no router on a tcp service).
import { auditOp, type Actor } from '../core/audit.js';
import { ErrorCodes, invalid, isIsthmusError, IsthmusError, type Violation } from '../core/errors.js';
import type { Component } from '../core/lifecycle.js';
import { OwnedTables } from '../core/table-watch.js';
import type { Store, StoreEntry } from '../store/index.js';
import { L7_PROTOCOLS } from '../intentions/index.js';
import { ChainCompileError, compileDiscoveryChain, problemField, type ChainEntries, type ChainProblem } from './chain.js';
import {
  PROXY_DEFAULTS_NAME,
  protocolOf,
  protocolRefusal,
  protocolSourceOf,
  type ConfigEntry,
  type ConfigEntryByKind,
  type ConfigKind,
  type ProxyDefaults,
  type ServiceDefaults,
  type ServiceResolver,
  type ServiceRouter,
  type ServiceSplitter,
} from './model.js';

export const CONFIG_ENTRIES_TABLE = 'config-entries';

/** A guard failing under a concurrent write is retried this often before the write gives up with 409. */
const MAX_ATTEMPTS = 3;

export interface ConfigEntriesOptions {
  store: Store;
  dc: string;
  /**
   * False in a secondary: entries replicate from the primary and are written there (the API
   * forwards such writes), so a local write is refused. Default true (a DC on its own).
   */
  primary?: boolean;
  /**
   * The intentions with L7 permissions, by destination: a service-defaults or proxy-defaults write
   * that would leave one of their destinations speaking tcp is refused (they could not be checked).
   * Absent: not checked.
   */
  l7Intentions?: () => { destination: string; id: string }[];
  /** A service's protocol when no entry sets one (its sidecar registrations, else tcp). */
  fallbackProtocol?: (service: string) => { protocol: string; from: string };
}

/** An entry as answered: Consul's indexes beside its fields. */
export type StoredConfigEntry<E extends ConfigEntry = ConfigEntry> = E & { CreateIndex: number; ModifyIndex: number };

export interface WriteOptions {
  /** Consul's `?cas=`: 0 writes only if absent, N only if the entry's ModifyIndex is N. */
  cas?: number;
}

const keyOf = (kind: string, name: string) => `${kind}/${name}`;

/** The kinds a discovery chain is compiled from: writing or deleting one recompiles the chains it reaches. */
const CHAIN_KINDS: readonly ConfigKind[] = ['service-resolver', 'service-splitter', 'service-router', 'service-defaults', 'proxy-defaults'];

/**
 * The trust domain the write-time compile names targets in. Only whether a chain compiles is asked
 * then, and that does not depend on SNI or SPIFFE names, so no CA is needed to write an entry.
 */
const CHECK_TRUST_DOMAIN = 'write-check.invalid';

/** The services an entry's chain sends to: redirect, failover, split and route destinations. */
function referencedServices(e: ConfigEntry): string[] {
  const out: (string | undefined)[] = [];
  if (e.Kind === 'service-resolver') {
    const r = e as ServiceResolver;
    out.push(r.Redirect?.Service);
    for (const f of Object.values(r.Failover ?? {})) out.push(f.Service, ...(f.Targets ?? []).map((t) => t.Service));
  } else if (e.Kind === 'service-splitter') {
    out.push(...(e as ServiceSplitter).Splits.map((s) => s.Service));
  } else if (e.Kind === 'service-router') {
    out.push(...((e as ServiceRouter).Routes ?? []).map((r) => r.Destination?.Service));
  }
  return out.filter((s): s is string => s !== undefined && s !== e.Name);
}

function withIndexes<E extends ConfigEntry>(e: StoreEntry<E>): StoredConfigEntry<E> {
  return { ...e.value, CreateIndex: e.createIndex, ModifyIndex: e.modifyIndex };
}

/** What a write would change, for the cross-entry check: the entry put (or the key deleted). */
type Proposed = { put: ConfigEntry } | { deleted: string };

export class ConfigEntries extends OwnedTables<'entries'> implements Component {
  readonly name = 'config-entries';

  constructor(private readonly opts: ConfigEntriesOptions) {
    super(opts.store, { entries: CONFIG_ENTRIES_TABLE });
  }

  async start(): Promise<void> {}

  async stop(): Promise<void> {}

  get<K extends ConfigKind>(kind: K, name: string): StoredConfigEntry<ConfigEntryByKind[K]> | undefined {
    const e = this.opts.store.get<ConfigEntryByKind[K]>(CONFIG_ENTRIES_TABLE, keyOf(kind, name));
    return e && withIndexes(e);
  }

  /** Entries of one kind, sorted by name. */
  list<K extends ConfigKind>(kind: K): StoredConfigEntry<ConfigEntryByKind[K]>[] {
    return this.opts.store
      .list<ConfigEntryByKind[K]>(CONFIG_ENTRIES_TABLE, `${kind}/`)
      .map(withIndexes)
      .sort((a, b) => (a.Name < b.Name ? -1 : a.Name > b.Name ? 1 : 0));
  }

  /** The protocol the entries give `service` and which entry gave it; undefined when none sets one. */
  protocolSource(service: string): { protocol: string; from: string } | undefined {
    return protocolSourceOf(service, {
      serviceDefaults: (n) => this.get('service-defaults', n),
      proxyDefaults: () => this.get('proxy-defaults', PROXY_DEFAULTS_NAME),
    });
  }

  /** Creates or replaces the entry (already parsed); false when `cas` does not match, as Consul answers. */
  async put(entry: ConfigEntry, opts: WriteOptions, actor: Actor): Promise<boolean> {
    this.assertWritable();
    if (entry.Kind === 'service-intentions') {
      // Stored as intentions, through Intentions.putEntry; never in this table.
      throw invalid([{ Field: 'Kind', Message: 'service-intentions entries are written as intentions, not stored here' }]);
    }
    const key = keyOf(entry.Kind, entry.Name);
    for (let attempt = 1; ; attempt++) {
      const existing = this.opts.store.get<ConfigEntry>(CONFIG_ENTRIES_TABLE, key);
      if (opts.cas !== undefined && (opts.cas === 0 ? existing !== undefined : existing?.modifyIndex !== opts.cas)) return false;
      this.checkGraph({ put: entry });
      this.checkChains({ put: entry });
      try {
        await this.opts.store.commit([
          { op: 'put', table: CONFIG_ENTRIES_TABLE, key, value: entry, ifIndex: existing?.modifyIndex ?? 0 },
          auditOp(actor, { Kind: 'config-entry', Action: existing ? 'update' : 'create', Subject: key, Before: existing?.value, After: entry }),
        ]);
        return true;
      } catch (err) {
        if (!isIsthmusError(err, ErrorCodes.CONFLICT) || attempt >= MAX_ATTEMPTS) throw err;
      }
    }
  }

  /**
   * Deletes the entry. Without `cas` an absent entry is not an error (Consul's); with it, false
   * unless the entry exists at that ModifyIndex (so `cas=0` never deletes, as in Consul).
   */
  async delete(kind: ConfigKind, name: string, opts: WriteOptions, actor: Actor): Promise<boolean> {
    this.assertWritable();
    const key = keyOf(kind, name);
    for (let attempt = 1; ; attempt++) {
      const existing = this.opts.store.get<ConfigEntry>(CONFIG_ENTRIES_TABLE, key);
      if (opts.cas !== undefined && existing?.modifyIndex !== opts.cas) return false;
      if (!existing) return true;
      this.checkGraph({ deleted: key });
      this.checkChains({ deleted: key });
      try {
        await this.opts.store.commit([
          { op: 'delete', table: CONFIG_ENTRIES_TABLE, key, ifIndex: existing.modifyIndex },
          auditOp(actor, { Kind: 'config-entry', Action: 'delete', Subject: key, Before: existing.value }),
        ]);
        return true;
      } catch (err) {
        if (!isIsthmusError(err, ErrorCodes.CONFLICT) || attempt >= MAX_ATTEMPTS) throw err;
      }
    }
  }

  /**
   * Refuses a change that would leave a service-router or service-splitter in front of a service
   * whose protocol is tcp (Consul refuses both the router and the protocol change). The check
   * reads this replica's view: two writes racing at the primary (a router and a protocol change
   * within the same commit window) are not ordered against each other; the Store has no
   * read-only guard to make them so.
   */
  private checkGraph(change: Proposed): void {
    const touched = 'put' in change ? change.put : undefined;
    const relevant = touched
      ? ['service-router', 'service-splitter', 'service-defaults', 'proxy-defaults'].includes(touched.Kind)
      : /^(service-router|service-splitter|service-defaults|proxy-defaults)\//.test((change as { deleted: string }).deleted);
    if (!relevant) return;
    const read = <T extends ConfigEntry>(kind: ConfigKind, name: string): T | undefined => {
      const key = keyOf(kind, name);
      if ('deleted' in change && change.deleted === key) return undefined;
      if (touched && touched.Kind === kind && touched.Name === name) return touched as T;
      return this.opts.store.get<T>(CONFIG_ENTRIES_TABLE, key)?.value;
    };
    const lookup = {
      serviceDefaults: (n: string) => read<ServiceDefaults>('service-defaults', n),
      proxyDefaults: () => read<ProxyDefaults>('proxy-defaults', PROXY_DEFAULTS_NAME),
    };
    // The services that have a router or splitter once the change is made.
    const routed = new Set<string>();
    for (const kind of ['service-router', 'service-splitter'] as const) {
      for (const e of this.opts.store.list<ConfigEntry>(CONFIG_ENTRIES_TABLE, `${kind}/`)) {
        if ('deleted' in change && change.deleted === e.key) continue;
        routed.add(e.value.Name);
      }
      if (touched?.Kind === kind) routed.add(touched.Name);
    }
    const v: Violation[] = [];
    for (const service of [...routed].sort()) {
      const protocol = protocolOf(service, lookup);
      if (protocol === 'tcp') v.push({ Field: fieldOf(change), Message: protocolRefusal(service, protocol) });
    }
    v.push(...this.checkL7Intentions(change, lookup));
    if (v.length) throw invalid(v);
  }

  /**
   * Compiles, with the change made, the discovery chain of every service the change can reach (the
   * entry's own service, and every service whose chain sends to it through a redirect, failover,
   * split or route, transitively; every service with an entry for proxy-defaults), and refuses the
   * change when one does not compile, as Consul's config endpoint does. A problem is named by its
   * field in the entry written (`Redirect.Service`); one in another entry (a router still asking
   * for a subset a resolver write drops) by that entry's kind, name and field. A problem the stored
   * entries already had before this change (written before this check existed) refuses only a
   * write to the entry it is in, so one broken chain does not block unrelated writes (Consul
   * refuses any failing chain; a store that predates the check would otherwise take no writes).
   */
  private checkChains(change: Proposed): void {
    const kind = ('put' in change ? change.put.Kind : change.deleted.slice(0, change.deleted.indexOf('/'))) as ConfigKind;
    if (!CHAIN_KINDS.includes(kind)) return;
    const name = 'put' in change ? change.put.Name : change.deleted.slice(kind.length + 1);
    const changedKey = keyOf(kind, name);
    const stored = (k: ConfigKind) => this.opts.store.list<ConfigEntry>(CONFIG_ENTRIES_TABLE, `${k}/`).map((e) => e.value);
    const current = new Map<string, ConfigEntry>();
    for (const k of CHAIN_KINDS) for (const e of stored(k)) current.set(keyOf(e.Kind, e.Name), e);
    const proposed = new Map(current);
    if ('put' in change) proposed.set(changedKey, change.put);
    else proposed.delete(changedKey);

    // The services whose chains can change: the named one and, transitively, those sending to it.
    const owners = new Set<string>();
    const sendsTo = new Map<string, Set<string>>();
    for (const e of [...current.values(), ...proposed.values()]) {
      if (e.Kind === 'proxy-defaults') continue;
      owners.add(e.Name);
      for (const to of referencedServices(e)) sendsTo.set(to, (sendsTo.get(to) ?? new Set()).add(e.Name));
    }
    const affected = new Set<string>(kind === 'proxy-defaults' ? owners : [name]);
    for (const s of affected) for (const from of sendsTo.get(s) ?? []) affected.add(from);

    const view = (m: Map<string, ConfigEntry>): ChainEntries => {
      const get = <T>(k: ConfigKind, n: string) => m.get(keyOf(k, n)) as T | undefined;
      return {
        resolver: (n) => get('service-resolver', n),
        splitter: (n) => get('service-splitter', n),
        router: (n) => get('service-router', n),
        serviceDefaults: (n) => get('service-defaults', n),
        proxyDefaults: () => get('proxy-defaults', PROXY_DEFAULTS_NAME),
      };
    };
    const problems = (entries: ChainEntries, service: string): ChainProblem[] => {
      try {
        compileDiscoveryChain(service, { dc: this.opts.dc, trustDomain: CHECK_TRUST_DOMAIN, entries });
        return [];
      } catch (err) {
        if (err instanceof ChainCompileError) return err.problems;
        throw err;
      }
    };
    const sig = (p: ChainProblem) => `${problemField(p)}\n${p.message}`;
    const isOwn = (p: ChainProblem) => p.kind === kind && p.name === name;
    const failing: ChainProblem[][] = [];
    for (const service of [...affected].sort()) {
      const after = problems(view(proposed), service);
      if (!after.length) continue;
      const before = new Set(problems(view(current), service).map(sig));
      const fresh = after.filter((p) => isOwn(p) || !before.has(sig(p)));
      if (fresh.length) failing.push(fresh);
    }
    if (!failing.length) return;
    // One loop is seen from every service on it; report it where the written entry closes it when it
    // does, else as the first failing chain (by service name) sees it.
    const own = failing.flat().filter(isOwn);
    const v: Violation[] = [];
    for (const p of own.length ? own : failing[0]) {
      const violation = { Field: isOwn(p) ? p.field : problemField(p), Message: p.message };
      if (!v.some((x) => x.Field === violation.Field && x.Message === violation.Message)) v.push(violation);
    }
    throw invalid(v);
  }

  /**
   * Refuses a protocol change that leaves a destination of L7 intentions on a protocol whose
   * requests its sidecar does not parse (Consul refuses it too). A destination already in that
   * state (its sidecar registrations changed, which no entry write controls) is refused only when
   * this change is what sets the protocol, not when an unrelated field of proxy-defaults changes.
   */
  private checkL7Intentions(change: Proposed, proposed: Parameters<typeof protocolSourceOf>[1]): Violation[] {
    const kind = 'put' in change ? change.put.Kind : change.deleted.slice(0, change.deleted.indexOf('/'));
    if ((kind !== 'service-defaults' && kind !== 'proxy-defaults') || !this.opts.l7Intentions) return [];
    const name = 'put' in change ? change.put.Name : change.deleted.slice(kind.length + 1);
    const byDestination = new Map<string, string[]>();
    for (const { destination, id } of this.opts.l7Intentions()) {
      // A service's own entry concerns that service; proxy-defaults every one.
      if (kind === 'service-defaults' && destination !== name) continue;
      byDestination.set(destination, [...(byDestination.get(destination) ?? []), id]);
    }
    const current = {
      serviceDefaults: (n: string) => this.opts.store.get<ServiceDefaults>(CONFIG_ENTRIES_TABLE, keyOf('service-defaults', n))?.value,
      proxyDefaults: () => this.opts.store.get<ProxyDefaults>(CONFIG_ENTRIES_TABLE, keyOf('proxy-defaults', PROXY_DEFAULTS_NAME))?.value,
    };
    const resolve = (service: string, lookup: Parameters<typeof protocolSourceOf>[1]) =>
      protocolSourceOf(service, lookup) ?? this.opts.fallbackProtocol?.(service) ?? { protocol: 'tcp', from: 'default' };
    const v: Violation[] = [];
    for (const [service, ids] of [...byDestination].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const after = resolve(service, proposed);
      if (L7_PROTOCOLS.includes(after.protocol)) continue;
      const before = resolve(service, current);
      if (!L7_PROTOCOLS.includes(before.protocol) && after.from !== kind) continue;
      v.push({
        Field: fieldOf(change),
        Message:
          `destination "${service}" would speak ${after.protocol} (from ${after.from}), but ` +
          (ids.length === 1 ? `intention ${ids[0]} has` : `intentions ${ids.sort().join(', ')} have`) +
          ` L7 permissions, which need http, http2 or grpc: remove their Permissions first, or keep an L7 protocol`,
      });
    }
    return v;
  }

  private assertWritable(): void {
    if (this.opts.primary === false) {
      throw new IsthmusError(
        ErrorCodes.PRIMARY_UNREACHABLE,
        `config entries are written in the primary datacenter, not in ${this.opts.dc}; nothing was changed`,
      );
    }
  }
}

/** The field a protocol refusal names: the protocol the change set, else the entry's Name. */
function fieldOf(change: Proposed): string {
  if ('put' in change && change.put.Kind === 'service-defaults') return 'Protocol';
  if ('put' in change && change.put.Kind === 'proxy-defaults') return 'Config.protocol';
  return 'Name';
}
