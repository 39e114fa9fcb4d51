// `isthmus intention create|get|delete|list|check|match`, shaped like Consul's.
import { readFileSync } from 'node:fs';
import { str, type Parsed } from '../args.js';
import { CliError } from '../cli-error.js';
import type { Command } from '../command.js';
import { CLIENT_OPTIONS, clientFor } from '../http-client.js';
import { keyValueBlock, table } from '../output.js';
import { printReceipts, WAIT_OPTIONS, waitQuery } from '../receipts.js';

interface Intention {
  ID: string;
  SourceNS?: string;
  SourceName: string;
  DestinationNS?: string;
  DestinationName: string;
  Action?: string;
  Permissions?: unknown[];
  Description?: string;
  Precedence?: number;
  CreateIndex?: number;
  ModifyIndex?: number;
  Meta?: Record<string, string>;
}

const client = clientFor;
const pair = (src: string, dst: string) => `source=${encodeURIComponent(src)}&destination=${encodeURIComponent(dst)}`;
const action = (i: Intention) => i.Action ?? (i.Permissions?.length ? 'L7' : '');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function twoNames(p: Parsed, usage: string): [string, string] {
  if (p.positionals.length !== 2) throw new CliError(`expected a source and a destination, got ${p.positionals.length} argument(s)\nUsage: ${usage}`);
  return [p.positionals[0], p.positionals[1]];
}

export const intentionCreate: Command = {
  name: 'intention create',
  summary: 'Create an intention: allow (default) or deny SRC to call DST',
  usage:
    'isthmus intention create [--allow|--deny] [--replace] [--description TEXT] [--file PERMISSIONS.json] [--wait all [--wait-timeout 10s]] [--dry-run [--window 1h]] SRC DST',
  options: {
    ...CLIENT_OPTIONS,
    'dry-run': { type: 'boolean' },
    window: { type: 'string' },
    ...WAIT_OPTIONS,
    allow: { type: 'boolean' },
    deny: { type: 'boolean' },
    replace: { type: 'boolean' },
    description: { type: 'string' },
    file: { type: 'string' },
    meta: { type: 'string', multiple: true },
  },
  async run(p, io) {
    const [src, dst] = twoNames(p, this.usage);
    if (p.values.allow && p.values.deny) throw new CliError('--allow and --deny exclude each other');
    const body: Record<string, unknown> = {};
    const file = str(p.values.file);
    if (file) {
      let perms: unknown;
      try {
        perms = JSON.parse(readFileSync(file, 'utf8'));
      } catch (err) {
        throw new CliError(`cannot read ${file}: ${(err as Error).message}`);
      }
      body.Permissions = Array.isArray(perms) ? perms : (perms as { Permissions?: unknown }).Permissions;
      if (p.values.allow || p.values.deny) throw new CliError('--file (L7 permissions) and --allow/--deny exclude each other');
    } else {
      body.Action = p.values.deny ? 'deny' : 'allow';
    }
    if (str(p.values.description)) body.Description = p.values.description;
    const api = client(p.values, io.env);
    if (p.values['dry-run']) return dryRun(api, { ...body, SourceName: src, DestinationName: dst }, str(p.values.window) ?? '1h', io);
    // Asked first either way: without --replace an existing one is refused; with it, the answer says it was updated.
    const existing = await api.request('GET', `/v1/connect/intentions/exact?${pair(src, dst)}`).catch(() => undefined);
    if (existing && !p.values.replace) throw new CliError(`an intention ${src} => ${dst} exists already; use --replace to change it`);
    const wait = waitQuery(p.values);
    const started = Date.now();
    const res = await api.request('PUT', `/v1/connect/intentions/exact?${pair(src, dst)}${wait ? `&${wait}` : ''}`, body);
    io.out(`${existing ? 'Updated' : 'Created'}: ${src} => ${dst} (${body.Action ?? 'L7'})`);
    return wait ? printReceipts(res.headers, started, io) : 0;
  },
};

async function fetchOne(p: Parsed, io: { env: NodeJS.ProcessEnv }, usage: string): Promise<Intention> {
  const api = client(p.values, io.env);
  if (p.positionals.length === 1 && UUID.test(p.positionals[0])) {
    return api.get<Intention>(`/v1/connect/intentions/${p.positionals[0]}`);
  }
  const [src, dst] = twoNames(p, usage);
  return api.get<Intention>(`/v1/connect/intentions/exact?${pair(src, dst)}`);
}

export const intentionGet: Command = {
  name: 'intention get',
  summary: 'Show one intention (by SRC DST or by ID)',
  usage: 'isthmus intention get (SRC DST | ID) [--format json]',
  options: { ...CLIENT_OPTIONS, format: { type: 'string' } },
  async run(p, io) {
    const i = await fetchOne(p, io, this.usage);
    if (str(p.values.format) === 'json') {
      io.out(JSON.stringify(i, null, 2));
      return 0;
    }
    for (const l of keyValueBlock([
      ['Source', i.SourceName],
      ['Destination', i.DestinationName],
      ['Action', action(i)],
      ['ID', i.ID],
      ['Description', i.Description ?? ''],
      ['Precedence', String(i.Precedence ?? '')],
      ['Permissions', i.Permissions?.length ? JSON.stringify(i.Permissions) : ''],
      ['Create Index', String(i.CreateIndex ?? '')],
      ['Modify Index', String(i.ModifyIndex ?? '')],
    ]))
      io.out(l);
    return 0;
  },
};

export const intentionDelete: Command = {
  name: 'intention delete',
  summary: 'Delete an intention (by SRC DST or by ID)',
  usage: 'isthmus intention delete (SRC DST | ID)',
  options: { ...CLIENT_OPTIONS },
  async run(p, io) {
    const api = client(p.values, io.env);
    if (p.positionals.length === 1 && UUID.test(p.positionals[0])) await api.delete(`/v1/connect/intentions/${p.positionals[0]}`);
    else {
      const [src, dst] = twoNames(p, this.usage);
      await api.delete(`/v1/connect/intentions/exact?${pair(src, dst)}`);
    }
    io.out('Intention deleted.');
    return 0;
  },
};

export const intentionList: Command = {
  name: 'intention list',
  summary: 'List all intentions',
  usage: 'isthmus intention list [--format json]',
  options: { ...CLIENT_OPTIONS, format: { type: 'string' } },
  async run(p, io) {
    const list = await client(p.values, io.env).get<Intention[]>('/v1/connect/intentions');
    if (str(p.values.format) === 'json') {
      io.out(JSON.stringify(list, null, 2));
      return 0;
    }
    if (list.length === 0) {
      io.out('There are no intentions.');
      return 0;
    }
    for (const l of table(
      ['ID', 'Source', 'Action', 'Destination', 'Precedence'],
      list.map((i) => [i.ID, i.SourceName, action(i), i.DestinationName, String(i.Precedence ?? '')]),
    ))
      io.out(l);
    return 0;
  },
};

export const intentionCheck: Command = {
  name: 'intention check',
  summary: 'Would SRC be allowed to call DST? Prints Allowed (exit 0) or Denied (exit 2)',
  usage: 'isthmus intention check SRC DST',
  options: { ...CLIENT_OPTIONS },
  async run(p, io) {
    const [src, dst] = twoNames(p, this.usage);
    const r = await client(p.values, io.env).get<{ Allowed: boolean }>(`/v1/connect/intentions/check?${pair(src, dst)}`);
    io.out(r.Allowed ? 'Allowed' : 'Denied');
    return r.Allowed ? 0 : 2;
  },
};

export const intentionMatch: Command = {
  name: 'intention match',
  summary: 'List the intentions that apply to a destination (or, with --source, a source), in evaluation order',
  usage: 'isthmus intention match [--source] NAME',
  options: { ...CLIENT_OPTIONS, source: { type: 'boolean' } },
  async run(p, io) {
    if (p.positionals.length !== 1) throw new CliError(`expected one service name\nUsage: ${this.usage}`);
    const name = p.positionals[0];
    const by = p.values.source ? 'source' : 'destination';
    const r = await client(p.values, io.env).get<Record<string, Intention[]>>(`/v1/connect/intentions/match?by=${by}&name=${encodeURIComponent(name)}`);
    for (const i of r[name] ?? []) io.out(`${i.SourceName} => ${i.DestinationName} (${action(i)})`);
    return 0;
  },
};

interface ReplayAnswer {
  Window: string;
  Datacenters: string[];
  Missing: string[];
  Errors: Record<string, string>;
  Truncated: boolean;
  Examined: number;
  Distinct: number;
  HeaderRulesIgnored: boolean;
  Changes: {
    Source: string;
    Destination: string;
    Method?: string;
    Path?: string;
    Before: string;
    After: string;
    BeforeDecidedBy: string;
    Count: number;
    Datacenters: string[];
  }[];
}

async function dryRun(
  api: ReturnType<typeof clientFor>,
  body: Record<string, unknown>,
  window: string,
  io: { out(l: string): void; err(l: string): void },
): Promise<number> {
  const r = await api.post<ReplayAnswer>(`/v1/policy/dry-run?window=${encodeURIComponent(window)}`, body);
  for (const dc of r.Missing) io.err(`Warning: datacenter ${dc} did not answer (${r.Errors[dc]}); its calls were not replayed`);
  io.out(
    `Dry run of ${body.SourceName} => ${body.DestinationName} (${body.Action ?? 'L7'}) against ${r.Examined} calls of the last ${r.Window} in ${r.Datacenters.join(', ')} (nothing was changed):`,
  );
  if (r.Changes.length === 0) io.out('  no observed call would be decided differently');
  for (const ch of r.Changes) {
    const what = ch.Method ? `${ch.Method} ${ch.Path}` : 'connections';
    io.out(
      `  ${ch.Source} -> ${ch.Destination} ${what}: ${ch.Before} -> ${ch.After.toUpperCase()} (${ch.Count} seen, in ${ch.Datacenters.join(', ')}; before: ${ch.BeforeDecidedBy})`,
    );
  }
  if (r.HeaderRulesIgnored) io.err('Note: records keep no headers, so header rules were replayed as not matching.');
  if (r.Truncated) io.err('Note: the window held more calls than were replayed; narrow it with --window.');
  return 0;
}

export const intentionSuggest: Command = {
  name: 'intention suggest',
  summary: 'Propose the least-privilege intentions that the observed allowed calls to a service need',
  usage: 'isthmus intention suggest --service NAME [--window 24h] [-o table|json]',
  options: { ...CLIENT_OPTIONS, service: { type: 'string' }, window: { type: 'string' }, o: { type: 'string', short: 'o' }, output: { type: 'string' } },
  async run(p, io) {
    const service = str(p.values.service) ?? p.positionals[0];
    if (!service) throw new CliError(`--service is required\nUsage: ${this.usage}`);
    const r = await client(p.values, io.env).get<{
      Service: string;
      Window: string;
      Datacenters: string[];
      Missing: string[];
      Errors: Record<string, string>;
      Examined: number;
      Suggestions: {
        SourceName: string;
        DestinationName: string;
        Action?: string;
        Permissions?: { HTTP?: { PathExact?: string; PathPrefix?: string; Methods?: string[] } }[];
        Calls: number;
        Datacenters: string[];
        Existing?: string;
      }[];
    }>(`/v1/policy/suggest?service=${encodeURIComponent(service)}&window=${encodeURIComponent(str(p.values.window) ?? '24h')}`);
    for (const dc of r.Missing) io.err(`Warning: datacenter ${dc} did not answer (${r.Errors[dc]}); its calls are not counted`);
    if ((str(p.values.o) ?? str(p.values.output)) === 'json') {
      io.out(JSON.stringify(r.Suggestions, null, 2));
      return 0;
    }
    io.out(`From ${r.Examined} allowed calls to ${r.Service} in the last ${r.Window} (${r.Datacenters.join(', ')}):`);
    if (r.Suggestions.length === 0) io.out('  no allowed calls seen; nothing to suggest');
    for (const s of r.Suggestions) {
      const rule = s.Permissions?.length
        ? s.Permissions.map((x) => `${(x.HTTP?.Methods ?? []).join('|')} ${x.HTTP?.PathExact ?? `${x.HTTP?.PathPrefix}*`}`).join(', ')
        : 'allow (L4)';
      io.out(
        `  ${s.SourceName} => ${s.DestinationName}: ${rule}   (${s.Calls} calls in ${s.Datacenters.join(', ')})${s.Existing ? `   replaces intention ${s.Existing}` : ''}`,
      );
    }
    return 0;
  },
};
