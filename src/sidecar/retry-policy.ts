// What the L7 upstream listeners (HTTP/1.1 and HTTP/2) share about a request's attempts: the route's
// retry policy as Envoy's, the request timeout, the body held so it can be sent again, the back-off.
import type { Readable } from 'node:stream';
import type { ChainRoute } from '../config-entries/index.js';
import { parseDuration } from '../core/duration.js';
import type { ChainWalk } from './chain-walk.js';
import { joinReasons, type Attempt } from './upstream-state.js';

/** Envoy's route timeout when neither the route nor the resolver sets one (0 switches it off). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 15_000;
/**
 * A request body up to this is held until it is sent whole, so that another endpoint can take it
 * again; a longer one is streamed through and never retried (Envoy's per-request buffer bound).
 */
export const RETRY_BUFFER_BYTES = 64 * 1024;
/** Envoy's retry back-off: 25 ms base, at most ten times that, full jitter. */
const RETRY_BASE_MS = 25;
const RETRY_MAX_MS = 250;

type Destination = NonNullable<ChainRoute['Destination']>;

export interface RetryPolicy {
  numRetries: number;
  on: Set<string>;
  statusCodes: Set<number>;
}

/** Consul's route retry fields as Envoy's retry policy: none set means no retries; NumRetries 0 with a condition means Envoy's 1. */
export function retryPolicyOf(d: Destination | undefined): RetryPolicy | undefined {
  if (!d) return undefined;
  const on = new Set(d.RetryOn ?? []);
  if (d.RetryOnConnectFailure) on.add('connect-failure');
  const statusCodes = new Set(d.RetryOnStatusCodes ?? []);
  if (!d.NumRetries && on.size === 0 && statusCodes.size === 0) return undefined;
  return { numRetries: d.NumRetries || 1, on, statusCodes };
}

/**
 * What went wrong with one attempt. `refused` is an HTTP/2 stream the server refused (REFUSED_STREAM);
 * `grpc` a gRPC status read off a trailers-only answer's headers (where Envoy reads it for retry_on).
 */
export type AttemptFailure =
  | { kind: 'connect' }
  | { kind: 'reset' }
  | { kind: 'refused' }
  | { kind: 'status'; status: number; localAppUnreachable: boolean }
  | { kind: 'grpc'; grpcStatus: number };

/** Envoy's x-envoy-retry-grpc-on conditions by the gRPC status each names (grpc/doc/statuscodes.md). */
const GRPC_CONDITIONS: Record<number, string> = {
  1: 'cancelled',
  4: 'deadline-exceeded',
  8: 'resource-exhausted',
  13: 'internal',
  14: 'unavailable',
};

/** Envoy's retry_on conditions, its HTTP/1.1 and HTTP/2 ones and its gRPC ones. */
export function retriable(p: RetryPolicy, f: AttemptFailure): boolean {
  const on = p.on;
  if (f.kind === 'connect') return on.has('connect-failure') || on.has('reset') || on.has('5xx') || on.has('gateway-error');
  if (f.kind === 'reset') return on.has('reset') || on.has('5xx') || on.has('gateway-error');
  // (A refused stream is a reset that never reached the app; Envoy's 5xx includes refused-stream.)
  if (f.kind === 'refused') return on.has('refused-stream') || on.has('reset') || on.has('5xx') || on.has('gateway-error');
  if (f.kind === 'grpc') {
    const c = GRPC_CONDITIONS[f.grpcStatus];
    return c !== undefined && on.has(c);
  }
  const s = f.status;
  if (f.localAppUnreachable && on.has('connect-failure')) return true;
  if (on.has('5xx') && s >= 500) return true;
  if (on.has('gateway-error') && (s === 502 || s === 503 || s === 504)) return true;
  if (on.has('retriable-4xx') && s === 409) return true;
  return p.statusCodes.has(s);
}

/** The request timeout a walk ends with: the route's RequestTimeout, else the resolver's, else Envoy's default; and which it was. */
export function requestTimeoutOf(walk: ChainWalk | undefined): { ms: number; source: string } {
  const dest = walk?.route?.Destination;
  if (dest?.RequestTimeout) return { ms: durationOr(dest.RequestTimeout, DEFAULT_REQUEST_TIMEOUT_MS), source: `Routes[${walk!.routeIndex}] RequestTimeout` };
  const r = walk?.resolver.Resolver.RequestTimeout;
  if (r) return { ms: durationOr(r, DEFAULT_REQUEST_TIMEOUT_MS), source: 'resolver RequestTimeout' };
  return { ms: DEFAULT_REQUEST_TIMEOUT_MS, source: 'default' };
}

/**
 * Where a request is in its plan of attempts, and where a failure moves it. `connect` (nothing
 * reached an app) walks the plan once through, on to the next target; `stale` (a connection or
 * session the server had closed) and `policy` (the route's retries) stay with the target they went
 * to (Envoy retries within a priority level while it has healthy hosts), coming round to the same
 * endpoint if it is the target's only one. A body not held whole is never sent again.
 */
export class AttemptCursor {
  k = 0;
  retries = 0;
  /** The last failure that moved the request on. */
  last: string | undefined;
  #configuredLeft: number;
  #staleLeft: number;

  constructor(
    readonly attempts: Attempt[],
    /** Why the plan did not start at the primary target; each move to another target adds its reason. */
    public failover: string,
    numRetries: number,
    private readonly resendable: boolean,
  ) {
    this.#configuredLeft = numRetries;
    // Stale connections are bounded apart: each endpoint may hold several.
    this.#staleLeft = attempts.length + 1;
  }

  get current(): Attempt {
    return this.attempts[this.k];
  }

  next(why: string, mode: 'connect' | 'stale' | 'policy'): boolean {
    const { attempts, k } = this;
    const a = attempts[k];
    if (!this.resendable) return false;
    if (mode === 'connect' && k + 1 >= attempts.length) return false;
    if (mode === 'stale' && this.#staleLeft-- <= 0) return false;
    if (mode === 'policy' && this.#configuredLeft-- <= 0) return false;
    let to = k + 1;
    if (mode !== 'connect') {
      let from = k;
      while (from > 0 && attempts[from - 1].target === a.target) from--;
      let end = k + 1;
      while (end < attempts.length && attempts[end].target === a.target) end++;
      to = from + ((k + 1 - from) % (end - from));
    }
    if (attempts[to].target.id !== a.target.id) this.failover = joinReasons(this.failover, why);
    this.last = why;
    this.k = to;
    this.retries++;
    return true;
  }
}

export interface Body {
  chunks: Buffer[];
  /** False when the body outgrew the buffer: the rest is still in the request, to be piped once. */
  complete: boolean;
}

/**
 * Reads a request body until it ends or passes `limit` bytes; undefined when the caller went away
 * first. (An HTTP/1.1 request says by `complete` whether it ended before it closed.)
 */
export function readUpTo(req: Readable & { complete?: boolean }, limit: number): Promise<Body | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let n = 0;
    const onData = (c: Buffer) => {
      chunks.push(c);
      n += c.length;
      if (n > limit) {
        req.pause();
        cleanup();
        resolve({ chunks, complete: false });
      }
    };
    const onEnd = () => {
      cleanup();
      resolve({ chunks, complete: true });
    };
    const onClose = () => {
      cleanup();
      resolve(req.complete ? { chunks, complete: true } : undefined);
    };
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('close', onClose);
    };
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('close', onClose);
  });
}

export function durationOr(v: string, fallback: number): number {
  try {
    return parseDuration(v);
  } catch {
    return fallback;
  }
}

export function backoff(retry: number): Promise<void> {
  const ms = Math.random() * Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.max(0, retry - 1));
  return new Promise((r) => setTimeout(r, ms));
}
