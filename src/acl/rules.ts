// ACL rules: Consul's HCL subset (service, service_prefix, operator, acl) or the same in JSON,
// parsed once at write time; errors say where ("line 3: unknown policy \"writ\"").
import { invalid } from '../core/errors.js';
import type { AccessLevel } from './authorizer.js';

export interface ServiceRule {
  policy: AccessLevel;
  intentions?: AccessLevel;
}

export interface Rules {
  service: Record<string, ServiceRule>;
  servicePrefix: Record<string, ServiceRule>;
  operator?: AccessLevel;
  acl?: AccessLevel;
}

const LEVELS = ['deny', 'read', 'write'];

type Tok = { t: 'str' | 'id' | '{' | '}' | '='; v: string; line: number };

function fail(line: number, msg: string): never {
  throw invalid([{ Field: 'Rules', Message: `line ${line}: ${msg}` }]);
}

function tokenize(src: string): Tok[] {
  const out: Tok[] = [];
  let line = 1;
  for (let i = 0; i < src.length;) {
    const ch = src[i];
    if (ch === '\n') {
      line++;
      i++;
      continue;
    }
    if (/\s/.test(ch)) {
      i++;
      continue;
    }
    if (ch === '#' || (ch === '/' && src[i + 1] === '/')) {
      while (i < src.length && src[i] !== '\n') i++;
      continue;
    }
    if (ch === '/' && src[i + 1] === '*') {
      const end = src.indexOf('*/', i + 2);
      if (end < 0) fail(line, 'unterminated comment');
      line += src.slice(i, end).split('\n').length - 1;
      i = end + 2;
      continue;
    }
    if (ch === '{' || ch === '}' || ch === '=') {
      out.push({ t: ch, v: ch, line });
      i++;
      continue;
    }
    if (ch === '"') {
      let j = i + 1;
      let v = '';
      while (j < src.length && src[j] !== '"') {
        if (src[j] === '\n') fail(line, 'unterminated string');
        if (src[j] === '\\' && j + 1 < src.length) {
          v += src[j + 1];
          j += 2;
          continue;
        }
        v += src[j++];
      }
      if (j >= src.length) fail(line, 'unterminated string');
      out.push({ t: 'str', v, line });
      i = j + 1;
      continue;
    }
    const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(src.slice(i));
    if (!m) fail(line, `unexpected character "${ch}"`);
    out.push({ t: 'id', v: m[0], line });
    i += m[0].length;
  }
  return out;
}

function level(v: unknown, line: number, what: string): AccessLevel {
  if (typeof v !== 'string' || !LEVELS.includes(v)) fail(line, `unknown ${what} "${String(v)}" (use read, write or deny)`);
  return v as AccessLevel;
}

function parseHcl(src: string): Rules {
  const toks = tokenize(src);
  const rules: Rules = { service: {}, servicePrefix: {} };
  let i = 0;
  const expect = (t: Tok['t']) => {
    const tok = toks[i];
    if (!tok || tok.t !== t)
      fail(tok?.line ?? toks.at(-1)?.line ?? 1, `expected "${t === 'str' ? 'a quoted string' : t}"${tok ? ` but found "${tok.v}"` : ' at the end'}`);
    i++;
    return tok;
  };
  while (i < toks.length) {
    const key = expect('id');
    if (key.v === 'operator' || key.v === 'acl') {
      expect('=');
      const v = expect('str');
      rules[key.v] = level(v.v, v.line, 'policy');
      continue;
    }
    if (key.v !== 'service' && key.v !== 'service_prefix') fail(key.line, `unknown rule "${key.v}" (known: service, service_prefix, operator, acl)`);
    const name = expect('str');
    expect('{');
    const rule: Partial<ServiceRule> = {};
    while (toks[i] && toks[i].t !== '}') {
      const field = expect('id');
      expect('=');
      const v = expect('str');
      if (field.v === 'policy') rule.policy = level(v.v, v.line, 'policy');
      else if (field.v === 'intentions') rule.intentions = level(v.v, v.line, 'intentions level');
      else fail(field.line, `unknown field "${field.v}" in ${key.v} (known: policy, intentions)`);
    }
    expect('}');
    if (!rule.policy) fail(key.line, `${key.v} "${name.v}" needs a policy`);
    (key.v === 'service' ? rules.service : rules.servicePrefix)[name.v] = rule as ServiceRule;
  }
  return rules;
}

function parseJson(obj: Record<string, unknown>): Rules {
  const rules: Rules = { service: {}, servicePrefix: {} };
  for (const [k, v] of Object.entries(obj)) {
    if (k === 'operator' || k === 'acl') rules[k] = level(v, 1, 'policy');
    else if (k === 'service' || k === 'service_prefix') {
      if (!v || typeof v !== 'object') fail(1, `${k} must be an object of names`);
      for (const [name, r] of Object.entries(v as Record<string, { policy?: unknown; intentions?: unknown }>)) {
        const rule: ServiceRule = { policy: level(r?.policy, 1, 'policy') };
        if (r?.intentions !== undefined) rule.intentions = level(r.intentions, 1, 'intentions level');
        (k === 'service' ? rules.service : rules.servicePrefix)[name] = rule;
      }
    } else fail(1, `unknown rule "${k}" (known: service, service_prefix, operator, acl)`);
  }
  return rules;
}

export function parseRules(src: string): Rules {
  const trimmed = src.trim();
  if (trimmed.startsWith('{')) {
    let obj: unknown;
    try {
      obj = JSON.parse(trimmed);
    } catch (err) {
      fail(1, `not valid JSON: ${(err as Error).message}`);
    }
    return parseJson(obj as Record<string, unknown>);
  }
  return parseHcl(src);
}
