// `isthmus services register|deregister` (flags or a JSON service definition) and `isthmus catalog ...`.
import { readFileSync } from 'node:fs';
import { intFlag, keyValues, list, str, type OptionSpec } from '../args.js';
import { CliError } from '../cli-error.js';
import type { Command } from '../command.js';
import { CLIENT_OPTIONS, clientFor } from '../http-client.js';

const client = clientFor;

/** Reads a Consul service definition file: `{"service": {...}}`, `{"services": [...]}` or a bare service. */
export function readServiceFile(path: string): Record<string, unknown>[] {
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new CliError(`cannot read service definition ${path}: ${(err as Error).message}`);
  }
  if (!data || typeof data !== 'object' || Array.isArray(data)) throw new CliError(`${path}: a service definition must be a JSON object`);
  const d = data as Record<string, unknown>;
  const pick = (o: Record<string, unknown>, ...keys: string[]) => keys.map((k) => o[k]).find((x) => x !== undefined);
  const one = pick(d, 'service', 'Service');
  const many = pick(d, 'services', 'Services');
  if (one !== undefined) return [one as Record<string, unknown>];
  if (Array.isArray(many)) return many as Record<string, unknown>[];
  return [d];
}

const registerOptions: OptionSpec = {
  ...CLIENT_OPTIONS,
  name: { type: 'string' },
  id: { type: 'string' },
  address: { type: 'string' },
  port: { type: 'string' },
  tag: { type: 'string', multiple: true },
  meta: { type: 'string', multiple: true },
  namespace: { type: 'string' },
  kind: { type: 'string' },
};

export const servicesRegister: Command = {
  name: 'services register',
  summary: 'Register a service instance (flags, or a JSON service definition file)',
  usage: 'isthmus services register [--name NAME --port PORT [--id ID] [--address ADDR] [--tag T]... [--meta K=V]...] [FILE]',
  options: registerOptions,
  async run({ values, positionals }, io) {
    const api = client(values, io.env);
    let defs: Record<string, unknown>[];
    if (positionals.length > 0) {
      if (str(values.name as string)) throw new CliError('give either a service definition file or --name, not both');
      defs = positionals.flatMap(readServiceFile);
    } else {
      const name = str(values.name as string);
      if (!name) throw new CliError(`--name or a service definition file is required\nUsage: ${servicesRegister.usage}`);
      const def: Record<string, unknown> = { Name: name };
      if (str(values.id as string)) def.ID = values.id;
      if (str(values.address as string)) def.Address = values.address;
      const port = intFlag(str(values.port as string), 'port', 0, 65535);
      if (port !== undefined) def.Port = port;
      if (list(values.tag).length) def.Tags = list(values.tag);
      if (list(values.meta).length) def.Meta = keyValues(list(values.meta), 'meta');
      if (str(values.namespace as string)) def.Namespace = values.namespace;
      if (str(values.kind as string)) def.Kind = values.kind;
      defs = [def];
    }
    for (const def of defs) {
      await api.put('/v1/agent/service/register', def);
      io.out(`Registered service: ${String(def.Name ?? def.name ?? def.ID ?? def.id)}`);
    }
    return 0;
  },
};

export const servicesDeregister: Command = {
  name: 'services deregister',
  summary: 'Deregister a service instance by ID (or those of a service definition file)',
  usage: 'isthmus services deregister (--id ID | FILE)',
  options: { ...CLIENT_OPTIONS, id: { type: 'string' } },
  async run({ values, positionals }, io) {
    const api = client(values, io.env);
    const ids = str(values.id as string) ? [values.id as string] : positionals.flatMap(readServiceFile).map((d) => String(d.ID ?? d.id ?? d.Name ?? d.name));
    if (ids.length === 0) throw new CliError(`--id or a service definition file is required\nUsage: ${servicesDeregister.usage}`);
    for (const id of ids) {
      await api.put(`/v1/agent/service/deregister/${encodeURIComponent(id)}`);
      io.out(`Deregistered service: ${id}`);
    }
    return 0;
  },
};

export const catalogServices: Command = {
  name: 'catalog services',
  summary: 'List the services in the catalog',
  usage: 'isthmus catalog services [--tags] [--dc DC]',
  options: { ...CLIENT_OPTIONS, tags: { type: 'boolean' }, dc: { type: 'string' } },
  async run({ values }, io) {
    const api = client(values, io.env);
    const dc = str(values.dc as string);
    const services = await api.get<Record<string, string[]>>(`/v1/catalog/services${dc ? `?dc=${encodeURIComponent(dc)}` : ''}`);
    const names = Object.keys(services).sort();
    const width = Math.max(0, ...names.map((n) => n.length));
    for (const n of names) io.out(values.tags && services[n].length ? `${n.padEnd(width)}  ${services[n].join(',')}` : n);
    return 0;
  },
};

export const catalogDatacenters: Command = {
  name: 'catalog datacenters',
  summary: 'List the known datacenters',
  usage: 'isthmus catalog datacenters',
  options: { ...CLIENT_OPTIONS },
  async run({ values }, io) {
    for (const dc of await client(values, io.env).get<string[]>('/v1/catalog/datacenters')) io.out(dc);
    return 0;
  },
};
