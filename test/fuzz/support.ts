// Shared pieces of the fuzzers: a seeded generator (the seed is printed on failure so a run can be
// replayed with ISTHMUS_FUZZ_SEED), a time budget per fuzzer (ISTHMUS_FUZZ_MS), one region started
// in-process with its data dir in a temp folder, and the checks every refusal must pass.
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { loadRegionConfig } from '../../src/config/index.js';
import { startRegion, type Region } from '../../src/region/index.js';
import { createLogger } from '../../src/telemetry/index.js';

/** One seed per process unless given: every fuzzer in a file derives its own stream from it. */
export const SEED = process.env.ISTHMUS_FUZZ_SEED ? Number(process.env.ISTHMUS_FUZZ_SEED) >>> 0 : (Date.now() ^ (process.pid << 8)) >>> 0;
/** Wall time per fuzzer, in ms. */
export const BUDGET_MS = Number(process.env.ISTHMUS_FUZZ_MS ?? 3000);

export type Rng = {
  (): number;
  int(n: number): number;
  pick<T>(xs: readonly T[]): T;
  chance(p: number): boolean;
};

/** mulberry32: a seeded stream of numbers in [0, 1), small, fast and good enough to drive tests. */
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** mulberry32 from SEED, for mutations; `salt` separates fuzzers. */
export function rng(salt: string): Rng {
  let s = SEED;
  for (const ch of salt) s = Math.imul(s ^ ch.charCodeAt(0), 0x9e3779b1) >>> 0;
  const stream = mulberry32(s);
  const next = (() => stream()) as Rng;
  next.int = (n) => Math.floor(next() * n);
  next.pick = (xs) => xs[next.int(xs.length)];
  next.chance = (p) => next() < p;
  return next;
}

/** Runs `step` until the budget is spent (at least `min` times); a failure names the seed and the step. */
export async function fuzz(name: string, step: (i: number) => Promise<void>, opts: { budgetMs?: number; min?: number } = {}): Promise<number> {
  const end = Date.now() + (opts.budgetMs ?? BUDGET_MS);
  let i = 0;
  for (; i < (opts.min ?? 20) || Date.now() < end; i++) {
    try {
      await step(i);
    } catch (err) {
      const e = err as Error;
      e.message = `${name}: step ${i} failed (replay with ISTHMUS_FUZZ_SEED=${SEED}): ${e.message}`;
      throw e;
    }
  }
  return i;
}

// ---- inputs ----

export const INJECTIONS = [
  '../../etc/passwd',
  '..\\..\\windows\\win.ini',
  'a/b',
  '/abs',
  'x\u0000y',
  '<script>alert(1)</script>',
  'a\r\nX-Injected: 1',
  '\r\n\r\nHTTP/1.1 200 OK',
  "'; DROP TABLE services; --",
  '${7*7}',
  '{{7*7}}',
  '%2e%2e%2f',
  '%00',
  'a b',
  '\u202eevil',
  '\ud800',
  '💥',
  'é',
  '*',
  '.',
  '..',
  '',
  ' ',
  'x'.repeat(300),
  '-leading-dash',
  'UPPER.case.dots',
];

const WORDS = ['web', 'api', 'db', 'default', 'allow', 'deny', 'consul', 'ec', '10s', '72h', '1m', 'GET', '/path', 'true', '0'];

export function randomString(r: Rng): string {
  switch (r.int(6)) {
    case 0:
      return r.pick(INJECTIONS);
    case 1:
      return r.pick(WORDS);
    case 2: {
      // Any code unit, lone surrogates and control characters included.
      let s = '';
      for (let n = r.int(24); n > 0; n--) s += String.fromCharCode(r.int(0x10000));
      return s;
    }
    case 3:
      return 'x'.repeat(r.pick([64, 300, 5000, 70_000]));
    case 4: {
      let s = '';
      for (let n = r.int(16); n > 0; n--) s += String.fromCharCode(0x20 + r.int(0x5f));
      return s;
    }
    default:
      return '';
  }
}

export function randomNumber(r: Rng): number {
  return r.pick([
    0,
    -1,
    1,
    0.5,
    -0.0001,
    65535,
    65536,
    70000,
    2 ** 31,
    2 ** 53 + 1,
    -(2 ** 63),
    1e21,
    1e308,
    Number.MAX_SAFE_INTEGER,
    Number.MIN_VALUE,
    r.int(100000) - 50000,
  ]);
}

/** Random JSON value (no Infinity/NaN: those are sent as raw text elsewhere). */
export function randomJson(r: Rng, depth = 0): unknown {
  const k = r.int(depth > 4 ? 4 : 7);
  switch (k) {
    case 0:
      return null;
    case 1:
      return r.chance(0.5);
    case 2:
      return randomNumber(r);
    case 3:
      return randomString(r);
    case 4: {
      const out: unknown[] = [];
      for (let n = r.int(5); n > 0; n--) out.push(randomJson(r, depth + 1));
      return out;
    }
    default: {
      const out: Record<string, unknown> = {};
      for (let n = r.int(6); n > 0; n--)
        out[r.chance(0.2) ? r.pick(['__proto__', 'constructor', 'prototype']) : randomString(r).slice(0, 40)] = randomJson(r, depth + 1);
      return out;
    }
  }
}

/** Deeply nested arrays or objects, as JSON text. */
export function deepJson(levels: number, kind: 'array' | 'object'): string {
  return kind === 'array' ? '['.repeat(levels) + ']'.repeat(levels) : '{"a":'.repeat(levels) + '1' + '}'.repeat(levels);
}

/** The key paths into a JSON value (objects and arrays), down to a few levels. */
function paths(v: unknown, prefix: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  if (prefix.length >= 8) return out;
  if (Array.isArray(v)) v.forEach((x, i) => (out.push([...prefix, i]), paths(x, [...prefix, i], out)));
  else if (v && typeof v === 'object')
    for (const [k, x] of Object.entries(v)) {
      out.push([...prefix, k]);
      paths(x, [...prefix, k], out);
    }
  return out;
}

/** Replaces, removes or adds one thing somewhere in `body` (a deep copy): a wrong type, a huge or odd value, a dangerous key. */
export function mutate(r: Rng, body: unknown): unknown {
  const copy = JSON.parse(JSON.stringify(body ?? {})) as unknown;
  const all = paths(copy);
  if (all.length === 0 || r.chance(0.1)) return r.pick([randomJson(r), [copy], null, 'text', 42]);
  const path = r.pick(all);
  let parent = copy as Record<string | number, unknown>;
  for (const p of path.slice(0, -1)) parent = parent[p] as Record<string | number, unknown>;
  const key = path[path.length - 1];
  switch (r.int(7)) {
    case 0:
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else delete parent[key];
      break;
    case 1:
      parent[key] = r.pick([null, true, 0, '', [], {}, 'string', -1, 1e308, 2 ** 53 + 1]);
      break;
    case 2:
      parent[key] = randomString(r);
      break;
    case 3:
      parent[key] = randomNumber(r);
      break;
    case 4:
      parent[key] = randomJson(r);
      break;
    case 5:
      // Defined as an own key, as JSON.parse would make it.
      Object.defineProperty(parent, r.pick(['__proto__', 'constructor', 'prototype']), {
        value: r.pick([{ polluted: true, Policies: [{ ID: 'x' }], ExpirationTTL: 'abc' }, 'x', null]),
        enumerable: true,
        writable: true,
        configurable: true,
      });
      break;
    default:
      parent[key] = JSON.parse(deepJson(r.pick([20, 200, 2000]), r.chance(0.5) ? 'array' : 'object'));
  }
  return copy;
}

// ---- checks on answers ----

const STACK = [/\n\s+at\s/, /\bat [^\s]+ \([^)]*:\d+:\d+\)/, /\.ts:\d/, /\.js:\d+:\d+/, /node_modules/, /file:\/\//];
const KEY = /-----BEGIN [A-Z ]*PRIVATE KEY-----/;

/** What an answer must never carry: a stack trace, a source path, a private key. */
export function leaks(text: string, sent = ''): string | undefined {
  for (const re of STACK) if (re.test(text) && !re.test(sent)) return `stack or source path (${re})`;
  if (KEY.test(text)) return 'a PEM private key';
  return undefined;
}

// ---- a region in-process ----

export interface FuzzRegion {
  region: Region;
  url: string;
  /** The temp folder holding the data dir (nothing else may appear in it). */
  root: string;
  dataDir: string;
  /** Log lines written by the region. */
  logs: string[];
  stop(): Promise<void>;
}

export async function startFuzzRegion(opts: { acl?: 'allow' | 'deny' } = {}): Promise<FuzzRegion> {
  const root = mkdtempSync(join(tmpdir(), 'isthmus-fuzz-'));
  const dataDir = join(root, 'data');
  const config = loadRegionConfig({
    mode: 'server',
    flags: {
      dc: 'dc1',
      'http-addr': '127.0.0.1:0',
      'grpc-addr': '127.0.0.1:0',
      'grpc-tls-addr': '127.0.0.1:0',
      'acl-default-policy': opts.acl ?? 'allow',
      'log-level': 'warn',
    },
    env: {},
  });
  const logs: string[] = [];
  const logger = createLogger({ level: 'warn', write: (l) => void logs.push(l) });
  // Without the check runner: its results (a registered sidecar's automatic checks) would be writes
  // the fuzzer cannot tell from a refused request's.
  const region = await startRegion({ ...config, dataDir }, { logger, processMetrics: false, runChecks: false });
  return {
    region,
    url: `http://${region.httpAddress}`,
    root,
    dataDir,
    logs,
    stop: async () => {
      await region.stop();
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** Every file under `dir`, relative to it. */
export function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

export interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: any;
}

/** One HTTP call; `body` is sent as is when a string or bytes, else as JSON. */
export async function call(url: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const data = body === undefined ? undefined : typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
  const res = await fetch(url + path, { method, body: data as string | Uint8Array | undefined, headers: { 'content-type': 'application/json', ...headers } });
  const text = await res.text();
  let json: any;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}
