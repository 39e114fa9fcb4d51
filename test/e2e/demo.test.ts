// `npm start` runs `isthmus demo`: three regions come up, traffic flows across them with one path
// denied, every DC's records answer one federated query, and Ctrl-C leaves no process or port.
import http from 'node:http';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { runCli, startCli } from '../harness/server-process.js';

const PORTS = ['127.0.1.1:8500', '127.0.2.1:8500', '127.0.3.1:8500', '127.0.1.1:8443', '127.0.2.1:8443', '127.0.3.1:8443', '127.0.1.1:9191', '127.0.2.1:21000'];

function bound(addr: string): Promise<boolean> {
  const [host, port] = addr.split(':');
  return new Promise((resolve) => {
    const s = net.connect({ host, port: Number(port) });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

const HOPS = ['client-sidecar', 'gateway-egress', 'gateway-ingress', 'server-sidecar'];

/** One call through web's upstream for api (127.0.1.1:9191): where it landed, or its failure. */
function callApi(headers: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve) => {
    http
      .get({ host: '127.0.1.1', port: 9191, path: '/', headers, agent: false, timeout: 5000 }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => {
          try {
            const a = JSON.parse(body) as { dc: string; version: string };
            resolve(res.statusCode === 200 ? `${a.dc} ${a.version}` : `status ${res.statusCode}`);
          } catch {
            resolve(`status ${res.statusCode}: ${body.slice(0, 100)}`);
          }
        });
      })
      .on('error', (e) => resolve(`error ${e.message}`));
  });
}

/** Calls until `done` says the last ones are as wanted; returns every answer seen, in order. */
async function callUntil(what: string, done: (recent: string[]) => boolean, ms: number): Promise<string[]> {
  const seen: string[] = [];
  const end = Date.now() + ms;
  while (Date.now() < end) {
    seen.push(await callApi());
    if (done(seen.slice(-10))) return seen;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} within ${ms} ms; last answers: ${seen.slice(-10).join(', ')}`);
}

describe('isthmus demo', () => {
  it('runs three regions with cross-region traffic and a denied path, and stops everything on SIGINT', async () => {
    const demo = await startCli(['demo', '--rate', '20'], /Ctrl-C stops everything/);
    try {
      expect(demo.output()).toMatch(/dashboard: http:\/\/127\.0\.1\.1:8500\/ui/);
      const records = await (async () => {
        for (let i = 0; i < 100; i++) {
          const r = (await (await fetch('http://127.0.1.1:8500/v1/flows?dc=all&limit=2000')).json()) as {
            Records: { dc: string; verdict: string; hop: string; source: { service: string }; destination: { service: string } }[];
            Missing: string[];
          };
          const dcs = new Set(r.Records.map((x) => x.dc));
          // Every hop kind too: a sidecar records a connection when it closes, so the first records of
          // a hop can come a few seconds after the first calls.
          const hops = new Set(r.Records.map((x) => x.hop));
          const allHops = HOPS.every((h) => hops.has(h));
          if (
            dcs.size === 3 &&
            allHops &&
            r.Records.some((x) => x.verdict === 'denied') &&
            r.Records.some((x) => x.destination.service === 'db' && x.source.service === 'api' && x.verdict === 'allowed')
          )
            return r;
          await new Promise((res) => setTimeout(res, 200));
        }
        throw new Error('no traffic across three regions, with every hop recorded, within 20 s');
      })();
      expect(records.Missing).toEqual([]);
      const denied = records.Records.find((x) => x.verdict === 'denied')!;
      expect(denied).toMatchObject({ source: { service: 'web' }, destination: { service: 'db' }, dc: 'dc3' });
      for (const hop of HOPS)
        expect(
          records.Records.some((x) => x.hop === hop),
          hop,
        ).toBe(true);

      // The README's routing walk: the canary header goes to v2, the rest split 90/10; dc2's v1 in
      // maintenance sends v1's calls to dc3 with no failed call, and they come back when it ends.
      for (let i = 0; i < 5; i++) expect(await callApi({ 'x-canary': '1' })).toBe('dc2 v2');
      const split: string[] = [];
      for (let i = 0; i < 200; i++) split.push(await callApi());
      const v2 = split.filter((a) => a === 'dc2 v2').length;
      expect(split.filter((a) => a !== 'dc2 v1' && a !== 'dc2 v2')).toEqual([]);
      // 10 % of 200: P(outside 5..40) is below 1e-4.
      expect(v2).toBeGreaterThanOrEqual(5);
      expect(v2).toBeLessThanOrEqual(40);
      const on = await runCli(['maint', '-enable', '-service', 'api', '-reason', 'demo test', '-http-addr', '127.0.2.1:8500']);
      expect(on.code, on.stderr).toBe(0);
      const away = await callUntil('v1 calls served by dc3', (r) => r.filter((a) => a === 'dc3 v1').length >= 5, 10_000);
      expect(away.filter((a) => !['dc2 v1', 'dc2 v2', 'dc3 v1'].includes(a))).toEqual([]);
      // The client sidecar's records say where v1's calls went and why, in `isthmus flows`.
      const flows = await runCli(['flows', '--dc', 'dc1', '--limit', '500', '-o', 'compact', '--http-addr', '127.0.1.1:8500']);
      expect(flows.stdout).toMatch(/\(to v1\.api\.default\.dc3 by Routes\[1\] Splits\[0\][^)]*failed over: no healthy instance of v1\.api\.default\.dc2/);
      const off = await runCli(['maint', '-disable', '-service', 'api', '-http-addr', '127.0.2.1:8500']);
      expect(off.code, off.stderr).toBe(0);
      const t0 = Date.now();
      const back = await callUntil('v1 calls back in dc2', (r) => r.length === 10 && r.every((a) => a.startsWith('dc2 ')), 10_000);
      expect(Date.now() - t0).toBeLessThan(5000);
      expect(back.filter((a) => !['dc2 v1', 'dc2 v2', 'dc3 v1'].includes(a))).toEqual([]);
    } finally {
      demo.child.kill('SIGINT');
      await new Promise<void>((r) => (demo.child.exitCode !== null ? r() : demo.child.once('exit', () => r())));
    }
    expect(demo.child.exitCode).toBe(0);
    for (const p of PORTS) expect(await bound(p), `${p} still bound`).toBe(false);
  }, 120_000);
});
