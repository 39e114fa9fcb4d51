// Leaf renewal and root rotation while requests flow through a sidecar pair: no request fails,
// and the sidecars really serve the new certificates afterwards.
import http from 'node:http';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, runCli, type ServerProcess } from '../harness/server-process.js';
import { startSidecarPair, type SidecarPair } from '../harness/sidecars.js';

let srv: ServerProcess;
let pair: SidecarPair;
let upstreamPort = 0;
let apiSidecarPort = 0;

function get(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', reject);
    req.setTimeout(3000, () => req.destroy(new Error('timeout')));
  });
}

async function servedSerial(): Promise<string> {
  const leaf = (await api(srv.url, 'GET', '/v1/agent/connect/ca/leaf/web')).body;
  return new Promise((resolve, reject) => {
    const s = tls.connect(
      { host: '127.0.0.1', port: apiSidecarPort, key: leaf.PrivateKeyPEM, cert: leaf.CertPEM, rejectUnauthorized: false, minVersion: 'TLSv1.3' },
      () => {
        resolve(s.getPeerCertificate().serialNumber);
        s.destroy();
      },
    );
    s.on('error', reject);
  });
}

beforeAll(async () => {
  pair = await startSidecarPair((_req, res) => res.end('ok'));
  srv = pair.srv;
  upstreamPort = pair.upstreamPort;
  apiSidecarPort = pair.apiSidecarPort;
});

afterAll(async () => {
  await pair?.stop();
});

describe('certificates change under load', () => {
  it('renews leaves and rotates the root with zero failed requests', async () => {
    const before = await servedSerial();
    let ok = 0;
    const failures: string[] = [];
    let running = true;
    const load = (async () => {
      while (running) {
        try {
          const status = await get(upstreamPort);
          if (status === 200) ok++;
          else failures.push(`status ${status}`);
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    })();
    await new Promise((r) => setTimeout(r, 500));
    // A CA configuration change re-issues every leaf (renewal); then a root rotation.
    expect((await api(srv.url, 'PUT', '/v1/connect/ca/configuration', { Provider: 'consul', Config: { LeafCertTTL: '24h' } })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 800));
    const afterRenewal = await servedSerial();
    const rotated = await runCli(['ca', 'rotate'], { ISTHMUS_HTTP_ADDR: srv.addr });
    expect(rotated.code).toBe(0);
    await new Promise((r) => setTimeout(r, 1500));
    running = false;
    await load;
    const afterRotation = await servedSerial();
    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThan(50);
    expect(afterRenewal).not.toBe(before);
    expect(afterRotation).not.toBe(afterRenewal);
    const roots = (await api(srv.url, 'GET', '/v1/connect/ca/roots')).body;
    expect(roots.Roots).toHaveLength(2);
    expect(roots.Roots.filter((r: any) => r.Active)).toHaveLength(1);
  });
});
