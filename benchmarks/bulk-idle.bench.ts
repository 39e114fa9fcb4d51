// What a mesh gateway keeps of connections that moved bulk and then idle (a sidecar's pooled
// connection that carried one large answer and waits for the next call): rounds of N connections,
// each sending a ClientHello and 256 KiB through the gateway to an echo backend and reading them
// back, then left open and silent; the gateway's RSS after each round has idled. Side by side, the
// gateway as it ships (a connection idle for 2 to 4 s gives its read buffers back) and the same
// build with that sweep pushed out of reach (every connection keeps its buffers until it closes).
// One process each, from the build in dist/.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { jsonChild } from './support/json-child.js';
import { rssKB } from './support/soak-sample.js';

const N = Number(process.env.BENCH_CONNS ?? 1000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const IDLE_MS = 6000;
const PAYLOAD = randomBytes(256 * 1024);
const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));
const GOLDEN = readFileSync(here('../src/gateway/testdata/node-tls13.bin'));
const children: ChildProcess[] = [];
process.on('exit', () => children.forEach((c) => c.exitCode === null && c.kill('SIGTERM')));

const backend = net.createServer((s) => {
  s.pipe(s);
  s.on('error', () => {});
});
await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
const backendPort = (backend.address() as net.AddressInfo).port;

const rssMB = (pid: number) => rssKB(pid) / 1024;

const sides = {
  shipped: { bufferSweepMs: undefined as number | undefined },
  keepsBuffers: { bufferSweepMs: 1e9 },
};
const gateways: Record<string, { port: number; pid: number; rss: number[]; socks: net.Socket[] }> = {};
for (const [name, side] of Object.entries(sides)) {
  const spec = { trustDomain: 'golden.isthmus', services: { api: backendPort }, workers: 1, bufferSweepMs: side.bufferSweepMs };
  const gw = await jsonChild(children, process.execPath, [here('./support/gateway-process.mjs'), '0', JSON.stringify(spec)]);
  gateways[name] = { port: gw.info.port, pid: gw.info.pid, rss: [], socks: [] };
}
await new Promise((r) => setTimeout(r, 500));
for (const g of Object.values(gateways)) g.rss.push(rssMB(g.pid));

/** N connections through `port`, each echoing the hello and 256 KiB, 50 at a time; left open. */
async function round(g: { port: number; socks: net.Socket[] }): Promise<number> {
  let failed = 0;
  for (let i = 0; i < N; i += 50) {
    await Promise.all(
      Array.from(
        { length: Math.min(50, N - i) },
        () =>
          new Promise<void>((resolve) => {
            const s = net.connect({ host: '127.0.0.1', port: g.port });
            g.socks.push(s);
            let n = 0;
            s.on('data', (d) => {
              n += d.length;
              if (n >= GOLDEN.length + PAYLOAD.length) resolve();
            });
            s.on('error', () => {
              failed++;
              resolve();
            });
            s.write(GOLDEN);
            s.write(PAYLOAD);
          }),
      ),
    );
  }
  return failed;
}

let failed = 0;
for (let r = 0; r < ROUNDS; r++) {
  for (const [name, g] of Object.entries(gateways)) {
    failed += await round(g);
    await new Promise((res) => setTimeout(res, IDLE_MS));
    g.rss.push(rssMB(g.pid));
    console.error(`round ${r + 1} ${name}: ${g.socks.length} idle connections, RSS ${g.rss.at(-1)!.toFixed(1)} MB`);
  }
}

const result: Record<string, unknown> = { name: 'bulk-idle', connectionsPerRound: N, rounds: ROUNDS, payloadKiB: 256, failed };
for (const [name, g] of Object.entries(gateways)) {
  const grown = g.rss.at(-1)! - g.rss[0];
  result[name] = {
    rssMB: g.rss.map((x) => +x.toFixed(1)),
    mbPer1000Idle: +((grown * 1000) / (N * ROUNDS)).toFixed(1),
    lastRoundMBPer1000: +(((g.rss.at(-1)! - g.rss.at(-2)!) * 1000) / N).toFixed(1),
  };
}
console.log(JSON.stringify(result));
for (const g of Object.values(gateways)) g.socks.forEach((s) => s.destroy());
backend.close();
process.exit(0);
