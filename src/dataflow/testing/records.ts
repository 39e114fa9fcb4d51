// Flow records for tests: what the four hops of a connection write, with sensible defaults.
import { serviceSpiffeId } from '../../core/names.js';
import type { FlowHop, FlowIdentity, FlowRecord } from '../flow-record.js';

let counter = 0;

export const TD = 'c0ffee00-0000-4000-8000-000000000001.isthmus';

export function identity(service: string, dc = 'dc1', verified = true): FlowIdentity {
  return {
    spiffeId: verified && service ? serviceSpiffeId({ trustDomain: TD, namespace: 'default', dc, service }) : '',
    service,
    namespace: service ? 'default' : '',
    dc,
  };
}

/** A 32-hex trace id made from a number (distinct numbers, distinct ids). */
export function traceId(n: number): string {
  return n.toString(16).padStart(32, '0');
}

export interface RecordSpec extends Partial<Omit<FlowRecord, 'source' | 'destination'>> {
  from?: string;
  to?: string;
  source?: FlowIdentity;
  destination?: FlowIdentity;
}

export function flowRecord(p: RecordSpec = {}): FlowRecord {
  counter++;
  const dc = p.dc ?? 'dc1';
  const hop: FlowHop = p.hop ?? 'server-sidecar';
  return {
    id: p.id ?? `rec-${counter}`,
    traceId: p.traceId ?? traceId(1_000_000 + counter),
    requestIndex: p.requestIndex ?? 0,
    hop,
    dc,
    reporter: p.reporter ?? `${hop === 'server-sidecar' ? (p.to ?? 'api') : (p.from ?? 'web')}-sidecar-1`,
    source: p.source ?? identity(p.from ?? 'web', dc),
    destination: p.destination ?? identity(p.to ?? 'api', dc),
    sni: p.sni ?? '',
    verdict: p.verdict ?? 'allowed',
    reason: p.reason ?? 'allowed by intention web => api',
    intentionId: p.intentionId ?? '',
    intentionDc: p.intentionDc ?? '',
    intentionIndex: p.intentionIndex ?? 0,
    startTime: p.startTime ?? 1_700_000_000_000 + counter,
    durationMs: p.durationMs ?? 5,
    bytesIn: p.bytesIn ?? 100,
    bytesOut: p.bytesOut ?? 200,
    ...(p.http ? { http: p.http } : {}),
  };
}
