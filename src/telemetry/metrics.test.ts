import { describe, expect, it } from 'vitest';
import { createRegistry, httpMetrics } from './metrics.js';

describe('HTTP metrics', () => {
  it('exposes requests by status and cumulative duration buckets with the registry labels', async () => {
    const registry = createRegistry({ dc: 'dc1', node: 'n1' }, { processMetrics: false });
    const m = httpMetrics(registry);
    const s = m.series('POST', '/v1/agent/connect/authorize');
    s.observe(200, 0.0004);
    s.observe(200, 0.003);
    s.observe(403, 400);
    expect(m.series('POST', '/v1/agent/connect/authorize')).toBe(s);
    const text = await registry.metrics();
    const line = (name: string, labels: string) => new RegExp(`^${name}\\{${labels},dc="dc1",node="n1"\\} (\\S+)$`, 'm').exec(text)?.[1];
    const sr = 'method="POST",route="/v1/agent/connect/authorize"';
    expect(text).toContain('# TYPE isthmus_http_requests_total counter');
    expect(text).toContain('# TYPE isthmus_http_request_duration_seconds histogram');
    expect(line('isthmus_http_requests_total', `${sr},status="200"`)).toBe('2');
    expect(line('isthmus_http_requests_total', `${sr},status="403"`)).toBe('1');
    expect(line('isthmus_http_request_duration_seconds_bucket', `${sr},le="0.0005"`)).toBe('1');
    expect(line('isthmus_http_request_duration_seconds_bucket', `${sr},le="0.005"`)).toBe('2');
    expect(line('isthmus_http_request_duration_seconds_bucket', `${sr},le="300"`)).toBe('2');
    expect(line('isthmus_http_request_duration_seconds_bucket', `${sr},le="\\+Inf"`)).toBe('3');
    expect(Number(line('isthmus_http_request_duration_seconds_sum', sr))).toBeCloseTo(400.0034);
    expect(line('isthmus_http_request_duration_seconds_count', sr)).toBe('3');
    registry.resetMetrics();
    expect(await registry.metrics()).not.toContain('isthmus_http_requests_total{');
  });

  it('refuses a second set on the same registry', () => {
    const registry = createRegistry({ dc: 'dc1', node: 'n1' }, { processMetrics: false });
    httpMetrics(registry);
    expect(() => httpMetrics(registry)).toThrow(/already been registered/);
  });
});
