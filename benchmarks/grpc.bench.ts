// gRPC through the sidecar pair (grpc-js client -> client sidecar -> mTLS -> server sidecar -> grpc-js
// app) in two modes, beside the app direct, in one run with alternating rounds: `l7` ends HTTP/2 in
// the server sidecar and checks every call against an L7 intention (the grpc protocol), `l4` relays
// the same bytes without looking (tcp). Reports unary calls/s with 64 calls in flight on one channel
// and the server sidecar's CPU per call, the latency of one call at a time (p50/p99), and one
// server-streaming call's throughput (16 KiB messages).
import { fileURLToPath } from 'node:url';
import { arg, childProcesses, cpuMicros } from './support/bench-run.js';
import { median } from './support/http-load.js';
import { jsonChild } from './support/json-child.js';
import { echoClient, grpc, type EchoClient } from '../src/sidecar/testing/grpc-echo.js';

const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));
const children = childProcesses();
const seconds = Number(arg('seconds', '3'));
const rounds = Number(arg('rounds', '3'));

const app = await jsonChild(children, process.execPath, ['--import', 'tsx', here('./support/grpc-echo-app.ts')]);
const pairOf = (protocol: string) =>
  jsonChild(children, process.execPath, ['--import', 'tsx', here('./support/grpc-sidecar-pair.ts'), String(app.info.port), protocol, protocol]);
const l7 = await pairOf('grpc');
const l4 = await pairOf('tcp');
const paths: Record<string, { port: number; pid?: number }> = {
  direct: { port: app.info.port },
  l4: { port: l4.info.port, pid: l4.info.pid },
  l7: { port: l7.info.port, pid: l7.info.pid },
};

const say = (c: EchoClient) => new Promise<void>((resolve, reject) => c.say({ text: 'hello' }, new grpc.Metadata(), (err) => (err ? reject(err) : resolve())));

async function unaryLoad(c: EchoClient, inFlight: number, ms: number): Promise<{ calls: number; lat: number[] }> {
  const deadline = performance.now() + ms;
  let calls = 0;
  const lat: number[] = [];
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < deadline) {
        const t = performance.now();
        await say(c);
        lat.push(performance.now() - t);
        calls++;
      }
    }),
  );
  return { calls, lat };
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

async function streamMBps(c: EchoClient): Promise<number> {
  const n = 4000;
  const size = 16 * 1024;
  const t = performance.now();
  let bytes = 0;
  await new Promise<void>((resolve, reject) => {
    const call = c.count({ n, size });
    call.on('data', (m: { text: string }) => (bytes += m.text.length));
    call.on('end', () => resolve());
    call.on('error', reject);
  });
  return bytes / 1e6 / ((performance.now() - t) / 1000);
}

type Acc = { cps: number[]; cpuUs: number[]; p50: number[]; p99: number[]; mbps: number[] };
const res: Record<string, Acc> = {};
for (const k of Object.keys(paths)) res[k] = { cps: [], cpuUs: [], p50: [], p99: [], mbps: [] };
for (let r = 0; r < rounds; r++) {
  const order = Object.keys(paths);
  if (r % 2) order.reverse();
  for (const k of order) {
    const { port, pid } = paths[k];
    const c = echoClient('127.0.0.1', port);
    await unaryLoad(c, 8, 300); // warm the channel, the connection and the JIT
    const cpu0 = pid ? cpuMicros(pid) : 0;
    const load = await unaryLoad(c, 64, seconds * 1000);
    if (pid) res[k].cpuUs.push((cpuMicros(pid) - cpu0) / load.calls);
    res[k].cps.push(load.calls / seconds);
    const one = await unaryLoad(c, 1, (seconds * 1000) / 2);
    res[k].p50.push(pct(one.lat, 50));
    res[k].p99.push(pct(one.lat, 99));
    res[k].mbps.push(await streamMBps(c));
    c.close();
  }
}

const summary: Record<string, unknown> = {};
for (const [k, v] of Object.entries(res)) {
  summary[k] = {
    unaryCallsPerSec: Math.round(median(v.cps)),
    ...(v.cpuUs.length ? { sidecarPairCpuUsPerCall: +median(v.cpuUs).toFixed(1) } : {}),
    oneAtATime: { p50Ms: +median(v.p50).toFixed(3), p99Ms: +median(v.p99).toFixed(3) },
    streamMBps: +median(v.mbps).toFixed(1),
  };
}
const s = summary as Record<string, { unaryCallsPerSec: number; oneAtATime: { p50Ms: number }; streamMBps: number }>;
console.log(
  JSON.stringify({
    name: 'grpc',
    rounds,
    seconds,
    ...summary,
    ratios: {
      l7VsDirectCalls: +(s.l7.unaryCallsPerSec / s.direct.unaryCallsPerSec).toFixed(3),
      l7VsL4Calls: +(s.l7.unaryCallsPerSec / s.l4.unaryCallsPerSec).toFixed(3),
      l7AddedP50PerHopMs: +((s.l7.oneAtATime.p50Ms - s.direct.oneAtATime.p50Ms) / 2).toFixed(3),
      l4AddedP50PerHopMs: +((s.l4.oneAtATime.p50Ms - s.direct.oneAtATime.p50Ms) / 2).toFixed(3),
      l7VsL4Stream: +(s.l7.streamMBps / s.l4.streamMBps).toFixed(3),
    },
  }),
);
process.exit(0);
