// The soak's traffic: open-loop HTTP GETs at fixed rates through web's upstream listeners, some on
// keep-alive connections (a small pool per path, reused) and some each on a new connection
// (`Connection: close`, so each is a new mTLS connection through both gateways). Requests are sent
// on schedule whether or not earlier ones have answered, so a stall shows as latency, not as a lower
// rate. Every request that does not come back 200 with the expected app's answer within the timeout
// is an error, and each error is kept with its time, path and cause.
import http from 'node:http';

export interface LoadTarget {
  name: string;
  host: string;
  port: number;
  expect: { service: string; dc: string };
}

export type LoadMode = 'keepalive' | 'new';

export interface LoadError {
  /** Seconds since the load started. */
  t: number;
  path: string;
  mode: LoadMode;
  error: string;
}

export interface LoadOptions {
  keepAliveRps: number;
  newConnRps: number;
  /** Keep-alive connections per path. */
  keepAliveConns: number;
  timeoutMs: number;
  /** Requests in flight beyond which the next ones are not sent (and counted as not sent). */
  maxInFlight: number;
  /** Width of the timeline windows. */
  windowMs: number;
}

interface Window {
  requests: number;
  errors: number;
  lat: number[];
}

const MAX_KEPT_ERRORS = 100_000;

export class SoakLoad {
  readonly lat: Record<LoadMode, number[]> = { keepalive: [], new: [] };
  readonly count: Record<LoadMode, { sent: number; ok: number; errors: number }> = {
    keepalive: { sent: 0, ok: 0, errors: 0 },
    new: { sent: 0, ok: 0, errors: 0 },
  };
  readonly errors: LoadError[] = [];
  readonly windows: Window[] = [];
  /** Requests not sent because maxInFlight were outstanding. */
  notSent = 0;
  private inFlight = 0;
  private startedAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private issued: Record<LoadMode, number> = { keepalive: 0, new: 0 };
  private next: Record<LoadMode, number> = { keepalive: 0, new: 0 };
  private readonly agents: http.Agent[];
  private idle: (() => void) | undefined;

  constructor(
    private readonly targets: LoadTarget[],
    private readonly opts: LoadOptions,
  ) {
    // With a timeout of its own, Node's http.Agent also honours the idle timeout a server announces
    // (`Keep-Alive: timeout=N`) and retires an idle connection a second before the server would.
    this.agents = targets.map(() => new http.Agent({ keepAlive: true, maxSockets: opts.keepAliveConns, maxFreeSockets: opts.keepAliveConns, timeout: 60_000 }));
  }

  start(): void {
    this.startedAt = performance.now();
    this.timer = setInterval(() => this.tick(), 5);
  }

  /** Stops sending; resolves once every request in flight has answered or failed. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    if (this.inFlight > 0) await new Promise<void>((r) => (this.idle = r));
    for (const a of this.agents) a.destroy();
  }

  get elapsedS(): number {
    return (performance.now() - this.startedAt) / 1000;
  }

  private tick(): void {
    const s = this.elapsedS;
    for (const mode of ['keepalive', 'new'] as const) {
      const rate = mode === 'keepalive' ? this.opts.keepAliveRps : this.opts.newConnRps;
      const due = Math.floor(rate * s);
      while (this.issued[mode] < due) {
        this.issued[mode]++;
        const i = this.next[mode]++ % this.targets.length;
        if (this.inFlight >= this.opts.maxInFlight) this.notSent++;
        else this.one(mode, i);
      }
    }
  }

  private one(mode: LoadMode, i: number): void {
    const target = this.targets[i];
    const t0 = performance.now();
    const w = (this.windows[Math.floor((t0 - this.startedAt) / this.opts.windowMs)] ??= { requests: 0, errors: 0, lat: [] });
    this.inFlight++;
    this.count[mode].sent++;
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (error?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      this.inFlight--;
      w.requests++;
      if (error) {
        this.count[mode].errors++;
        w.errors++;
        if (this.errors.length < MAX_KEPT_ERRORS) this.errors.push({ t: +((t0 - this.startedAt) / 1000).toFixed(3), path: target.name, mode, error });
      } else {
        const ms = performance.now() - t0;
        this.count[mode].ok++;
        this.lat[mode].push(ms);
        w.lat.push(ms);
      }
      if (this.inFlight === 0 && this.idle) this.idle();
    };
    const req = http.request(
      {
        host: target.host,
        port: target.port,
        path: '/',
        method: 'GET',
        ...(mode === 'keepalive' ? { agent: this.agents[i] } : { agent: false, headers: { connection: 'close' } }),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('error', (e) => finish(`response: ${describe(e)}`));
        res.on('close', () => {
          if (!res.complete) finish('response cut off before its end');
        });
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString();
          if (res.statusCode !== 200) return finish(`status ${res.statusCode}: ${body.slice(0, 200)}`);
          try {
            const got = JSON.parse(body) as { service?: string; dc?: string };
            if (got.service !== target.expect.service || got.dc !== target.expect.dc) return finish(`wrong answer: ${body.trim().slice(0, 200)}`);
          } catch {
            return finish(`not the app's answer: ${body.slice(0, 200)}`);
          }
          finish();
        });
      },
    );
    timer = setTimeout(() => req.destroy(new Error(`no complete answer in ${this.opts.timeoutMs} ms`)), this.opts.timeoutMs);
    req.on('error', (e) => finish(describe(e)));
    req.end();
  }
}

function describe(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return err.code ? `${err.code}: ${err.message}` : String(err.message ?? err);
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}
