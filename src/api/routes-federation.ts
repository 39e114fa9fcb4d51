// Federation on the HTTP API: /v1/federation/{status,token,receipts,members/:dc}; writes of replicated kinds
// made in a secondary forwarded to the primary; `?wait-for=all` receipts on writes at the primary;
// and catalog and health reads for another DC (`?dc=dc2`) answered from its exported catalog.
import type { Context, Hono, Next } from 'hono';
import { z } from 'zod';
import type { ApiEnv } from './env.js';
import type { Federation, ExportedService } from '../federation/index.js';
import { requirePermission } from './authz.js';
import { readBody, readText } from './validate.js';
import { parseDuration } from '../core/duration.js';
import { ErrorCodes, IsthmusError, invalid, notFound } from '../core/errors.js';
import type { Store } from '../store/index.js';

export interface FederationRouteDeps {
  federation: Federation;
  store: Store;
  dc: string;
}

/** Writes of the kinds the primary owns; in a secondary they are made at the primary. */
const REPLICATED_WRITES = [
  '/v1/connect/intentions',
  '/v1/connect/intentions/*',
  '/v1/config',
  '/v1/config/*',
  '/v1/acl/*',
  '/v1/connect/ca/configuration',
  '/v1/connect/ca/rotate',
  '/v1/federation/members/*',
];
const WRITE_METHODS = new Set(['PUT', 'POST', 'DELETE', 'PATCH']);
const MAX_RECEIPT_WAIT_MS = 5 * 60_000;

const tokenBody = z.object({
  Datacenter: z.string().min(1, 'is required'),
  TTL: z.string().optional(),
});

function receiptWait(c: Context): number | undefined {
  const w = c.req.query('wait-for');
  if (w === undefined) return undefined;
  if (w !== 'all') throw invalid([{ Field: 'wait-for', Message: 'must be all' }]);
  const t = c.req.query('timeout');
  return Math.min(t ? parseDuration(t, 'timeout') : 10_000, MAX_RECEIPT_WAIT_MS);
}

export function registerFederationRoutes(app: Hono<ApiEnv>, deps: FederationRouteDeps): void {
  const { federation: fed } = deps;

  // Forward (secondary) or record the origin and wait for receipts (primary). Registered before the
  // routes it covers, so it runs first.
  // A path can match two of the patterns (hono's `/v1/config/*` also matches `/v1/config`): the
  // request is handled once, or the primary would wait for its receipts twice.
  const handled = new WeakSet<Request>();
  const replicatedWrite = async (c: Context<ApiEnv>, next: Next) => {
    if (!WRITE_METHODS.has(c.req.method) || handled.has(c.req.raw)) return next();
    handled.add(c.req.raw);
    const wait = receiptWait(c);
    if (!fed.isPrimary) return forward(c, wait);
    const origin = (c.env as { originDc?: string } | undefined)?.originDc;
    if (origin) c.set('actor', { ...c.get('actor'), dc: origin });
    await next();
    if (wait !== undefined && c.res.status < 300) {
      const receipts = await fed.waitForReceipts(fed.replicatedIndex(), wait);
      c.header('X-Isthmus-Receipts', JSON.stringify(receipts));
    }
  };
  for (const path of REPLICATED_WRITES) app.use(path, replicatedWrite);

  async function forward(c: Context<ApiEnv>, wait: number | undefined): Promise<Response> {
    const url = new URL(c.req.url);
    const body = c.req.method === 'GET' ? '' : await readText(c);
    const res = await fed.forward({ method: c.req.method, path: url.pathname + url.search, body, token: c.get('token') ?? '' }, wait ?? 0);
    // Read-your-writes here: answer once the change has come back through replication.
    if (res.status < 300) await fed.waitApplied(res.index, Math.max(5000, wait ?? 0));
    const headers: Record<string, string> = {
      'content-type': res.contentType || 'application/json',
      'X-Consul-Index': String(Math.max(1, res.index)),
      'X-Isthmus-Forwarded-To': fed.primaryDc,
    };
    if (res.receiptsJson) headers['X-Isthmus-Receipts'] = res.receiptsJson;
    return new Response(res.body, { status: res.status, headers });
  }

  app.get('/v1/federation/status', (c) => {
    requirePermission(c, (a) => a.operatorRead(), 'operator:read');
    return c.json(fed.status());
  });

  app.post('/v1/federation/token', async (c) => {
    requirePermission(c, (a) => a.operatorWrite(), 'operator:write');
    const body = await readBody(c, tokenBody);
    if (!fed.isPrimary)
      throw new IsthmusError(ErrorCodes.PRIMARY_UNREACHABLE, `join tokens are made in the primary datacenter (${fed.primaryDc}); ask its API`);
    const ttl = body.TTL ? parseDuration(body.TTL, 'TTL') : 24 * 3_600_000;
    const t = await fed.createJoinToken(body.Datacenter, ttl, c.get('actor'));
    return c.json({ Datacenter: body.Datacenter, Token: t.token, Expires: t.expires, PrimaryDatacenter: fed.primaryDc });
  });

  // A departed DC taken out of the federation (at the primary; a secondary forwards it there).
  app.delete('/v1/federation/members/:dc', async (c) => {
    requirePermission(c, (a) => a.operatorWrite(), 'operator:write');
    return c.json(await fed.removeMember(c.req.param('dc'), c.get('actor')));
  });

  app.get('/v1/federation/receipts', async (c) => {
    requirePermission(c, (a) => a.intentionRead('*') || a.operatorRead(), 'intentions:read');
    const raw = c.req.query('index');
    if (!raw || !/^\d+$/.test(raw)) throw invalid([{ Field: 'index', Message: 'must be the X-Consul-Index of a write' }]);
    if (!fed.isPrimary) return forward(c, undefined);
    const wait = receiptWait(c);
    const r = wait === undefined ? fed.receipts(Number(raw)) : await fed.waitForReceipts(Number(raw), wait);
    return c.json(r);
  });

  // ---- reads of another DC, from its exported catalog ----

  const remote = (c: Context<ApiEnv>): string | undefined => {
    const dc = c.req.query('dc');
    if (!dc || dc === deps.dc) return undefined;
    if (!fed.datacenters().includes(dc)) return undefined; // the route itself answers "no path"
    const stale = fed.stalenessMs(dc);
    c.header('X-Consul-Index', String(Math.max(1, fed.exportIndex())));
    c.header('X-Consul-KnownLeader', fed.status().Peers.some((p) => p.Datacenter === dc && p.State === 'up') ? 'true' : 'false');
    c.header('X-Consul-LastContact', String(stale ?? 0));
    c.header('X-Isthmus-Stale-Ms', stale === undefined ? 'unknown' : String(stale));
    return dc;
  };

  const exported = (dc: string, name: string, c: Context<ApiEnv>): ExportedService[] => {
    if (!c.get('authz').serviceRead(name)) return [];
    const ns = c.req.query('ns') ?? 'default';
    return fed.exportedServices(dc).filter((s) => s.Name === name && s.Namespace === ns);
  };

  // Instances stay at home: a remote service is reached through its DC's gateways, so its entries
  // point there, one per instance the exporting DC counted.
  const entries = (dc: string, s: ExportedService, passingOnly: boolean) => {
    const gw = fed.gateways(dc)[0] ?? '';
    const [host, port] = gw ? [gw.slice(0, gw.lastIndexOf(':')), Number(gw.slice(gw.lastIndexOf(':') + 1))] : ['', 0];
    const out = [];
    for (let i = 0; i < s.Instances; i++) {
      const healthy = i < s.Healthy;
      if (passingOnly && !healthy) continue;
      out.push({ dc, host, port, healthy, id: `${s.Name}-${dc}-${i + 1}` });
    }
    return out;
  };

  app.get('/v1/catalog/services', async (c, next) => {
    const dc = remote(c);
    if (!dc) return next();
    const out: Record<string, string[]> = {};
    for (const s of fed.exportedServices(dc)) if (c.get('authz').serviceRead(s.Name)) out[s.Name] = [...new Set([...(out[s.Name] ?? []), ...s.Tags])];
    return c.json(out);
  });

  app.get('/v1/catalog/service/:name', async (c, next) => {
    const dc = remote(c);
    if (!dc) return next();
    const name = c.req.param('name');
    return c.json(
      exported(dc, name, c).flatMap((s) =>
        entries(dc, s, false).map((e) => ({
          ID: '',
          Node: `${dc}-mesh-gateway`,
          Address: e.host,
          Datacenter: dc,
          ServiceID: e.id,
          ServiceName: s.Name,
          ServiceTags: s.Tags,
          ServiceAddress: e.host,
          ServicePort: e.port,
          ServiceMeta: s.Meta,
          ServiceKind: '',
          Namespace: s.Namespace,
          CreateIndex: 0,
          ModifyIndex: 0,
        })),
      ),
    );
  });

  app.get('/v1/health/service/:name', async (c, next) => {
    const dc = remote(c);
    if (!dc) return next();
    const name = c.req.param('name');
    const passing = c.req.query('passing') !== undefined;
    return c.json(
      exported(dc, name, c).flatMap((s) =>
        entries(dc, s, passing).map((e) => ({
          Node: { Node: `${dc}-mesh-gateway`, Address: e.host, Datacenter: dc, Meta: {}, TaggedAddresses: {} },
          Service: { ID: e.id, Service: s.Name, Tags: s.Tags, Address: e.host, Port: e.port, Meta: s.Meta, Kind: '', Namespace: s.Namespace },
          Checks: [
            {
              Node: `${dc}-mesh-gateway`,
              CheckID: `exported:${e.id}`,
              Name: `health as exported by ${dc}`,
              Status: e.healthy ? 'passing' : 'critical',
              Output: `${s.Healthy} of ${s.Instances} instances healthy in ${dc}`,
              ServiceID: e.id,
              ServiceName: s.Name,
            },
          ],
        })),
      ),
    );
  });
}

export function requireFederation(f: Federation | undefined): Federation {
  if (!f) throw notFound('federation is not enabled on this server');
  return f;
}
