// What every config loader does before its schema: each setting's value from flags, then the
// environment, then a JSON file, remembered with where it came from, so that a violation names the
// flag, the variable or the file key the operator has to change.
import { readFileSync } from 'node:fs';
import type { z } from 'zod';
import { ErrorCodes, IsthmusError, type Violation } from '../core/errors.js';
import type { Setting } from './settings.js';

export interface Source {
  value: unknown;
  /** `--flag`, `ISTHMUS_VARIABLE` or `<file>: key`. */
  where: string;
}

export interface SourceInput {
  flags?: Partial<Record<string, string>>;
  env?: NodeJS.ProcessEnv;
  /** Path of a JSON config file (`--config`). */
  configFile?: string;
}

/** The settings given anywhere, flags over variables over the file; unknown file keys go to `violations`. */
export function gatherSources<K extends string>(settings: Record<K, Setting>, input: SourceInput, violations: Violation[]): Map<K, Source> {
  const env = input.env ?? process.env;
  const sources = new Map<K, Source>();
  if (input.configFile) {
    for (const [k, v] of Object.entries(readConfigFile(input.configFile))) {
      if (!(k in settings)) {
        violations.push({ Field: `${input.configFile}: ${k}`, Message: `unknown setting (known: ${Object.keys(settings).join(', ')})` });
        continue;
      }
      sources.set(k as K, { value: v, where: `${input.configFile}: ${k}` });
    }
  }
  for (const [k, spec] of Object.entries(settings) as [K, Setting][]) {
    const e = spec.env === undefined ? undefined : env[spec.env];
    if (e !== undefined && e !== '') sources.set(k, { value: e, where: spec.env! });
    for (const flag of [spec.alias, spec.flag]) {
      const f = flag === undefined ? undefined : input.flags?.[flag];
      if (f !== undefined) sources.set(k, { value: f, where: `--${flag}` });
    }
  }
  return sources;
}

function readConfigFile(path: string): Record<string, unknown> {
  let file: unknown;
  try {
    file = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new IsthmusError(ErrorCodes.BAD_CONFIG, `cannot read config file ${path}: ${(err as Error).message}`);
  }
  if (!file || typeof file !== 'object' || Array.isArray(file)) {
    throw new IsthmusError(ErrorCodes.BAD_CONFIG, `config file ${path} must hold a JSON object`);
  }
  return file as Record<string, unknown>;
}

/** The schema's issues, each named by where its value came from. */
export function issueViolations(issues: readonly z.core.$ZodIssue[], sources: Map<string, Source>): Violation[] {
  const out: Violation[] = [];
  for (const issue of issues) {
    const key = String(issue.path[0]);
    // A default derived from a bad value (grpc_addr from http_addr) is not a second mistake.
    if (!sources.has(key)) continue;
    out.push({ Field: sources.get(key)?.where ?? key, Message: issue.message });
  }
  return out;
}

/** One error for all of them, each violation a phrase ("--addr must be host:port …, got …"). */
export function configError(violations: Violation[]): IsthmusError {
  return new IsthmusError(ErrorCodes.BAD_CONFIG, violations.map((v) => `${v.Field} ${v.Message}`).join('; '), { violations });
}
