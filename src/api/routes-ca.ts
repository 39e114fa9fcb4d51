// Connect CA endpoints in Consul's shapes: roots, configuration, leaves (blocking until renewal),
// and Isthmus' own root rotation.
import type { Hono } from 'hono';
import { z } from 'zod';
import type { ApiEnv } from './env.js';
import type { Store } from '../store/index.js';
import type { CertificateAuthority, LeafCache } from '../ca/index.js';
import { blockingRead, parseBlocking, setIndexHeaders } from './blocking.js';
import { requirePermission } from './authz.js';
import { readBody } from './validate.js';
import { formatDuration, parseDuration } from '../core/duration.js';
import { invalid } from '../core/errors.js';
import { isServiceName, SERVICE_NAME_RULE } from '../core/names.js';

export interface CaRouteDeps {
  store: Store;
  ca: CertificateAuthority;
  leaves: LeafCache;
  trustDomain: () => string;
}

/** A duration up to `maxHours`: a certificate's end must stay a date (and far from year 10000). */
const durationField = (maxHours: number) =>
  z.string().transform((v, ctx) => {
    let ms: number;
    try {
      ms = parseDuration(v);
    } catch {
      ctx.addIssue({ code: 'custom', message: `"${v.length > 64 ? `${v.slice(0, 64)}...` : v}" is not a duration (e.g. 72h, 30m)` });
      return z.NEVER;
    }
    if (ms > maxHours * 3_600_000) {
      ctx.addIssue({ code: 'custom', message: `must be at most ${maxHours}h` });
      return z.NEVER;
    }
    return ms;
  });

const configBody = z.object({
  Provider: z.literal('consul', { message: 'only the built-in provider "consul" is supported' }).optional(),
  Config: z
    .object({
      LeafCertTTL: durationField(8760).optional(),
      IntermediateCertTTL: durationField(87_600).optional(),
      RootCertTTL: durationField(876_000).optional(),
      CSRMaxPerSecond: z.number().min(0, 'must be 0 (unbounded) or more').max(1_000_000, 'must be at most 1000000').optional(),
      PrivateKeyType: z.literal('ec', { message: 'only ec keys are supported' }).optional(),
      PrivateKeyBits: z.literal(256, { message: 'only 256-bit (P-256) keys are supported' }).optional(),
    })
    .passthrough(),
});

export function registerCaRoutes(app: Hono<ApiEnv>, deps: CaRouteDeps): void {
  const { store, ca } = deps;
  const roots = ca.watch('roots');
  const config = ca.watch('config');

  app.get('/v1/connect/ca/roots', async (c) => {
    const body = await blockingRead(c, store, roots, () => {
      const entries = ca.indexedRoots();
      const active = entries.find((r) => r.Active);
      return {
        ActiveRootID: active?.ID ?? '',
        TrustDomain: deps.trustDomain(),
        Roots: entries.map((r) => ({
          ID: r.ID,
          Name: r.Name,
          SerialNumber: parseInt(r.SerialNumber.slice(-12), 16),
          SigningKeyID: r.SigningKeyID,
          ExternalTrustDomain: r.TrustDomain,
          NotBefore: r.NotBefore,
          NotAfter: r.NotAfter,
          RootCert: r.RootCert,
          IntermediateCerts: r.IntermediateCerts,
          Active: r.Active,
          PrivateKeyType: r.PrivateKeyType,
          PrivateKeyBits: r.PrivateKeyBits,
          CreateIndex: r.CreateIndex,
          ModifyIndex: r.ModifyIndex,
        })),
      };
    });
    // ?pem=true answers the bundle as concatenated PEM, as Consul does.
    if (c.req.query('pem') === 'true')
      return c.text(body.Roots.map((r) => r.RootCert.trim()).join('\n') + '\n', 200, { 'Content-Type': 'application/pem-certificate-chain' });
    return c.json(body);
  });

  app.get('/v1/connect/ca/configuration', async (c) => {
    requirePermission(c, (a) => a.operatorRead(), 'operator:read');
    const indexes = ca.configIndexes();
    const cfg = await blockingRead(c, store, config, () => ca.config());
    return c.json({
      Provider: 'consul',
      Config: {
        LeafCertTTL: formatDuration(cfg.LeafCertTTL),
        IntermediateCertTTL: formatDuration(cfg.IntermediateCertTTL),
        RootCertTTL: formatDuration(cfg.RootCertTTL),
        CSRMaxPerSecond: cfg.CsrMaxPerSecond,
        PrivateKeyType: 'ec',
        PrivateKeyBits: 256,
      },
      ...indexes,
    });
  });

  app.put('/v1/connect/ca/configuration', async (c) => {
    requirePermission(c, (a) => a.operatorWrite(), 'operator:write');
    const body = await readBody(c, configBody);
    const cfg = body.Config;
    await ca.setConfig(
      {
        ...(cfg.LeafCertTTL !== undefined && { LeafCertTTL: cfg.LeafCertTTL }),
        ...(cfg.IntermediateCertTTL !== undefined && { IntermediateCertTTL: cfg.IntermediateCertTTL }),
        ...(cfg.RootCertTTL !== undefined && { RootCertTTL: cfg.RootCertTTL }),
        ...(cfg.CSRMaxPerSecond !== undefined && { CsrMaxPerSecond: cfg.CSRMaxPerSecond }),
      },
      c.get('actor'),
    );
    return c.json(true);
  });

  app.post('/v1/connect/ca/rotate', async (c) => {
    requirePermission(c, (a) => a.operatorWrite(), 'operator:write');
    const root = await ca.rotate(c.get('actor'));
    return c.json({ ActiveRootID: root.ID, Name: root.Name });
  });

  app.get('/v1/agent/connect/ca/leaf/:service', async (c) => {
    const service = c.req.param('service');
    if (!isServiceName(service)) throw invalid([{ Field: 'service', Message: `must be a service name (${SERVICE_NAME_RULE})` }]);
    requirePermission(c, (a) => a.serviceWrite(service), `service:write on ${service}`);
    const ns = c.req.query('ns') ?? 'default';
    // The namespace goes into the leaf's SPIFFE ID and DNS name: it must be a name, nothing that reshapes the URI.
    if (!isServiceName(ns)) throw invalid([{ Field: 'ns', Message: `must be a namespace name (${SERVICE_NAME_RULE})` }]);
    const params = parseBlocking(c);
    const leaf =
      params && params.index > 0 ? await deps.leaves.wait(service, ns, params.index, params.waitMs, c.req.raw.signal) : await deps.leaves.get(service, ns);
    setIndexHeaders(c, store, leaf.ModifyIndex);
    c.header('Cache-Control', 'no-store');
    return c.json(leaf);
  });
}
