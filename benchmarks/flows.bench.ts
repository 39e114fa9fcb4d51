// Memory a flow record costs in the memory flow store (the default): 100,000 records as they come
// off the wire (every string and object fresh), a realistic mix of hops, services, reasons and
// HTTP requests, beside the same records held in a plain array (what the records alone cost,
// without the store's indexes and before its interning of repeated fields).
import { randomBytes, randomUUID } from 'node:crypto';
import { MemoryFlowStore } from '../src/dataflow/flow-store-memory.js';
import type { FlowRecord } from '../src/dataflow/flow-record.js';

const N = Number(process.env.BENCH_FLOWS ?? 100_000);
const TD = '0becca42-5b8b-4c1e-b3f0-ee4a9d126461.isthmus';
const hops = ['client-sidecar', 'gateway-egress', 'gateway-ingress', 'server-sidecar'] as const;
const services = ['web', 'api', 'db', 'batch', 'billing', 'search'];

function wireRecord(i: number): FlowRecord {
  const trace = Math.floor(i / 6); // a connection's hops and requests share a trace
  const src = services[trace % services.length];
  const dst = services[(trace + 1) % services.length];
  const hop = hops[i % 4];
  const sidecar = hop.endsWith('sidecar');
  const r: FlowRecord = {
    id: randomUUID(),
    traceId: ((trace * 2654435761) >>> 0).toString(16).padStart(32, '0'),
    requestIndex: i % 6 < 4 ? 0 : (i % 6) - 3,
    hop,
    dc: `dc${1 + (i % 3)}`,
    reporter: sidecar ? `${src}-sidecar-proxy` : `gateway-dc${1 + (i % 3)}-1`,
    source: {
      spiffeId: sidecar ? `spiffe://${TD}/ns/default/dc/dc1/svc/${src}` : '',
      service: sidecar ? src : '',
      namespace: sidecar ? 'default' : '',
      dc: sidecar ? 'dc1' : '',
    },
    destination: { spiffeId: '', service: dst, namespace: 'default', dc: 'dc2' },
    sni: `${dst}.default.dc2.internal.${TD}`,
    verdict: i % 50 === 0 ? 'denied' : 'allowed',
    reason: sidecar ? `allowed by intention ${src} => ${dst}` : `routed to 127.0.2.1:${21000 + (i % 4)}`,
    intentionId: sidecar ? `2b0a7a3c-6d2c-4a59-9d0e-0c2e5a0c9f${String(trace % 60).padStart(2, '0')}` : '',
    intentionDc: sidecar ? 'dc1' : '',
    intentionIndex: 42,
    startTime: 1_700_000_000_000 + i,
    durationMs: 3,
    bytesIn: 120,
    bytesOut: 340,
    ...(i % 6 >= 4
      ? {
          http: {
            method: 'GET',
            path: `/orders/${i % 500}`,
            status: 200,
            traceparent: `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01`,
          },
        }
      : {}),
  };
  return JSON.parse(JSON.stringify(r)) as FlowRecord;
}

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc (npm run bench does)');
function measure(fill: () => unknown): { heapBytesPerRecord: number; rssBytesPerRecord: number; keep: unknown } {
  gc!();
  const before = process.memoryUsage();
  const keep = fill();
  gc!();
  const after = process.memoryUsage();
  return { heapBytesPerRecord: Math.round((after.heapUsed - before.heapUsed) / N), rssBytesPerRecord: Math.round((after.rss - before.rss) / N), keep };
}

// Both stay alive to the end, so each figure is memory the process had to take for it.
const store = measure(() => {
  const s = new MemoryFlowStore({ capacity: N });
  for (let i = 0; i < N; i += 100) s.append(Array.from({ length: 100 }, (_, j) => wireRecord(i + j)));
  return s;
});
const plain = measure(() => Array.from({ length: N }, (_, i) => wireRecord(i)));
const figures = (m: typeof store) => ({ heapBytesPerRecord: m.heapBytesPerRecord, rssBytesPerRecord: m.rssBytesPerRecord });
console.log(
  JSON.stringify({
    name: 'flows',
    records: N,
    memoryStore: figures(store),
    plainArray: figures(plain),
    storeVsPlainHeap: +(store.heapBytesPerRecord / plain.heapBytesPerRecord).toFixed(2),
    heldBoth: [store.keep, plain.keep].length,
  }),
);
