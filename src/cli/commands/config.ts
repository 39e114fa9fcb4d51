// `isthmus config write|read|list|delete`, as Consul's `consul config` commands: same flags
// (`-kind`, `-name`, `-cas -modify-index`), same lines printed, against the same /v1/config API.
import { intFlag, str, type Parsed } from '../args.js';
import { CliError } from '../cli-error.js';
import type { Command } from '../command.js';
import { CLIENT_OPTIONS, clientFor } from '../http-client.js';
import { printReceipts, WAIT_OPTIONS, waitQuery } from '../receipts.js';

const CAS_OPTIONS = {
  cas: { type: 'boolean' },
  'modify-index': { type: 'string' },
} as const;

const entryPath = (kind: string, name: string) => `/v1/config/${encodeURIComponent(kind)}/${encodeURIComponent(name)}`;
const query = (parts: string[]) => (parts.some(Boolean) ? `?${parts.filter(Boolean).join('&')}` : '');

function required(p: Parsed, flag: 'kind' | 'name', usage: string): string {
  const v = str(p.values[flag]);
  if (!v) throw new CliError(`Must specify the -${flag} parameter\nUsage: ${usage}`);
  return v;
}

/** `-cas [-modify-index N]` as the `cas=N` query (Consul: index 0 means "only if it does not exist"). */
function casQuery(p: Parsed): string {
  const index = intFlag(str(p.values['modify-index']), 'modify-index', 0, Number.MAX_SAFE_INTEGER);
  if (!p.values.cas) {
    if (index !== undefined) throw new CliError('-modify-index is used with -cas');
    return '';
  }
  return `cas=${index ?? 0}`;
}

export const configWrite: Command = {
  name: 'config write',
  summary: 'Create or update a config entry from an HCL or JSON file (- for standard input)',
  usage: 'isthmus config write [-cas [-modify-index N]] [--wait all [--wait-timeout 10s]] FILE',
  options: { ...CLIENT_OPTIONS, ...CAS_OPTIONS, ...WAIT_OPTIONS },
  async run(p, io) {
    if (p.positionals.length !== 1)
      throw new CliError(`Must provide exactly one positional argument to specify the config entry to write\nUsage: ${this.usage}`);
    const cas = casQuery(p);
    const wait = waitQuery(p.values);
    const { readConfigEntryFile } = await import('../config-entry-file.js');
    const entry = await readConfigEntryFile(p.positionals[0]);
    const what = `${entry.Kind}/${entry.Name}`;
    const started = Date.now();
    const res = await clientFor(p.values, io.env)
      .request<boolean>('PUT', `/v1/config${query([cas, wait])}`, entry)
      .catch((err: Error) => {
        throw new CliError(`writing config entry ${what}: ${err.message}`);
      });
    if (res.body === false) {
      io.err(`Config entry not updated: ${what}`);
      return 1;
    }
    io.out(`Config entry written: ${what}`);
    return wait ? printReceipts(res.headers, started, io) : 0;
  },
};

export const configRead: Command = {
  name: 'config read',
  summary: 'Show one config entry as JSON',
  usage: 'isthmus config read -kind KIND -name NAME',
  options: { ...CLIENT_OPTIONS, kind: { type: 'string' }, name: { type: 'string' } },
  async run(p, io) {
    const kind = required(p, 'kind', this.usage);
    const name = required(p, 'name', this.usage);
    const entry = await clientFor(p.values, io.env)
      .get(entryPath(kind, name))
      .catch((err: Error) => {
        throw new CliError(`reading config entry "${kind}" / "${name}": ${err.message}`);
      });
    io.out(JSON.stringify(entry, null, 4));
    return 0;
  },
};

export const configList: Command = {
  name: 'config list',
  summary: 'List the names of the config entries of one kind',
  usage: 'isthmus config list -kind KIND [-filter EXPR]',
  options: { ...CLIENT_OPTIONS, kind: { type: 'string' }, filter: { type: 'string' } },
  async run(p, io) {
    const kind = required(p, 'kind', this.usage);
    const filter = str(p.values.filter);
    const entries = await clientFor(p.values, io.env)
      .get<{ Name: string }[]>(`/v1/config/${encodeURIComponent(kind)}${filter ? `?filter=${encodeURIComponent(filter)}` : ''}`)
      .catch((err: Error) => {
        throw new CliError(`listing config entries for kind "${kind}": ${err.message}`);
      });
    for (const e of entries ?? []) io.out(e.Name);
    return 0;
  },
};

export const configDelete: Command = {
  name: 'config delete',
  summary: 'Delete a config entry (by -kind and -name, or as named in -filename)',
  usage: 'isthmus config delete (-kind KIND -name NAME | -filename FILE) [-cas -modify-index N] [--wait all [--wait-timeout 10s]]',
  options: { ...CLIENT_OPTIONS, ...CAS_OPTIONS, ...WAIT_OPTIONS, kind: { type: 'string' }, name: { type: 'string' }, filename: { type: 'string' } },
  async run(p, io) {
    let kind: string;
    let name: string;
    const filename = str(p.values.filename);
    if (filename) {
      if (str(p.values.kind) || str(p.values.name)) throw new CliError(`-filename and -kind/-name exclude each other\nUsage: ${this.usage}`);
      const { readConfigEntryFile } = await import('../config-entry-file.js');
      ({ Kind: kind, Name: name } = await readConfigEntryFile(filename));
    } else {
      kind = required(p, 'kind', this.usage);
      name = required(p, 'name', this.usage);
    }
    const cas = casQuery(p);
    const wait = waitQuery(p.values);
    const what = `${kind}/${name}`;
    const started = Date.now();
    const res = await clientFor(p.values, io.env)
      .request<boolean | { Deleted?: boolean }>('DELETE', `${entryPath(kind, name)}${query([cas, wait])}`)
      .catch((err: Error) => {
        throw new CliError(`deleting config entry ${what}: ${err.message}`);
      });
    // With -cas Consul answers {"Deleted": bool} (some versions a bare bool); without it, success is the answer.
    const deleted = !cas || res.body === true || (typeof res.body === 'object' && res.body?.Deleted === true);
    if (!deleted) {
      io.err(`Config entry not deleted: ${what}`);
      return 1;
    }
    io.out(`Config entry deleted: ${what}`);
    return wait ? printReceipts(res.headers, started, io) : 0;
  },
};
