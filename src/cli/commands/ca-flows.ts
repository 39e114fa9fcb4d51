// `isthmus ca rotate|roots` and `isthmus flows` (the flow records of one DC).
import { str, intFlag } from '../args.js';
import type { Command } from '../command.js';
import { CLIENT_OPTIONS, clientFor } from '../http-client.js';
import { table } from '../output.js';
import type { FlowRecord } from '../../dataflow/index.js';

const client = clientFor;

export const caRotate: Command = {
  name: 'ca rotate',
  summary: 'Rotate the root CA (the new root is cross-signed by the old one; both stay trusted until old leaves expire)',
  usage: 'isthmus ca rotate',
  options: { ...CLIENT_OPTIONS },
  async run(p, io) {
    const r = await client(p.values, io.env).post<{ ActiveRootID: string; Name: string }>('/v1/connect/ca/rotate');
    io.out(`Rotated: the active root is now ${r.Name} (${r.ActiveRootID})`);
    return 0;
  },
};

export const caRoots: Command = {
  name: 'ca roots',
  summary: 'List the trusted roots',
  usage: 'isthmus ca roots',
  options: { ...CLIENT_OPTIONS },
  async run(p, io) {
    const r = await client(p.values, io.env).get<{ TrustDomain: string; Roots: { ID: string; Name: string; Active: boolean; NotAfter: string }[] }>('/v1/connect/ca/roots');
    io.out(`Trust domain: ${r.TrustDomain}`);
    for (const l of table(['ID', 'Name', 'Active', 'NotAfter'], r.Roots.map((x) => [x.ID, x.Name, String(x.Active), x.NotAfter]))) io.out(l);
    return 0;
  },
};

export const flowsCommand: Command = {
  name: 'flows',
  summary: 'Show flow records: who called whom, allowed or denied, by which intention',
  usage: 'isthmus flows [--dc all|DC[,DC]] [--from SVC] [--to SVC] [--service SVC] [--verdict allowed|denied|no_route|error] [--trace ID] [--since 5m] [--limit N] [-o table|json]',
  options: {
    ...CLIENT_OPTIONS,
    from: { type: 'string' },
    to: { type: 'string' },
    service: { type: 'string' },
    verdict: { type: 'string' },
    trace: { type: 'string' },
    since: { type: 'string' },
    limit: { type: 'string' },
    dc: { type: 'string' },
    o: { type: 'string', short: 'o' },
    output: { type: 'string' },
  },
  async run(p, io) {
    const q = new URLSearchParams();
    for (const k of ['from', 'to', 'service', 'verdict', 'trace', 'since', 'dc'] as const) {
      const v = str(p.values[k]);
      if (v) q.set(k, v);
    }
    const limit = intFlag(str(p.values.limit), 'limit', 1, 10_000);
    if (limit) q.set('limit', String(limit));
    const r = await client(p.values, io.env).get<{ Records: FlowRecord[]; Missing?: string[]; Errors?: Record<string, string> }>(`/v1/flows?${q}`);
    for (const dc of r.Missing ?? []) io.err(`Warning: datacenter ${dc} did not answer (${r.Errors?.[dc] ?? 'no reason given'}); its flows are not shown`);
    const format = str(p.values.o) ?? str(p.values.output) ?? 'table';
    if (format === 'json') {
      io.out(JSON.stringify(r.Records, null, 2));
      return 0;
    }
    for (const l of table(
      ['TIME', 'DC', 'TRACE', 'HOP', 'SOURCE', 'DESTINATION', 'VERDICT', 'INTENTION', 'REASON'],
      r.Records.map((f) => [new Date(f.startTime).toISOString().slice(11, 23), f.dc, f.traceId.slice(0, 12), f.hop + (f.requestIndex ? `#${f.requestIndex}` : ''), f.source.service || '-', f.destination.service, f.verdict, f.intentionId || '-', f.reason]),
    ))
      io.out(l);
    return 0;
  },
};
