import { describe, expect, it } from 'vitest';
import type { FlowRecord } from './flow-record.js';
import { stitchTrace, stitchTraces, ZERO_TRACE_ID } from './stitch.js';
import { flowRecord, identity, TD, traceId } from './testing/records.js';

const T = 1_700_000_000_000;
const TRACE = '5f0c1a2b3c4d5e6f708192a3b4c5d6e7';
const SNI = `api.default.dc2.internal.${TD}`;
const NOBODY = { spiffeId: '', service: '', namespace: '', dc: '' };

/** What the four hops write for web (dc1) calling api (dc2) through both mesh gateways. */
function crossDc(trace = TRACE): Record<'client' | 'egress' | 'ingress' | 'server', FlowRecord> {
  return {
    client: flowRecord({
      id: `${trace}-c`,
      traceId: trace,
      hop: 'client-sidecar',
      dc: 'dc1',
      reporter: 'web-1-sidecar',
      source: identity('web', 'dc1'),
      destination: identity('api', 'dc2'),
      sni: SNI,
      verdict: 'allowed',
      reason: 'connected',
      startTime: T,
      durationMs: 130,
      bytesIn: 5120,
      bytesOut: 830,
    }),
    egress: flowRecord({
      id: `${trace}-e`,
      traceId: trace,
      hop: 'gateway-egress',
      dc: 'dc1',
      reporter: 'mgw-dc1-a',
      source: NOBODY,
      destination: { ...identity('api', 'dc2', false) },
      sni: SNI,
      verdict: 'allowed',
      reason: 'routed to 127.0.2.1:8443',
      startTime: T + 2,
      durationMs: 126,
      bytesIn: 830,
      bytesOut: 5120,
    }),
    // dc2's clock runs 40 ms behind dc1's.
    ingress: flowRecord({
      id: `${trace}-i`,
      traceId: trace,
      hop: 'gateway-ingress',
      dc: 'dc2',
      reporter: 'mgw-dc2-a',
      source: NOBODY,
      destination: { ...identity('api', 'dc2', false) },
      sni: SNI,
      verdict: 'allowed',
      reason: 'routed to 127.0.2.10:21000',
      startTime: T - 35,
      durationMs: 120,
      bytesIn: 830,
      bytesOut: 5120,
    }),
    server: flowRecord({
      id: `${trace}-s`,
      traceId: trace,
      hop: 'server-sidecar',
      dc: 'dc2',
      reporter: 'api-1-sidecar',
      source: identity('web', 'dc1'),
      destination: identity('api', 'dc2'),
      sni: '',
      verdict: 'allowed',
      reason: 'connection accepted; requests checked against L7 permissions',
      intentionId: 'ixn-web-api',
      intentionDc: 'dc1',
      intentionIndex: 42,
      startTime: T - 33,
      durationMs: 115,
      bytesIn: 830,
      bytesOut: 5120,
    }),
  };
}

function request(n: number, p: Partial<FlowRecord> & { method: string; path: string; status: number }): FlowRecord {
  return flowRecord({
    id: `${TRACE}-r${n}`,
    traceId: TRACE,
    requestIndex: n,
    hop: 'server-sidecar',
    dc: 'dc2',
    reporter: 'api-1-sidecar',
    source: identity('web', 'dc1'),
    destination: identity('api', 'dc2'),
    verdict: p.verdict ?? 'allowed',
    reason: p.reason ?? 'allowed by intention web => api',
    intentionId: 'ixn-web-api',
    intentionDc: 'dc1',
    intentionIndex: 42,
    startTime: p.startTime ?? T - 30 + n * 10,
    durationMs: 8,
    http: { method: p.method, path: p.path, status: p.status, traceparent: `00-${TRACE}-00f067aa0ba902b${n}-01` },
  });
}

describe('stitchTrace', () => {
  it('joins the four hops of a cross-DC connection, recorded in two DCs and merged twice, in path order', () => {
    const h = crossDc();
    const r1 = request(1, { method: 'GET', path: '/orders', status: 200 });
    const r2 = request(2, {
      method: 'DELETE',
      path: '/orders/7',
      status: 403,
      verdict: 'denied',
      reason: 'denied by intention web => api: DELETE /orders/* not permitted',
    });
    // As a federated query returns them: each DC's answer, newest first, with dc2's twice.
    const dc1 = [h.egress, h.client];
    const dc2 = [r2, h.server, r1, h.ingress];
    const t = stitchTrace([...dc2, ...dc1, ...dc2]);

    expect(t.traceId).toBe(TRACE);
    expect(t.records).toBe(6);
    expect(t.hops.map((x) => [x.hop, x.dc, x.reporter])).toEqual([
      ['client-sidecar', 'dc1', 'web-1-sidecar'],
      ['gateway-egress', 'dc1', 'mgw-dc1-a'],
      ['gateway-ingress', 'dc2', 'mgw-dc2-a'],
      ['server-sidecar', 'dc2', 'api-1-sidecar'],
    ]);
    expect(t.hops[3]).toEqual({
      recordId: `${TRACE}-s`,
      hop: 'server-sidecar',
      dc: 'dc2',
      reporter: 'api-1-sidecar',
      sni: '',
      startTime: T - 33,
      durationMs: 115,
      verdict: 'allowed',
      reason: 'connection accepted; requests checked against L7 permissions',
      intentionId: 'ixn-web-api',
      intentionDc: 'dc1',
      intentionIndex: 42,
      bytesIn: 830,
      bytesOut: 5120,
    });
    expect(t.verdict).toBe('allowed');
    expect(t.decidedBy).toMatchObject({ hop: 'server-sidecar', dc: 'dc2', intentionId: 'ixn-web-api', intentionDc: 'dc1', intentionIndex: 42 });
    expect(t.missingHops).toEqual([]);
    expect(t.dcs).toEqual(['dc1', 'dc2']);
    expect(t.sni).toBe(SNI);
    expect(t.source).toEqual(identity('web', 'dc1'));
    expect(t.destination).toEqual(identity('api', 'dc2'));
    // Span over both clocks: the earliest start (dc2's ingress) to the latest end (dc1's client).
    expect([t.startTime, t.endTime, t.durationMs]).toEqual([T - 35, T + 130, 165]);

    expect(t.requests.map((r) => [r.requestIndex, r.method, r.path, r.status, r.verdict])).toEqual([
      [1, 'GET', '/orders', 200, 'allowed'],
      [2, 'DELETE', '/orders/7', 403, 'denied'],
    ]);
    expect(t.requests[1].decidedBy).toMatchObject({ hop: 'server-sidecar', reason: expect.stringContaining('not permitted') });
    expect(t.requests[1].traceparent).toBe(`00-${TRACE}-00f067aa0ba902b2-01`);
    expect(t.requests[0].hops.map((x) => x.hop)).toEqual(['server-sidecar']);
  });

  it('blames the sidecar that denied, not the client that saw its handshake closed', () => {
    const h = crossDc();
    const client = { ...h.client, verdict: 'error' as const, reason: 'connection closed during handshake (refused by the destination)', durationMs: 9 };
    const server = { ...h.server, verdict: 'denied' as const, reason: 'denied by intention web => api', durationMs: 3 };
    const t = stitchTrace([server, h.ingress, h.egress, client]);
    expect(t.verdict).toBe('denied');
    expect(t.decidedBy).toMatchObject({ hop: 'server-sidecar', dc: 'dc2', intentionId: 'ixn-web-api', intentionDc: 'dc1' });
    expect(t.hops.map((x) => x.verdict)).toEqual(['error', 'allowed', 'allowed', 'denied']);
  });

  it('stops at the ingress gateway that found no route, and expects nothing past it', () => {
    const h = crossDc();
    const ingress = { ...h.ingress, verdict: 'no_route' as const, reason: 'no healthy instance of api in dc2' };
    const egress = { ...h.egress, verdict: 'allowed' as const };
    const t = stitchTrace([h.client, egress, ingress]);
    expect(t.verdict).toBe('no_route');
    expect(t.decidedBy).toMatchObject({ hop: 'gateway-ingress', dc: 'dc2', reason: 'no healthy instance of api in dc2' });
    expect(t.missingHops).toEqual([]);
  });

  it('lets the deepest error decide when no hop refused, and names the hops that did not report', () => {
    const h = crossDc();
    const egress = { ...h.egress, verdict: 'error' as const, reason: 'no upstream reachable for api.default.dc2: 127.0.2.1:8443 ECONNREFUSED' };
    const client = { ...h.client, verdict: 'error' as const, reason: 'connection closed during handshake (refused by the destination)' };
    const t = stitchTrace([egress, client]);
    expect(t.verdict).toBe('error');
    expect(t.decidedBy).toMatchObject({ hop: 'gateway-egress', reason: expect.stringContaining('ECONNREFUSED') });
    expect(t.missingHops).toEqual([]);

    const partial = stitchTrace([h.server, h.client]);
    expect(partial.verdict).toBe('allowed');
    expect(partial.missingHops).toEqual(['gateway-egress', 'gateway-ingress']);
    expect(partial.dcs).toEqual(['dc1', 'dc2']);
  });

  it('expects only the two sidecars within one DC', () => {
    const trace = traceId(7);
    const client = flowRecord({ traceId: trace, hop: 'client-sidecar', dc: 'dc1', from: 'web', to: 'api', reason: 'connected', startTime: T });
    const server = flowRecord({ traceId: trace, hop: 'server-sidecar', dc: 'dc1', from: 'web', to: 'api', intentionId: 'ixn-1', startTime: T + 1 });
    const t = stitchTrace([server, client]);
    expect(t.hops.map((x) => x.hop)).toEqual(['client-sidecar', 'server-sidecar']);
    expect(t.missingHops).toEqual([]);
    expect(t.dcs).toEqual(['dc1']);
    expect(t.requests).toEqual([]);
    expect(stitchTrace([server]).missingHops).toEqual(['client-sidecar']);
  });

  it('refuses no records and records of two traces, naming the record', () => {
    expect(() => stitchTrace([])).toThrow(expect.objectContaining({ code: 'ISTHMUS_ERR_INVALID' }));
    const h = crossDc();
    const other = { ...h.server, traceId: traceId(9) };
    try {
      stitchTrace([h.client, h.egress, other]);
      expect.unreachable();
    } catch (err) {
      expect(err).toMatchObject({ code: 'ISTHMUS_ERR_INVALID', violations: [{ Field: 'records[2].traceId' }] });
    }
  });
});

describe('stitchTraces', () => {
  it('groups by trace, newest first, and leaves out hops that never saw a ClientHello', () => {
    const older = crossDc(traceId(1));
    const newer = crossDc(traceId(2));
    const shifted = Object.values(newer).map((r) => ({ ...r, startTime: r.startTime + 60_000 }));
    const zero = flowRecord({ traceId: ZERO_TRACE_ID, hop: 'gateway-ingress', verdict: 'error', reason: 'bad ClientHello: not TLS' });
    const traces = stitchTraces([...Object.values(older), zero, ...shifted]);
    expect(traces.map((t) => [t.traceId, t.hops.length])).toEqual([
      [traceId(2), 4],
      [traceId(1), 4],
    ]);
  });
});
