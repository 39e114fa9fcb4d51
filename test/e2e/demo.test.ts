// `npm start` runs `isthmus demo`: three regions come up, traffic flows across them with one path
// denied, every DC's records answer one federated query, and Ctrl-C leaves no process or port.
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { startCli } from '../harness/server-process.js';

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
    } finally {
      demo.child.kill('SIGINT');
      await new Promise<void>((r) => (demo.child.exitCode !== null ? r() : demo.child.once('exit', () => r())));
    }
    expect(demo.child.exitCode).toBe(0);
    for (const p of PORTS) expect(await bound(p), `${p} still bound`).toBe(false);
  }, 90_000);
});
