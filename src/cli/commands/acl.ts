// `isthmus acl bootstrap`, `acl policy create|list`, `acl token create|list`.
import { readFileSync } from 'node:fs';
import { list, str } from '../args.js';
import { CliError } from '../cli-error.js';
import type { Command } from '../command.js';
import { CLIENT_OPTIONS, clientFor } from '../http-client.js';
import { keyValueBlock, table } from '../output.js';

interface Token {
  AccessorID: string;
  SecretID?: string;
  Description?: string;
  Policies?: { ID: string; Name: string }[];
  Local?: boolean;
  CreateTime?: string;
}
interface Policy {
  ID: string;
  Name: string;
  Description?: string;
  Rules?: string;
}

const client = clientFor;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function printToken(t: Token, out: (l: string) => void) {
  for (const l of keyValueBlock([
    ['AccessorID', t.AccessorID],
    ['SecretID', t.SecretID ?? '<hidden>'],
    ['Description', t.Description ?? ''],
    ['Local', String(t.Local ?? false)],
    ['Create Time', t.CreateTime ?? ''],
    ['Policies', (t.Policies ?? []).map((p) => `${p.ID} - ${p.Name}`).join(', ')],
  ]))
    out(l);
}

export const aclBootstrap: Command = {
  name: 'acl bootstrap',
  summary: 'Create the first management token (once per cluster)',
  usage: 'isthmus acl bootstrap [--format json]',
  options: { ...CLIENT_OPTIONS, format: { type: 'string' } },
  async run(p, io) {
    const t = await client(p.values, io.env).put<Token>('/v1/acl/bootstrap');
    if (str(p.values.format) === 'json') io.out(JSON.stringify(t, null, 2));
    else printToken(t, io.out);
    return 0;
  },
};

export const aclPolicyCreate: Command = {
  name: 'acl policy create',
  summary: 'Create a policy from rules (inline, or @FILE)',
  usage: 'isthmus acl policy create --name NAME --rules RULES|@FILE [--description TEXT]',
  options: { ...CLIENT_OPTIONS, name: { type: 'string' }, rules: { type: 'string' }, description: { type: 'string' } },
  async run(p, io) {
    const name = str(p.values.name);
    let rules = str(p.values.rules);
    if (!name || rules === undefined) throw new CliError(`--name and --rules are required\nUsage: ${this.usage}`);
    if (rules.startsWith('@')) {
      try {
        rules = readFileSync(rules.slice(1), 'utf8');
      } catch (err) {
        throw new CliError(`cannot read rules file ${rules.slice(1)}: ${(err as Error).message}`);
      }
    }
    const pol = await client(p.values, io.env).put<Policy>('/v1/acl/policy', { Name: name, Rules: rules, Description: str(p.values.description) ?? '' });
    for (const l of keyValueBlock([
      ['ID', pol.ID],
      ['Name', pol.Name],
      ['Description', pol.Description ?? ''],
      ['Rules', pol.Rules ?? ''],
    ]))
      io.out(l);
    return 0;
  },
};

export const aclPolicyList: Command = {
  name: 'acl policy list',
  summary: 'List policies',
  usage: 'isthmus acl policy list',
  options: { ...CLIENT_OPTIONS },
  async run(p, io) {
    const pols = await client(p.values, io.env).get<Policy[]>('/v1/acl/policies');
    for (const l of table(
      ['ID', 'Name', 'Description'],
      pols.map((x) => [x.ID, x.Name, x.Description ?? '']),
    ))
      io.out(l);
    return 0;
  },
};

export const aclTokenCreate: Command = {
  name: 'acl token create',
  summary: 'Create a token with policies (by name or ID)',
  usage: 'isthmus acl token create --policy NAME|ID [--policy ...] [--description TEXT] [--format json]',
  options: {
    ...CLIENT_OPTIONS,
    policy: { type: 'string', multiple: true },
    'policy-name': { type: 'string', multiple: true },
    'policy-id': { type: 'string', multiple: true },
    description: { type: 'string' },
    format: { type: 'string' },
  },
  async run(p, io) {
    const refs = [
      ...list(p.values.policy).map((x) => (UUID.test(x) ? { ID: x } : { Name: x })),
      ...list(p.values['policy-name']).map((x) => ({ Name: x })),
      ...list(p.values['policy-id']).map((x) => ({ ID: x })),
    ];
    if (refs.length === 0) throw new CliError(`at least one --policy is required\nUsage: ${this.usage}`);
    const t = await client(p.values, io.env).put<Token>('/v1/acl/token', { Description: str(p.values.description) ?? '', Policies: refs });
    if (str(p.values.format) === 'json') io.out(JSON.stringify(t, null, 2));
    else printToken(t, io.out);
    return 0;
  },
};

export const aclTokenList: Command = {
  name: 'acl token list',
  summary: 'List tokens',
  usage: 'isthmus acl token list',
  options: { ...CLIENT_OPTIONS },
  async run(p, io) {
    const tokens = await client(p.values, io.env).get<Token[]>('/v1/acl/tokens');
    for (const l of table(
      ['AccessorID', 'Description', 'Policies'],
      tokens.map((t) => [t.AccessorID, t.Description ?? '', (t.Policies ?? []).map((x) => x.Name).join(',')]),
    ))
      io.out(l);
    return 0;
  },
};
