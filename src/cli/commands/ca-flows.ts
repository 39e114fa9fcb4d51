// `isthmus ca rotate|roots` and `isthmus flows` (the flow records of one DC).
import { str, intFlag } from '../args.js';
import type { Command, Io } from '../command.js';
import { CliError } from '../cli-error.js';
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
    const r = await client(p.values, io.env).get<{ TrustDomain: string; Roots: { ID: string; Name: string; Active: boolean; NotAfter: string }[] }>(
      '/v1/connect/ca/roots',
    );
    io.out(`Trust domain: ${r.TrustDomain}`);
    for (const l of table(
      ['ID', 'Name', 'Active', 'NotAfter'],
      r.Roots.map((x) => [x.ID, x.Name, String(x.Active), x.NotAfter]),
    ))
      io.out(l);
    return 0;
  },
};

export const flowsCommand: Command = {
  name: 'flows',
  summary: 'Show flow records: who called whom, allowed or denied, by which intention',
  usage:
    'isthmus flows [--follow] [--dc all|DC[,DC]] [--from SVC] [--to SVC] [--service SVC] [--verdict allowed|denied|no_route|error] [--trace ID] [--since 5m] [--limit N] [-o table|json|compact]',
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
    follow: { type: 'boolean', short: 'f' },
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
    const format = str(p.values.o) ?? str(p.values.output) ?? (p.values.follow ? 'compact' : 'table');
    if (!['table', 'json', 'compact'].includes(format)) throw new CliError(`-o must be table, json or compact, not "${format}"`);
    if (p.values.follow && format === 'table') throw new CliError('--follow prints -o compact (default) or -o json');
    if (p.values.follow) return follow(client(p.values, io.env), q, format, io);
    const r = await client(p.values, io.env).get<{ Records: FlowRecord[]; Missing?: string[]; Errors?: Record<string, string> }>(`/v1/flows?${q}`);
    for (const dc of r.Missing ?? []) io.err(`Warning: datacenter ${dc} did not answer (${r.Errors?.[dc] ?? 'no reason given'}); its flows are not shown`);
    if (format === 'compact') {
      for (const f of [...r.Records].reverse()) io.out(compact(f));
      return 0;
    }
    if (format === 'json') {
      io.out(JSON.stringify(r.Records, null, 2));
      return 0;
    }
    for (const l of table(
      ['TIME', 'DC', 'TRACE', 'HOP', 'SOURCE', 'DESTINATION', 'VERDICT', 'INTENTION', 'REASON'],
      r.Records.map((f) => [
        new Date(f.startTime).toISOString().slice(11, 23),
        f.dc,
        f.traceId.slice(0, 12),
        f.hop + (f.requestIndex ? `#${f.requestIndex}` : ''),
        f.source.service || '-',
        f.destination.service,
        f.verdict,
        f.intentionId || '-',
        f.routing ? `${f.reason} (${routingText(f.routing)})` : f.reason,
      ]),
    ))
      io.out(l);
    return 0;
  },
};

function compact(f: FlowRecord): string {
  const who = (x: FlowRecord['source']) => (x.service ? `${x.service}${x.dc ? `@${x.dc}` : ''}` : '?');
  const http = f.http ? ` ${f.http.method} ${f.http.path} ${f.http.status}` : '';
  const by = f.intentionId ? ` by ${f.intentionId}${f.intentionDc ? ` (written in ${f.intentionDc})` : ''}` : '';
  const routing = f.routing ? ` (${routingText(f.routing)})` : '';
  return `${new Date(f.startTime).toISOString().slice(11, 23)} ${f.dc} ${f.hop.padEnd(15)} ${who(f.source)} -> ${who(f.destination)} ${f.verdict.toUpperCase()}${http}: ${f.reason}${by}${routing} [${f.traceId.slice(0, 12)}]`;
}

/** Where a client sidecar sent a call along the discovery chain, and why. */
export function routingText(g: NonNullable<FlowRecord['routing']>): string {
  const by = [g.route, g.split].filter(Boolean).join(' ');
  const retries = g.retries ? `, ${g.retries} ${g.retries === 1 ? 'retry' : 'retries'}` : '';
  return `to ${g.target}${by ? ` by ${by}` : ''}${retries}${g.failover ? `, failed over: ${g.failover}` : ''}`;
}

/** Follows /v1/flows/stream (server-sent events) until interrupted. */
async function follow(api: ReturnType<typeof clientFor>, q: URLSearchParams, format: string, io: Io): Promise<number> {
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  let res: Response;
  try {
    res = await fetch(`${api.base}/v1/flows/stream?${q}`, { headers: api.headers(), signal: controller.signal });
  } catch (err) {
    throw new CliError(`cannot reach the Isthmus API at ${api.base}: ${(err as Error).message}`);
  }
  if (!res.ok || !res.body) throw new CliError(`the server refused to stream flows (HTTP ${res.status}): ${(await res.text()).slice(0, 300)}`);
  io.err(`Following flows${q.get('dc') ? ` of ${q.get('dc') === 'all' ? 'every datacenter' : q.get('dc')}` : ''} (Ctrl-C stops)`);
  const decoder = new TextDecoder();
  let buf = '';
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += decoder.decode(chunk, { stream: true });
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
        const data = block
          .split('\n')
          .filter((l) => l.startsWith('data:'))
          .map((l) => l.slice(5).trimStart())
          .join('\n');
        if (!data) continue;
        if (event === 'missing') {
          const m = JSON.parse(data) as { Missing: string[]; Errors: Record<string, string> };
          for (const dc of m.Missing) io.err(`Warning: datacenter ${dc} does not answer (${m.Errors[dc]}); its flows are not shown until it does`);
          continue;
        }
        const f = JSON.parse(data) as FlowRecord;
        io.out(format === 'json' ? JSON.stringify(f) : compact(f));
      }
    }
  } catch (err) {
    if (!controller.signal.aborted) throw new CliError(`the flow stream broke: ${(err as Error).message}`);
  }
  return 0;
}

export const flowsTrace: Command = {
  name: 'flows trace',
  summary: 'Draw the hops of one connection in order across every DC: who, where, when, and what decided',
  usage: 'isthmus flows trace TRACE_ID [--dc all|DC] [-o table|json]',
  options: { ...CLIENT_OPTIONS, dc: { type: 'string' }, o: { type: 'string', short: 'o' }, output: { type: 'string' } },
  async run(p, io) {
    const id = p.positionals[0];
    if (!id || !/^[0-9a-f]{32}$/.test(id)) throw new CliError(`expected a trace ID (32 hex characters)\nUsage: ${this.usage}`);
    const r = await client(p.values, io.env).get<{ Records: FlowRecord[]; Missing?: string[]; Errors?: Record<string, string> }>(
      `/v1/flows?trace=${id}&dc=${encodeURIComponent(str(p.values.dc) ?? 'all')}`,
    );
    for (const dc of r.Missing ?? []) io.err(`Warning: datacenter ${dc} did not answer (${r.Errors?.[dc]}); its hops are missing`);
    if ((str(p.values.o) ?? str(p.values.output)) === 'json') {
      io.out(JSON.stringify(r.Records, null, 2));
      return 0;
    }
    if (r.Records.length === 0) {
      io.err(`No records of trace ${id}.`);
      return 1;
    }
    const order = ['client-sidecar', 'gateway-egress', 'gateway-ingress', 'server-sidecar'];
    const conn = r.Records.filter((f) => f.requestIndex === 0).sort((a, b) => order.indexOf(a.hop) - order.indexOf(b.hop) || a.startTime - b.startTime);
    const t0 = Math.min(...r.Records.map((f) => f.startTime));
    const t1 = Math.max(...r.Records.map((f) => f.startTime + f.durationMs));
    const span = Math.max(1, t1 - t0);
    const first = conn[0] ?? r.Records[0];
    io.out(`Trace ${id}: ${first.source.service || '?'}@${first.source.dc || '?'} -> ${first.destination.service}@${first.destination.dc || '?'}, ${span} ms`);
    const decider = conn.find((f) => f.verdict !== 'allowed');
    io.out(
      decider
        ? `Verdict: ${decider.verdict.toUpperCase()} at ${decider.hop} in ${decider.dc}: ${decider.reason}${decider.intentionId ? ` (intention ${decider.intentionId}, written in ${decider.intentionDc || '?'}, index ${decider.intentionIndex})` : ''}`
        : 'Verdict: ALLOWED at every hop',
    );
    const W = 40;
    for (const f of conn) {
      const a = Math.floor(((f.startTime - t0) / span) * W);
      const b = Math.max(a + 1, Math.ceil(((f.startTime + f.durationMs - t0) / span) * W));
      const bar = ' '.repeat(a) + '#'.repeat(Math.min(W, b) - a) + ' '.repeat(Math.max(0, W - Math.min(W, b)));
      io.out(
        `  ${f.dc.padEnd(5)} ${f.hop.padEnd(15)} |${bar}| +${f.startTime - t0}ms ${f.durationMs}ms ${f.verdict}${f.intentionId ? ` by ${f.intentionId}` : ''}  ${f.reason}`,
      );
    }
    const requests = r.Records.filter((f) => f.requestIndex > 0).sort((a, b) => a.requestIndex - b.requestIndex || order.indexOf(a.hop) - order.indexOf(b.hop));
    for (const f of requests)
      io.out(
        `  request #${f.requestIndex} ${f.http?.method ?? ''} ${f.http?.path ?? ''} -> ${f.http?.status ?? ''} at ${f.hop} (${f.dc}): ${f.verdict}, ${f.reason}${f.routing ? ` (${routingText(f.routing)})` : ''}`,
      );
    return 0;
  },
};
