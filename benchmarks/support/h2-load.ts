// HTTP/2 load without h2load: a closed loop over h2c connections, `streams` requests in flight on each,
// each loop sending its next request when the last answer ended; and the check that a path answers
// as the app does. The request is a GET of `/`, or a gRPC-shaped POST (one 64-byte message in its
// 5-byte frame, content-type application/grpc, te: trailers) whose answer must end with grpc-status 0.
import http2 from 'node:http2';
import type { LoadResult } from './http-load.js';

export interface H2LoadOptions {
  port: number;
  clients: number;
  streams: number;
  durationMs: number;
  grpc?: boolean;
}

export const GRPC_PATH = '/isthmus.bench.Echo/Say';
export const GRPC_REQUEST = Buffer.concat([Buffer.from([0, 0, 0, 0, 64]), Buffer.alloc(64, 'y')]);
export const GRPC_HEADERS = { 'content-type': 'application/grpc', te: 'trailers' };

interface Answer {
  status: number;
  bytes: number;
  grpcStatus?: string;
}

function request(session: http2.ClientHttp2Session, grpc: boolean): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = grpc
      ? session.request({ ':method': 'POST', ':path': GRPC_PATH, ...GRPC_HEADERS })
      : session.request({ ':method': 'GET', ':path': '/' }, { endStream: true });
    const a: Answer = { status: 0, bytes: 0 };
    req.on('response', (h) => (a.status = Number(h[':status'])));
    req.on('trailers', (t) => (a.grpcStatus = t['grpc-status'] as string | undefined));
    req.on('data', (d: Buffer) => (a.bytes += d.length));
    req.on('end', () => resolve(a));
    req.on('error', reject);
    if (grpc) req.end(GRPC_REQUEST);
  });
}

function connect(port: number): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = http2.connect(`http://127.0.0.1:${port}`);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** Throws unless a GET of `/` on `port` answers 200 with the app's 64 bytes and the gRPC-shaped call ends with grpc-status 0. */
export async function checkH2Path(port: number, name: string): Promise<void> {
  const s = await connect(port);
  try {
    const get = await request(s, false);
    if (get.status !== 200 || get.bytes !== 64) throw new Error(`${name}: GET / answered ${get.status} with ${get.bytes} bytes, not 200 with 64`);
    const call = await request(s, true);
    if (call.status !== 200 || call.bytes !== 69 || call.grpcStatus !== '0')
      throw new Error(`${name}: the gRPC-shaped call answered ${call.status}, ${call.bytes} bytes, grpc-status ${call.grpcStatus}`);
  } finally {
    s.close();
  }
}

export async function runH2LoadNode(o: H2LoadOptions): Promise<LoadResult> {
  const sessions = await Promise.all(Array.from({ length: o.clients }, () => connect(o.port)));
  const latencies: number[] = [];
  let errors = 0;
  const start = performance.now();
  const deadline = start + o.durationMs;
  await Promise.all(
    sessions.flatMap((s) =>
      Array.from({ length: o.streams }, async () => {
        while (performance.now() < deadline) {
          const t0 = performance.now();
          try {
            const a = await request(s, o.grpc ?? false);
            if (a.status !== 200 || (o.grpc && a.grpcStatus !== '0')) errors++;
            latencies.push(performance.now() - t0);
          } catch {
            errors++;
            if (s.destroyed) return;
          }
        }
      }),
    ),
  );
  const elapsed = (performance.now() - start) / 1000;
  sessions.forEach((s) => s.close());
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? 0;
  return { requests: latencies.length, errors, rps: latencies.length / elapsed, p50Ms: pct(0.5), p99Ms: pct(0.99) };
}
