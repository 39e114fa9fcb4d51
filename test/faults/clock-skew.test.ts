// Clocks minutes apart: dc1 (primary, 127.0.14.1) on true time, every process of dc2 (127.0.15.1)
// three minutes ahead and every process of dc3 (127.0.16.1) three minutes behind, by libfaketime.
// The promises: certificate validity is still judged right. Each DC's leaves, and the intermediates
// the primary signed for it, are accepted by every other DC's sidecars and federation listener
// (links up, calls succeed in all nine directions through the skewed gateways), while a certificate
// that has really expired, or is not valid yet, is refused by each of them.
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signLeaf } from '../../src/ca/index.js';
import { measuredSkewMs, skewedClock } from '../harness/faketime.js';
import { call, registerWithSidecar, startApp, startSidecar, stopAll, type App, type Proc } from '../harness/mesh-services.js';
import { freePortOn, startFederation, type Federation3, type RegionProcs } from '../harness/regions.js';
import { api } from '../harness/server-process.js';
import { until } from '../harness/until.js';

const HOSTS = ['127.0.14.1', '127.0.15.1', '127.0.16.1'];
const DCS = ['dc1', 'dc2', 'dc3'] as const;
const SKEW = { dc1: 0, dc2: 180_000, dc3: -180_000 };
const ENV = { dc2: skewedClock('+3m'), dc3: skewedClock('-3m') };

let fed: Federation3;
const procs: Proc[] = [];
const apps: App[] = [];
/** web in DC x reaches api-<y> in DC y on upstream[x][y]; each api's sidecar inbound port by DC. */
const upstream: Record<string, Record<string, number>> = {};
const apiSidecar: Record<string, number> = {};

/** dc1's intermediate and its key, read from dc1's data dir: to mint leaves whose validity the test chooses. */
function dc1Signer(r: RegionProcs): { certPem: string; keyPem: string } {
  const entries = new Map<string, unknown>();
  for (const line of readFileSync(join(r.dataDir, 'changes.log'), 'utf8').split('\n')) {
    if (!line) continue;
    for (const c of (JSON.parse(line) as { c: { t: string; k: string; o: string; v?: unknown }[] }).c) if (c.o === 'put') entries.set(`${c.t}/${c.k}`, c.v);
  }
  const inter = entries.get('ca-intermediates/dc1') as { CertPEM: string; KeyRef: string };
  return { certPem: inter.CertPEM, keyPem: entries.get(`ca-secrets/${inter.KeyRef}`) as string };
}

/** A GET to a sidecar's inbound port presenting `leaf`: the app's answer, or how the handshake failed. */
function present(
  host: string,
  port: number,
  leaf: { certPem: string; keyPem: string },
  chain: string[],
): Promise<{ status: number; body: string; error?: string }> {
  return new Promise((resolve) => {
    const req = https.get(
      {
        host,
        port,
        path: '/',
        agent: false,
        key: leaf.keyPem,
        cert: [leaf.certPem.trim(), ...chain.map((c) => c.trim())].join('\n') + '\n',
        rejectUnauthorized: false,
        minVersion: 'TLSv1.3',
        timeout: 5000,
      },
      (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', (e: NodeJS.ErrnoException) => resolve({ status: res.statusCode ?? 0, body, error: e.code ?? e.message }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ status: 0, body: '', error: e.code ?? e.message }));
  });
}

beforeAll(async () => {
  fed = await startFederation([...DCS], { hosts: HOSTS, env: ENV });
  for (const dc of DCS) {
    const r = fed.dcs[dc];
    const app = await startApp(r.host, `api in ${dc}\n`);
    apps.push(app);
    apiSidecar[dc] = await registerWithSidecar(r.server.url, r.host, `api-${dc}`, { app });
    upstream[dc] = {};
    for (const to of DCS) upstream[dc][to] = await freePortOn(r.host);
    await registerWithSidecar(r.server.url, r.host, 'web', {
      upstreams: DCS.map((to) => ({ name: `api-${to}`, dc: to === dc ? undefined : to, port: upstream[dc][to] })),
    });
  }
  procs.push(
    ...(await Promise.all(
      DCS.flatMap((dc) => [startSidecar(`api-${dc}`, fed.dcs[dc].server.grpc, fed.dcs[dc].env), startSidecar('web', fed.dcs[dc].server.grpc, fed.dcs[dc].env)]),
    )),
  );
}, 150_000);

afterAll(async () => {
  await stopAll(procs);
  for (const a of apps) a.close();
  await fed?.stop();
});

describe('clocks three minutes apart', () => {
  it('the skew is real: dc2 runs three minutes ahead and dc3 three minutes behind', async () => {
    expect(Math.abs(measuredSkewMs(ENV.dc2) - SKEW.dc2)).toBeLessThan(10_000);
    expect(Math.abs(measuredSkewMs(ENV.dc3) - SKEW.dc3)).toBeLessThan(10_000);
    for (const dc of DCS) {
      const res = await fetch(`${fed.dcs[dc].server.url}/v1/status/leader`);
      const serverClock = Date.parse(res.headers.get('date')!);
      expect([dc, Math.abs(serverClock - Date.now() - SKEW[dc]) < 10_000]).toEqual([dc, true]);
    }
  });

  it("federation links are up between every pair, over mutual TLS with the skewed DCs' server certificates", async () => {
    for (const dc of DCS) {
      const s = (await api(fed.dcs[dc].server.url, 'GET', '/v1/federation/status')).body;
      expect(s.Peers.map((p: { Datacenter: string; State: string }) => [p.Datacenter, p.State])).toEqual(DCS.filter((x) => x !== dc).map((x) => [x, 'up']));
    }
    // A leaf signed in the DC ahead starts before true time and one signed in the DC behind has not
    // expired, whoever looks.
    for (const dc of DCS) {
      const leaf = (await api(fed.dcs[dc].server.url, 'GET', '/v1/agent/connect/ca/leaf/web')).body;
      expect([dc, Date.parse(leaf.ValidAfter) < Date.now() - 60_000 && Date.parse(leaf.ValidBefore) > Date.now() + 3_600_000]).toEqual([dc, true]);
    }
  });

  it("calls succeed in all nine directions, each side checking the other's certificate with its own clock", async () => {
    const results: string[] = [];
    for (const from of DCS) {
      for (const to of DCS) {
        const host = fed.dcs[from].host;
        const r = await until(
          `web in ${from} -> api in ${to}`,
          async () => {
            const c = await call(host, upstream[from][to]);
            return c.ok ? c : undefined;
          },
          30_000,
        );
        results.push(`${from}->${to}: ${r.body.trim()}`);
      }
    }
    expect(results).toEqual(DCS.flatMap((from) => DCS.map((to) => `${from}->${to}: api in ${to}`)));
  });

  it("a certificate that really expired, or is not valid yet, is refused by every DC's sidecar; a current one is taken", async () => {
    const td = (await api(fed.dcs.dc1.server.url, 'GET', '/v1/connect/ca/roots')).body.TrustDomain;
    const signer = dc1Signer(fed.dcs.dc1);
    const mint = (now: number, ttlMs: number) =>
      signLeaf({ signer, spiffeId: `spiffe://${td}/ns/default/dc/dc1/svc/web`, dnsNames: [], commonName: 'web', ttlMs, now });
    const current = await mint(Date.now(), 3_600_000);
    // Expired ten minutes ago: past every clock here, the one behind included.
    const expired = await mint(Date.now() - 70 * 60_000, 3_600_000);
    expect(expired.notAfter.getTime()).toBeLessThan(Date.now() - 9 * 60_000);
    // Valid only from an hour on: ahead of every clock here, the one ahead included.
    const future = await mint(Date.now() + 90 * 60_000, 3_600_000);
    expect(future.notBefore.getTime()).toBeGreaterThan(Date.now() + 30 * 60_000);
    for (const dc of DCS) {
      const host = fed.dcs[dc].host;
      const port = apiSidecar[dc];
      expect([dc, await present(host, port, current, [signer.certPem])]).toMatchObject([dc, { status: 200, body: `api in ${dc}\n` }]);
      for (const [what, leaf] of [
        ['expired', expired],
        ['not yet valid', future],
      ] as const) {
        const r = await present(host, port, leaf, [signer.certPem]);
        expect([dc, what, r.status, r.body]).toEqual([dc, what, 0, '']);
        expect(r.error).toBeTruthy();
      }
    }
    // The sidecars say why they refused.
    for (const dc of DCS) {
      let reasons: string[] = [];
      await until(
        `${dc} recorded why it refused`,
        async () => {
          reasons = ((await api(fed.dcs[dc].server.url, 'GET', `/v1/flows?verdict=denied&to=api-${dc}`)).body.Records as { reason: string }[]).map(
            (f) => f.reason,
          );
          return reasons.some((r) => /expired/.test(r)) && reasons.some((r) => /not (yet valid|valid yet)/i.test(r));
        },
        15_000,
      ).catch((err: Error) => {
        throw new Error(`${err.message}; reasons recorded: ${reasons.join(' | ') || 'none'}`);
      });
    }
  });
});
