// Flag parsing on node:util parseArgs. Consul's single-dash long flags (`-deny`, `-http-addr=x`)
// are accepted as well as `--deny`, so Consul users' muscle memory works.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { CliError } from './cli-error.js';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

export interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
  /** Arguments after a bare `--`. */
  rest: string[];
}

export function normalizeArgv(argv: string[], options: OptionSpec): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      out.push(...argv.slice(i));
      break;
    }
    // `-name` or `-name=value` where `name` is a known long option.
    const m = /^-([a-z][a-z0-9-]+)(=.*)?$/.exec(a);
    if (m && m[1] in options) out.push(`--${m[1]}${m[2] ?? ''}`);
    else out.push(a);
  }
  return out;
}

export function parse(argv: string[], options: OptionSpec, usage: string): Parsed {
  const dd = argv.indexOf('--');
  const head = dd >= 0 ? argv.slice(0, dd) : argv;
  const rest = dd >= 0 ? argv.slice(dd + 1) : [];
  try {
    const r = parseArgs({ args: normalizeArgv(head, options), options, allowPositionals: true, strict: true });
    return { values: r.values as Parsed['values'], positionals: r.positionals, rest };
  } catch (err) {
    const msg = (err as Error).message.replace(/^Unknown option '(.*)'.*$/s, "unknown flag '$1'").split('\n')[0];
    throw new CliError(`${msg}\nUsage: ${usage}`);
  }
}

export function str(v: Parsed['values'][string]): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** The string values of `names` among the parsed flags, as a config loader takes them. */
export function stringFlags(values: Parsed['values'], names: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of names) {
    const v = str(values[name]);
    if (v !== undefined) out[name] = v;
  }
  return out;
}

export function list(v: Parsed['values'][string]): string[] {
  if (Array.isArray(v)) return v;
  return typeof v === 'string' ? [v] : [];
}

/** `--meta k=v` pairs into an object, naming the flag when one is malformed. */
export function keyValues(values: string[], flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of values) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new CliError(`--${flag} takes key=value, got "${kv}"`);
    out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

/** A flag that must be a whole number in a range. */
export function intFlag(v: string | undefined, flag: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new CliError(`--${flag} must be a whole number from ${min} to ${max}, got "${v}"`);
  return Number(v);
}
