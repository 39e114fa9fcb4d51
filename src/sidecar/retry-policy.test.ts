// How a request moves through its plan of attempts: past endpoints that refused, through the
// failover order, and round one target's endpoints on a retry.
import { describe, expect, it } from 'vitest';
import { AttemptCursor, requestTimeoutOf, retriable, retryPolicyOf } from './retry-policy.js';
import type { SidecarTarget } from './sidecar-config.js';
import type { Attempt } from './upstream-state.js';

const target = (id: string, n: number): SidecarTarget => ({
  id,
  datacenter: 'dc1',
  healthy: true,
  healthAgeMs: 0,
  endpoints: Array.from({ length: n }, (_, i) => ({ host: '127.0.0.1', port: 1000 + i, sni: `${id}.sni`, spiffeId: 'spiffe://x' })),
});
const attemptsOf = (...ts: SidecarTarget[]): Attempt[] => ts.flatMap((t) => t.endpoints.map((endpoint) => ({ target: t, endpoint })));

describe('AttemptCursor', () => {
  it('walks the plan once through on connect failures, naming each move to another target', () => {
    const c = new AttemptCursor(attemptsOf(target('a', 2), target('b', 1)), '', 0, true);
    expect(c.next('a0 refused', 'connect')).toBe(true);
    expect([c.k, c.failover]).toEqual([1, '']);
    expect(c.next('a1 refused', 'connect')).toBe(true);
    expect([c.k, c.current.target.id, c.failover, c.retries, c.last]).toEqual([2, 'b', 'a1 refused', 2, 'a1 refused']);
    expect(c.next('b0 refused', 'connect')).toBe(false);
  });

  it('retries within the target it went to, as many times as the policy says', () => {
    const c = new AttemptCursor(attemptsOf(target('a', 2), target('b', 1)), 'primary unhealthy', 3, true);
    expect([c.next('503', 'policy'), c.k]).toEqual([true, 1]);
    expect([c.next('503', 'policy'), c.k]).toEqual([true, 0]);
    expect([c.next('503', 'policy'), c.k]).toEqual([true, 1]);
    expect(c.next('503', 'policy')).toBe(false);
    expect([c.retries, c.failover]).toEqual([3, 'primary unhealthy']);
  });

  it('bounds stale retries apart from the policy, and never moves a body not held whole', () => {
    const c = new AttemptCursor(attemptsOf(target('a', 1)), '', 0, true);
    expect([c.next('goaway', 'stale'), c.next('goaway', 'stale'), c.next('goaway', 'stale')]).toEqual([true, true, false]);
    const streamed = new AttemptCursor(attemptsOf(target('a', 2)), '', 5, false);
    expect([streamed.next('refused', 'connect'), streamed.next('503', 'policy')]).toEqual([false, false]);
  });
});

describe('requestTimeoutOf', () => {
  it("takes the route's, else the resolver's, else Envoy's 15 s", () => {
    const resolver = (RequestTimeout?: string) => ({
      Type: 'resolver' as const,
      Name: 'r',
      Resolver: { Default: true, ConnectTimeout: '5s', Target: 't', RequestTimeout },
    });
    expect(requestTimeoutOf(undefined)).toEqual({ ms: 15_000, source: 'default' });
    expect(requestTimeoutOf({ resolver: resolver('2s'), requestHeaders: [], responseHeaders: [] })).toEqual({ ms: 2000, source: 'resolver RequestTimeout' });
    expect(
      requestTimeoutOf({
        resolver: resolver('2s'),
        routeIndex: 3,
        route: { Destination: { RequestTimeout: '250ms' } },
        requestHeaders: [],
        responseHeaders: [],
      }),
    ).toEqual({ ms: 250, source: 'Routes[3] RequestTimeout' });
  });
});

describe("retry conditions for HTTP/2 and gRPC (Envoy's retry_on)", () => {
  it('retries a refused stream on refused-stream, reset or 5xx, and a gRPC status only on its own condition', () => {
    const on = (...c: string[]) => retryPolicyOf({ RetryOn: c })!;
    expect(['refused-stream', 'reset', '5xx', 'gateway-error'].map((c) => retriable(on(c), { kind: 'refused' }))).toEqual([true, true, true, true]);
    expect(retriable(on('connect-failure'), { kind: 'refused' })).toBe(false);
    const grpcOn = on('cancelled', 'deadline-exceeded', 'internal', 'resource-exhausted', 'unavailable');
    expect([1, 4, 8, 13, 14].map((grpcStatus) => retriable(grpcOn, { kind: 'grpc', grpcStatus }))).toEqual([true, true, true, true, true]);
    expect([0, 2, 5, 7, 12].some((grpcStatus) => retriable(grpcOn, { kind: 'grpc', grpcStatus }))).toBe(false);
    expect(retriable(on('unavailable'), { kind: 'grpc', grpcStatus: 13 })).toBe(false);
    // (The HTTP conditions say nothing of a gRPC status: a trailers-only UNAVAILABLE is HTTP 200.)
    expect(retriable(on('5xx'), { kind: 'grpc', grpcStatus: 14 })).toBe(false);
  });
});
