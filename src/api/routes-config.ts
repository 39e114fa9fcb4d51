// Consul's config entry endpoints: `PUT /v1/config` (`?cas=`), `GET /v1/config/:kind[/:name]`
// (blocking), `DELETE /v1/config/:kind/:name` (`?cas=`). Writes in a secondary are forwarded to the
// primary before they get here (routes-federation.ts). A service-intentions entry is stored as the
// destination's intentions (the same records /v1/connect/intentions answers), so that kind goes to
// Intentions rather than to the config-entry table.
import type { Context, Hono } from 'hono';
import type { ApiEnv } from './env.js';
import type { Authorizer } from '../acl/index.js';
import type { Store } from '../store/index.js';
import { CONFIG_KINDS, checkSubsetFilters, isConfigKind, parseConfigEntry, type ConfigEntries, type ConfigKind } from '../config-entries/index.js';
import type { Intentions } from '../intentions/index.js';
import { blockingRead } from './blocking.js';
import { requirePermission } from './authz.js';
import { readJson } from './validate.js';
import { invalid, notFound } from '../core/errors.js';

export interface ConfigRouteDeps {
  store: Store;
  configEntries: ConfigEntries;
  intentions: Intentions;
}

/**
 * Consul's ACL per kind: proxy-defaults is the operator's, service-intentions the destination's
 * intentions rule, the other service-* kinds the named service's.
 */
function allowed(a: Authorizer, kind: ConfigKind, name: string, write: boolean): boolean {
  if (kind === 'proxy-defaults') return write ? a.operatorWrite() : a.operatorRead();
  if (kind === 'service-intentions') return write ? a.intentionWrite(name) : a.intentionRead(name);
  return write ? a.serviceWrite(name) : a.serviceRead(name);
}

function permissionName(kind: ConfigKind, name: string, write: boolean): string {
  const rw = write ? 'write' : 'read';
  if (kind === 'service-intentions') return `intentions:${rw} on ${name}`;
  return kind === 'proxy-defaults' ? `operator:${rw}` : `service:${rw} on ${name}`;
}

function kindOf(c: Context<ApiEnv>): ConfigKind {
  const kind = c.req.param('kind');
  if (!isConfigKind(kind)) throw invalid([{ Field: 'kind', Message: `must be one of ${CONFIG_KINDS.join(', ')}` }]);
  return kind;
}

/** `?cas=N` as Consul reads it: absent, or a non-negative integer. */
function casOf(c: Context<ApiEnv>): number | undefined {
  const raw = c.req.query('cas');
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw)) throw invalid([{ Field: 'cas', Message: 'must be a non-negative integer (a ModifyIndex, or 0 for "only if absent")' }]);
  return Number(raw);
}

export function registerConfigRoutes(app: Hono<ApiEnv>, deps: ConfigRouteDeps): void {
  const { store, configEntries, intentions } = deps;

  app.put('/v1/config', async (c) => {
    const cas = casOf(c);
    const entry = parseConfigEntry(await readJson(c));
    checkSubsetFilters(entry);
    requirePermission(c, (a) => allowed(a, entry.Kind, entry.Name, true), permissionName(entry.Kind, entry.Name, true));
    if (entry.Kind === 'service-intentions') return c.json(await intentions.putEntry(entry, { cas }, c.get('actor')));
    return c.json(await configEntries.put(entry, { cas }, c.get('actor')));
  });

  app.get('/v1/config/:kind', async (c) => {
    const kind = kindOf(c);
    const visible = (e: { Name: string }) => allowed(c.get('authz'), kind, e.Name, false);
    if (kind === 'service-intentions') return c.json(await blockingRead(c, store, intentions, () => intentions.entries().filter(visible)));
    const list = await blockingRead(c, store, configEntries, () => configEntries.list(kind).filter(visible));
    return c.json(list);
  });

  app.get('/v1/config/:kind/:name', async (c) => {
    const kind = kindOf(c);
    const name = c.req.param('name');
    requirePermission(c, (a) => allowed(a, kind, name, false), permissionName(kind, name, false));
    const entry =
      kind === 'service-intentions'
        ? await blockingRead(c, store, intentions, () => intentions.entry(name))
        : await blockingRead(c, store, configEntries, () => configEntries.get(kind, name));
    if (!entry) throw notFound(`Config entry not found for "${kind}" / "${name}"`);
    return c.json(entry);
  });

  app.delete('/v1/config/:kind/:name', async (c) => {
    const kind = kindOf(c);
    const name = c.req.param('name');
    const cas = casOf(c);
    requirePermission(c, (a) => allowed(a, kind, name, true), permissionName(kind, name, true));
    const deleted =
      kind === 'service-intentions'
        ? await intentions.deleteEntry(name, { cas }, c.get('actor'))
        : await configEntries.delete(kind, name, { cas }, c.get('actor'));
    // Consul answers a check-and-set delete with whether it deleted, a plain one with an empty object.
    return c.json(cas === undefined ? {} : deleted);
  });
}
