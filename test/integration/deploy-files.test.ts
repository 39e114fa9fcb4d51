// Every file under deploy/ checked against the code: each `isthmus <command>` it runs exists in
// COMMANDS and each flag it passes is one that command takes (server flags: CONFIG_FLAGS), each
// region config loads with loadRegionConfig, each service definition parses, each port it opens is
// one Isthmus uses (the config defaults, the gateway's default listener, the sidecar range), each
// ISTHMUS_* variable is one the code reads, and the probes answer on a real server.
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, posix, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parseServiceDefinition } from '../../src/catalog/index.js';
import { parse, type Parsed } from '../../src/cli/args.js';
import type { Command } from '../../src/cli/command.js';
import { devCommand, serverCommand } from '../../src/cli/commands/agent.js';
import { COMMANDS } from '../../src/cli/main.js';
import { CONFIG_FLAGS, loadGatewayConfig, loadRegionConfig, splitHostPort, type ConfigFlags, type RegionConfig } from '../../src/config/index.js';
import { startRegion } from '../../src/region/index.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DEPLOY = join(ROOT, 'deploy');
const read = (p: string) => readFileSync(p, 'utf8');
const rel = (p: string) => relative(ROOT, p);

function walk(dir: string, out: string[] = []): string[] {
  for (const n of readdirSync(dir).sort()) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) walk(p, out);
    else out.push(p);
  }
  return out;
}

const tmp = mkdtempSync(join(tmpdir(), 'isthmus-deploy-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let tmpCount = 0;
function tmpFile(name: string, text: string): string {
  const p = join(tmp, `${tmpCount++}-${name}`);
  writeFileSync(p, text);
  return p;
}

// ---- what the code says ----

/** The ports a default server listens on (HTTP, gRPC, federation), from the config loader itself. */
const DEFAULTS = loadRegionConfig({ mode: 'server', env: {} });
const SERVER_PORTS = [DEFAULTS.httpAddr, DEFAULTS.grpcAddr, DEFAULTS.grpcTlsAddr].map((a) => splitHostPort(a).port);

/** The port a default gateway listens on, from its config loader. */
const GATEWAY_PORT = loadGatewayConfig({ env: {} }).addr.port;

/** The range sidecar ports are allocated from, from the catalog's source. */
const SIDECAR_RANGE = (() => {
  const src = read(join(ROOT, 'src/catalog/catalog-writes.ts'));
  const min = /SIDECAR_PORT_MIN\s*=\s*(\d+)/.exec(src);
  const max = /SIDECAR_PORT_MAX\s*=\s*(\d+)/.exec(src);
  if (!min || !max) throw new Error('cannot find SIDECAR_PORT_MIN/MAX in src/catalog/catalog-writes.ts');
  return [Number(min[1]), Number(max[1])] as const;
})();

const isthmusPort = (p: number) => SERVER_PORTS.includes(p) || p === GATEWAY_PORT || (p >= SIDECAR_RANGE[0] && p <= SIDECAR_RANGE[1]);

/** Every ISTHMUS_* name the code reads (its non-test sources). */
const SOURCE_TEXT = walk(join(ROOT, 'src'))
  .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
  .map(read)
  .join('\n');

const PKG = JSON.parse(read(join(ROOT, 'package.json'))) as { bin: Record<string, string>; engines: { node: string } };

// ---- a small YAML reader: block maps and lists, quoted and plain scalars, `|` blocks, JSON flow ----

type Yaml = string | number | boolean | null | Yaml[] | { [k: string]: Yaml };
type YMap = { [k: string]: Yaml };

/** Reads the subset of YAML the Kubernetes files are written in; anything else is an error, never a guess. */
function readYaml(text: string, file: string): Yaml[] {
  const raw = text.split('\n');
  const docs: Yaml[] = [];
  let i = 0;
  const fail = (n: number, msg: string): never => {
    throw new Error(`${file}:${n + 1}: ${msg}`);
  };
  const indentOf = (s: string) => s.length - s.trimStart().length;
  const insignificant = (s: string) => /^\s*(#.*)?$/.test(s);
  // The next significant line (skips blanks and comments), stopping at a document end.
  const peek = (): { n: number; indent: number; text: string } | undefined => {
    while (i < raw.length && insignificant(raw[i])) i++;
    if (i >= raw.length || /^---\s*$/.test(raw[i])) return undefined;
    if (/^ *\t/.test(raw[i])) fail(i, 'tab in indentation');
    return { n: i, indent: indentOf(raw[i]), text: raw[i].trimStart() };
  };
  const KEY = /^("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[A-Za-z0-9_./-]+):(?:[ ]+(.*))?$/;

  const scalar = (s: string, n: number): Yaml => {
    if (s.startsWith('"') || s.startsWith('[') || s.startsWith('{')) {
      try {
        return JSON.parse(s) as Yaml;
      } catch {
        return fail(n, `not a JSON string or JSON flow collection: ${s}`);
      }
    }
    if (s.startsWith("'")) {
      const m = /^'((?:[^']|'')*)'$/.exec(s);
      return m ? m[1].replace(/''/g, "'") : fail(n, `bad single-quoted string: ${s}`);
    }
    if (/^[&*!|>%@`]/.test(s)) fail(n, `outside the YAML subset (anchors, tags, folded blocks): ${s}`);
    if (/\s#/.test(s)) fail(n, `a comment after a value is outside the subset: ${s}`);
    if (/: /.test(s) || s.endsWith(':')) fail(n, `a plain scalar with ": " (quote it): ${s}`);
    if (s === 'true' || s === 'false') return s === 'true';
    if (s === 'null' || s === '~') return null;
    if (/^-?\d+(\.\d+)?$/.test(s)) return Number(s);
    return s;
  };

  const block = (ownerIndent: number, keep: boolean): string => {
    const lines: string[] = [];
    let inner = -1;
    while (i < raw.length && !/^---\s*$/.test(raw[i]) && (raw[i].trim() === '' || indentOf(raw[i]) > ownerIndent)) {
      if (raw[i].trim() !== '' && inner < 0) inner = indentOf(raw[i]);
      lines.push(raw[i].trim() === '' ? '' : raw[i].slice(inner));
      i++;
    }
    while (lines.length && lines[lines.length - 1] === '') lines.pop();
    return lines.join('\n') + (keep ? '\n' : '');
  };

  const node = (indent: number): Yaml => {
    const l = peek();
    if (!l || l.indent < indent) return null;
    if (l.indent > indent) fail(l.n, `unexpected indentation (${l.indent}, expected ${indent})`);
    return l.text === '-' || l.text.startsWith('- ') ? seq(indent) : map(indent);
  };

  const value = (rest: string | undefined, indent: number, n: number): Yaml => {
    if (rest === undefined || rest === '') {
      const next = peek();
      return next && next.indent > indent ? node(next.indent) : null;
    }
    if (rest === '|' || rest === '|-') return block(indent, rest === '|');
    return scalar(rest, n);
  };

  const map = (indent: number): YMap => {
    const out: YMap = {};
    for (let l = peek(); l && l.indent === indent; l = peek()) {
      if (l.text.startsWith('- ')) fail(l.n, 'a list item where a key was expected');
      const m = KEY.exec(l.text);
      if (!m) return fail(l.n, `expected "key: value": ${l.text}`);
      const key = m[1].startsWith('"') ? (JSON.parse(m[1]) as string) : m[1].startsWith("'") ? m[1].slice(1, -1).replace(/''/g, "'") : m[1];
      if (key in out) fail(l.n, `duplicate key ${key}`);
      i = l.n + 1;
      out[key] = value(m[2], indent, l.n);
    }
    const after = peek();
    if (after && after.indent > indent) fail(after.n, 'unexpected indentation');
    return out;
  };

  const seq = (indent: number): Yaml[] => {
    const out: Yaml[] = [];
    for (let l = peek(); l && l.indent === indent && (l.text === '-' || l.text.startsWith('- ')); l = peek()) {
      const after = l.text.slice(1).trimStart();
      if (after === '') fail(l.n, 'an empty "-" is outside the subset');
      if (KEY.test(after)) {
        // "- key: value": the item is a map whose keys line up with this first one.
        const col = indent + (l.text.length - after.length);
        raw[l.n] = ' '.repeat(col) + after;
        out.push(map(col));
      } else {
        i = l.n + 1;
        out.push(scalar(after, l.n));
      }
    }
    return out;
  };

  for (;;) {
    const l = peek();
    if (l) {
      if (l.indent !== 0) fail(l.n, 'a document must start at column 0');
      docs.push(node(0));
      const rest = peek();
      if (rest) fail(rest.n, 'unexpected line');
    }
    while (i < raw.length && insignificant(raw[i])) i++;
    if (i >= raw.length) break;
    if (/^---\s*$/.test(raw[i])) i++;
  }
  return docs;
}

// ---- a small shell reader: simple commands, quotes, $(...) ----

/** The simple commands of a shell script as word lists; `$(...)` bodies are commands of their own. */
function shellCommands(script: string, where: string): string[][] {
  const text = script.replace(/\\\n/g, ' ');
  const out: string[][] = [];
  let words: string[] = [];
  let cur: string | undefined;
  let dropNext = false;
  const endWord = () => {
    if (cur !== undefined) {
      if (dropNext) dropNext = false;
      else words.push(cur);
    }
    cur = undefined;
  };
  const endCmd = () => {
    endWord();
    dropNext = false;
    if (words.length) out.push(words);
    words = [];
  };
  const closeParen = (open: number): number => {
    let depth = 0;
    for (let j = open; j < text.length; j++) {
      if (text[j] === '(') depth++;
      else if (text[j] === ')' && --depth === 0) return j;
      else if (text[j] === "'") j = text.indexOf("'", j + 1);
      if (j < 0) break;
    }
    throw new Error(`${where}: unbalanced $( in: ${script}`);
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\\') {
      cur = (cur ?? '') + (text[i + 1] ?? '');
      i++;
    } else if (c === "'") {
      const j = text.indexOf("'", i + 1);
      if (j < 0) throw new Error(`${where}: unterminated ' in: ${script}`);
      cur = (cur ?? '') + text.slice(i + 1, j);
      i = j;
    } else if (c === '"') {
      let j = i + 1;
      let s = '';
      while (j < text.length && text[j] !== '"') {
        if (text[j] === '\\' && j + 1 < text.length) {
          s += text[j + 1];
          j += 2;
        } else if (text.startsWith('$(', j)) {
          const end = closeParen(j + 1);
          out.push(...shellCommands(text.slice(j + 2, end), where));
          s += text.slice(j, end + 1);
          j = end + 1;
        } else s += text[j++];
      }
      if (j >= text.length) throw new Error(`${where}: unterminated " in: ${script}`);
      cur = (cur ?? '') + s;
      i = j;
    } else if (text.startsWith('$(', i)) {
      const end = closeParen(i + 1);
      out.push(...shellCommands(text.slice(i + 2, end), where));
      cur = (cur ?? '') + text.slice(i, end + 1);
      i = end;
    } else if (c === '#' && cur === undefined) {
      const nl = text.indexOf('\n', i);
      i = nl < 0 ? text.length : nl - 1;
    } else if (c === '>' || c === '<') {
      // A redirection: `2>` drops the fd number, the target word is no argument.
      if (cur !== undefined && /^\d$/.test(cur)) cur = undefined;
      endWord();
      while (text[i + 1] === '>' || text[i + 1] === '&') i++;
      dropNext = true;
    } else if (c === '\n' || c === ';' || c === '&' || c === '|' || c === '(' || c === ')') {
      endCmd();
    } else if (c === ' ' || c === '\t') {
      endWord();
    } else cur = (cur ?? '') + c;
  }
  endCmd();
  return out;
}

const WRAPPERS = new Set(['exec', 'npx', 'env', 'command', 'nohup', 'time']);

/** The arguments given to isthmus by one command's words, or undefined when it does not run isthmus. */
function isthmusArgv(words: string[]): string[] | undefined {
  let w = words;
  while (w.length && (/^[A-Za-z_][A-Za-z0-9_]*=/.test(w[0]) || WRAPPERS.has(w[0]))) w = w.slice(1);
  if (w.length === 0) return undefined;
  const base = w[0].split('/').pop();
  if (base === 'isthmus') return w.slice(1);
  if (base === 'node' && w[1] !== undefined && w[1].replace(/^\.\//, '').split('/').slice(-2).join('/') === PKG.bin.isthmus) return w.slice(2);
  if (base === 'kubectl' || base === 'docker' || base === 'podman') {
    const dd = w.indexOf('--');
    if (dd >= 0) return isthmusArgv(w.slice(dd + 1));
  }
  return undefined;
}

// ---- checking one invocation ----

interface Invocation {
  where: string;
  argv: string[];
}
interface Checked {
  command?: Command;
  parsed?: Parsed;
  problems: string[];
}

function checkInvocation(inv: Invocation): Checked {
  const { argv, where } = inv;
  const words: string[] = [];
  for (const a of argv) {
    if (a.startsWith('-')) break;
    words.push(a);
  }
  for (let n = Math.min(words.length, 3); n > 0; n--) {
    const command = COMMANDS.find((c) => c.name === words.slice(0, n).join(' '));
    if (!command) continue;
    const rest = argv.slice(n);
    const problems: string[] = [];
    const dd = rest.indexOf('--');
    for (const a of dd >= 0 ? rest.slice(0, dd) : rest) {
      if (!a.startsWith('-') || a === '-') continue;
      const flag = a.replace(/^--?/, '').split('=')[0];
      if (!(flag in command.options))
        problems.push(
          `${where}: \`isthmus ${command.name}\` has no flag --${flag} (it takes: ${Object.keys(command.options)
            .map((o) => `--${o}`)
            .join(' ')})`,
        );
      else if ((command === serverCommand || command === devCommand) && flag !== 'config' && !(CONFIG_FLAGS as string[]).includes(flag)) {
        problems.push(`${where}: --${flag} is not one of CONFIG_FLAGS`);
      }
    }
    let parsed: Parsed | undefined;
    try {
      parsed = parse(rest, command.options, command.usage);
    } catch (err) {
      problems.push(`${where}: isthmus ${command.name}: ${(err as Error).message.split('\n')[0]}`);
    }
    return { command, parsed, problems };
  }
  return { problems: [`${where}: \`isthmus ${words.join(' ')}\` names no command (commands: ${COMMANDS.map((c) => c.name).join(', ')})`] };
}

/** Ports in the host:port values of an invocation's flags, and in redis URLs. */
function flagPorts(parsed: Parsed | undefined): { isthmus: number[]; redis: number[] } {
  const out = { isthmus: [] as number[], redis: [] as number[] };
  for (const [flag, v] of Object.entries(parsed?.values ?? {})) {
    for (const s of Array.isArray(v) ? v : typeof v === 'string' ? [v] : []) {
      const url = /^rediss?:\/\/(?:[^@/]*@)?[^:/]+:(\d+)/.exec(s);
      if (url) out.redis.push(Number(url[1]));
      else if (flag !== 'token' && /^[^\s:/"$]+:\d{1,5}$/.test(s)) out.isthmus.push(splitHostPort(s).port);
    }
  }
  return out;
}

// ---- the files ----

const FILES = walk(DEPLOY);
const byKind = {
  units: FILES.filter((f) => f.endsWith('.service')),
  envs: FILES.filter((f) => f.endsWith('.env')),
  yaml: FILES.filter((f) => /\.ya?ml$/.test(f)),
  containerfile: FILES.filter((f) => basename(f) === 'Containerfile'),
  ignore: FILES.filter((f) => basename(f) === 'Containerfile.dockerignore'),
  regionConfigs: FILES.filter((f) => rel(f).startsWith('deploy/examples/') && !rel(f).startsWith('deploy/examples/services/') && f.endsWith('.json')),
  serviceDefs: FILES.filter((f) => rel(f).startsWith('deploy/examples/services/') && f.endsWith('.json')),
  readme: FILES.filter((f) => rel(f) === 'deploy/README.md'),
};

/** The Containerfile's instructions (continuations joined). */
function containerfile(): { instr: string; args: string }[] {
  const text = read(byKind.containerfile[0]).replace(/\\\n/g, ' ');
  return text
    .split('\n')
    .filter((l) => !/^\s*(#.*)?$/.test(l))
    .map((l) => {
      const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(l);
      if (!m) throw new Error(`Containerfile: cannot read "${l}"`);
      return { instr: m[1].toUpperCase(), args: m[2].trim() };
    });
}
const ENTRYPOINT = (() => {
  const e = containerfile()
    .filter((x) => x.instr === 'ENTRYPOINT')
    .pop();
  return e ? (JSON.parse(e.args) as string[]) : [];
})();

// systemd

function unit(file: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = '';
  for (const line of read(file).replace(/\\\n/g, ' ').split('\n')) {
    if (/^\s*([#;].*)?$/.test(line)) continue;
    const s = /^\[(\w+)\]$/.exec(line.trim());
    if (s) {
      section = s[1];
      continue;
    }
    const kv = /^(\w+)=(.*)$/.exec(line.trim());
    if (!kv) throw new Error(`${rel(file)}: cannot read "${line}"`);
    const key = `${section}.${kv[1]}`;
    out.set(key, [...(out.get(key) ?? []), kv[2]]);
  }
  return out;
}

function envFile(file: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of read(file).split('\n')) {
    if (/^\s*(#.*)?$/.test(line)) continue;
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) throw new Error(`${rel(file)}: cannot read "${line}"`);
    out[m[1]] = m[2].replace(/^"(.*)"$/, '$1');
  }
  return out;
}

/** The shipped example of an EnvironmentFile= path (/etc/isthmus/sidecar-%i.env -> deploy/systemd/sidecar-web.env). */
function envExample(path: string): { file: string; instance?: string } | undefined {
  const name = basename(path.replace(/^-/, ''));
  if (!name.includes('%i')) {
    const f = join(DEPLOY, 'systemd', name);
    return existsSync(f) ? { file: f } : undefined;
  }
  const re = new RegExp(`^${name.replace(/[.]/g, '\\.').replace('%i', '(.+)')}$`);
  for (const f of byKind.envs) {
    const m = re.exec(basename(f));
    if (m) return { file: f, instance: m[1] };
  }
  return undefined;
}

const UNIT_EXEC = ['Service.ExecStartPre', 'Service.ExecStart', 'Service.ExecStartPost', 'Service.ExecStop', 'Service.ExecStopPost', 'Service.ExecReload'];

interface UnitInvocation extends Invocation {
  env: Record<string, string>;
  unit: string;
}

function unitInvocations(file: string, problems: string[]): UnitInvocation[] {
  const u = unit(file);
  const env: Record<string, string> = {};
  let instance = 'web';
  for (const p of u.get('Service.EnvironmentFile') ?? []) {
    const ex = envExample(p);
    if (!ex) {
      problems.push(`${rel(file)}: EnvironmentFile=${p} has no example in deploy/systemd/`);
      continue;
    }
    Object.assign(env, envFile(ex.file));
    if (ex.instance) instance = ex.instance;
  }
  const out: UnitInvocation[] = [];
  for (const key of UNIT_EXEC) {
    for (const line of u.get(key) ?? []) {
      const where = `${rel(file)} ${key.split('.')[1]}`;
      // systemd's own expansion: %i, ${VAR} (one argument), $VAR (split at spaces).
      const expanded = line
        .replace(/^[-@:+!]+/, '')
        .replace(/%i/g, instance)
        .replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string, b: string) => {
          const name = a ?? b;
          if (!(name in env)) problems.push(`${where}: \${${name}} is not set in the unit's EnvironmentFile example`);
          else if (a && env[name] === '') problems.push(`${where}: \${${name}} is empty in the example, an empty argument`);
          return env[name] ?? '';
        });
      for (const words of shellCommands(expanded, where)) {
        const argv = isthmusArgv(words);
        if (argv) out.push({ where, argv, env, unit: file });
        else problems.push(`${where}: runs something other than isthmus: ${words.join(' ')}`);
      }
    }
  }
  return out;
}

// Kubernetes

const YAML_ERRORS: string[] = [];
const YAML_DOCS = byKind.yaml.flatMap((f) => {
  try {
    return readYaml(read(f), rel(f)).map((doc) => ({ file: rel(f), doc: doc as YMap }));
  } catch (err) {
    YAML_ERRORS.push((err as Error).message);
    return [];
  }
});
const get = (o: Yaml | undefined, ...path: string[]): Yaml | undefined =>
  path.reduce<Yaml | undefined>((x, k) => (x && typeof x === 'object' && !Array.isArray(x) ? x[k] : undefined), o);
const list = (x: Yaml | undefined): YMap[] => (Array.isArray(x) ? (x as YMap[]) : []);
const docsOf = (kind: string) => YAML_DOCS.filter((d) => d.doc.kind === kind);

function configMapData(name: string, namespace: Yaml | undefined): Record<string, string> | undefined {
  const d = docsOf('ConfigMap').find((x) => get(x.doc, 'metadata', 'name') === name && get(x.doc, 'metadata', 'namespace') === namespace);
  return d ? (get(d.doc, 'data') as Record<string, string>) : undefined;
}
function secretData(name: string, namespace: Yaml | undefined): Record<string, string> | undefined {
  const d = docsOf('Secret').find((x) => get(x.doc, 'metadata', 'name') === name && get(x.doc, 'metadata', 'namespace') === namespace);
  return d ? (get(d.doc, 'stringData') as Record<string, string>) : undefined;
}

interface Pod {
  file: string;
  name: string;
  namespace: Yaml | undefined;
  labels: YMap;
  spec: YMap;
}
const PODS: Pod[] = YAML_DOCS.filter((d) => ['Deployment', 'StatefulSet', 'DaemonSet', 'Job'].includes(String(d.doc.kind))).map((d) => ({
  file: d.file,
  name: String(get(d.doc, 'metadata', 'name')),
  namespace: get(d.doc, 'metadata', 'namespace'),
  labels: (get(d.doc, 'spec', 'template', 'metadata', 'labels') ?? {}) as YMap,
  spec: get(d.doc, 'spec', 'template', 'spec') as YMap,
}));

const isIsthmusImage = (image: Yaml | undefined) => typeof image === 'string' && image.split('/').pop()!.split(':')[0] === 'isthmus';

/** A container's environment with sample values for what Kubernetes fills in. */
function containerEnv(pod: Pod, c: YMap, problems: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of list(c.env)) {
    const name = String(e.name);
    if (typeof e.value === 'string' || typeof e.value === 'number') env[name] = String(e.value);
    else if (get(e, 'valueFrom', 'fieldRef', 'fieldPath') === 'metadata.name') env[name] = `${pod.name}-0`;
    else if (get(e, 'valueFrom', 'fieldRef', 'fieldPath') === 'status.podIP') env[name] = '10.0.0.1';
    else if (get(e, 'valueFrom', 'configMapKeyRef')) {
      const ref = get(e, 'valueFrom', 'configMapKeyRef') as YMap;
      const v = configMapData(String(ref.name), pod.namespace)?.[String(ref.key)];
      if (v === undefined)
        problems.push(
          `${pod.file} ${pod.name}/${String(c.name)}: env ${name} refers to a ConfigMap key not in deploy/kubernetes (${String(ref.name)}/${String(ref.key)})`,
        );
      env[name] = v ?? '';
    } else if (get(e, 'valueFrom', 'secretKeyRef')) {
      const ref = get(e, 'valueFrom', 'secretKeyRef') as YMap;
      const v = secretData(String(ref.name), pod.namespace)?.[String(ref.key)];
      if (v === undefined && ref.optional !== true)
        problems.push(
          `${pod.file} ${pod.name}/${String(c.name)}: env ${name} refers to a Secret key not in deploy/kubernetes (${String(ref.name)}/${String(ref.key)})`,
        );
      env[name] = v ?? '';
    } else problems.push(`${pod.file} ${pod.name}/${String(c.name)}: env ${name} has no value the test can read`);
  }
  return env;
}

interface PodInvocation extends Invocation {
  pod: Pod;
  container: YMap;
  env: Record<string, string>;
}

/** The isthmus invocations of a pod's containers: the image's ENTRYPOINT + args, or what its shell scripts run. */
function podInvocations(pod: Pod, problems: string[]): PodInvocation[] {
  const out: PodInvocation[] = [];
  for (const c of [...list(pod.spec.initContainers), ...list(pod.spec.containers)]) {
    const where = `${pod.file} ${pod.name}/${String(c.name)}`;
    const env = containerEnv(pod, c, problems);
    // Kubernetes' own $(VAR) expansion in command and args.
    const expand = (s: Yaml) => String(s).replace(/\$\((\w+)\)/g, (m, v: string) => env[v] ?? m);
    const command = c.command === undefined ? (isIsthmusImage(c.image) ? ENTRYPOINT : undefined) : (c.command as Yaml[]).map(expand);
    const args = ((c.args as Yaml[] | undefined) ?? []).map(expand);
    const scripts: { where: string; words: string[] }[] = [];
    const words = [...(command ?? []), ...args];
    const hook = get(c, 'lifecycle', 'preStop', 'exec', 'command') as string[] | undefined;
    for (const [w, ws] of [
      [where, words],
      [`${where} preStop`, hook ?? []],
    ] as const) {
      if (ws.length === 0) continue;
      if (/(^|\/)(ba)?sh$/.test(ws[0]) && ws[1] === '-c') {
        for (const cmd of shellCommands(ws[2] ?? '', w))
          scripts.push({ where: w, words: cmd.map((x) => x.replace(/\$\{?(\w+)\}?/g, (m, v: string) => env[v] ?? m)) });
      } else scripts.push({ where: w, words: [...ws] });
    }
    const found = scripts.map((s) => ({ ...s, argv: isthmusArgv(s.words) })).filter((s) => s.argv);
    if (isIsthmusImage(c.image) && found.length === 0) problems.push(`${where}: an isthmus container that runs no isthmus command`);
    for (const f of found) out.push({ where: f.where, argv: f.argv!, pod, container: c, env });
  }
  return out;
}

/** The file a path in a container is, through its volume mounts, when a ConfigMap in deploy/ holds it. */
function mountedFile(pod: Pod, c: YMap, path: string): string | undefined {
  for (const m of list(c.volumeMounts)) {
    const dir = String(m.mountPath).replace(/\/$/, '');
    if (posix.dirname(path) !== dir) continue;
    const vol = list(pod.spec.volumes).find((v) => v.name === m.name);
    const cm = get(vol, 'configMap', 'name');
    if (typeof cm === 'string') return configMapData(cm, pod.namespace)?.[posix.basename(path)];
  }
  return undefined;
}

// README

function readmeInvocations(problems: string[]): Invocation[] {
  const out: Invocation[] = [];
  const text = read(byKind.readme[0]);
  for (const m of text.matchAll(/^```(\w*)\n([\s\S]*?)^```/gm)) {
    if (!['', 'sh', 'bash', 'shell', 'console'].includes(m[1])) continue;
    const line = text.slice(0, m.index).split('\n').length;
    for (const words of shellCommands(m[2], `deploy/README.md:${line}`)) {
      const argv = isthmusArgv(words);
      if (argv) out.push({ where: `deploy/README.md (block at line ${line})`, argv });
    }
  }
  if (out.length === 0) problems.push('deploy/README.md: no isthmus command found in its code blocks');
  return out;
}

// ---- the tests ----

describe('deploy/: every file is one this test knows how to check', () => {
  it('has nothing unchecked', () => {
    const known = new Set(Object.values(byKind).flat());
    expect(FILES.filter((f) => !known.has(f)).map(rel)).toEqual([]);
    expect(byKind.units.length).toBeGreaterThanOrEqual(3);
    expect(byKind.yaml.length).toBeGreaterThan(0);
    expect(byKind.containerfile).toHaveLength(1);
    expect(byKind.regionConfigs.length).toBeGreaterThan(0);
    expect(byKind.readme).toHaveLength(1);
  });

  it('the readers refuse what they cannot read, and a flag that does not exist is caught', () => {
    expect(() => readYaml('a: &x 1\n', 't.yaml')).toThrow(/subset/);
    expect(() => readYaml('a: b # c\n', 't.yaml')).toThrow(/comment/);
    expect(() => readYaml('a:\n  - x\n   y: 1\n', 't.yaml')).toThrow();
    const docs = readYaml('kind: Deployment\nspec:\n  containers:\n    - name: g\n      args: ["gateway", "--wan-adr", "x:8443"]\n', 't.yaml');
    const args = get(docs[0], 'spec', 'containers') as YMap[];
    expect(checkInvocation({ where: 't', argv: args[0].args as string[] }).problems.join()).toMatch(/no flag --wan-adr/);
    expect(checkInvocation({ where: 't', argv: ['server', '--datacenter', 'dc1'] }).problems.join()).toMatch(/no flag --datacenter/);
    expect(checkInvocation({ where: 't', argv: ['gateways'] }).problems.join()).toMatch(/names no command/);
    const sh = shellCommands('TOKEN=$(isthmus federation token --dc dc2 --ttl 1h) && kubectl -n isthmus exec s -- isthmus federation status --nope', 't');
    const found = sh.map(isthmusArgv).filter(Boolean) as string[][];
    expect(found).toEqual([
      ['federation', 'token', '--dc', 'dc2', '--ttl', '1h'],
      ['federation', 'status', '--nope'],
    ]);
    expect(checkInvocation({ where: 't', argv: found[1] }).problems.join()).toMatch(/no flag --nope/);
    expect(shellCommands("export T='<id>' 2>/dev/null\nisthmus acl bootstrap # once", 't').map(isthmusArgv).filter(Boolean)).toEqual([['acl', 'bootstrap']]);
  });
});

describe('deploy/examples: region configs and service definitions', () => {
  const load = () => byKind.regionConfigs.map((f) => ({ file: f, config: loadRegionConfig({ mode: 'server', configFile: f, env: {} }) }));

  it('every key of every region config loads through loadRegionConfig', () => {
    for (const f of byKind.regionConfigs) {
      expect(() => loadRegionConfig({ mode: 'server', configFile: f, env: {} }), rel(f)).not.toThrow();
    }
  });

  it('names its datacenter after its file, keeps join tokens out, and has one primary the others name', () => {
    const loaded = load();
    for (const { file, config } of loaded) {
      expect(config.dc, rel(file)).toBe(basename(file, '.json'));
      expect(Object.keys(JSON.parse(read(file))), `${rel(file)}: join tokens go in through ISTHMUS_JOIN_TOKEN`).not.toContain('join_token');
    }
    const primaries = loaded.filter((x) => x.config.primaryDc === x.config.dc);
    expect(primaries.map((x) => x.config.dc)).toHaveLength(1);
    for (const { file, config } of loaded) expect(config.primaryDc, rel(file)).toBe(primaries[0].config.dc);
    const addrs = loaded.flatMap((x) => [x.config.httpAddr, x.config.grpcAddr, x.config.grpcTlsAddr]);
    expect(new Set(addrs).size, 'two regions on one address').toBe(addrs.length);
  });

  it('listens only on ports Isthmus uses', () => {
    for (const { file, config } of load()) {
      for (const a of [config.httpAddr, config.grpcAddr, config.grpcTlsAddr]) expect(isthmusPort(splitHostPort(a).port), `${rel(file)}: ${a}`).toBe(true);
    }
  });

  it('service definitions parse as the API parses them, with sidecars in the sidecar range', () => {
    for (const f of byKind.serviceDefs) {
      const defs = parseServiceDefinition(JSON.parse(read(f)));
      for (const d of defs) {
        const port = d.Connect?.SidecarService?.Port;
        if (port !== undefined) expect(port >= SIDECAR_RANGE[0] && port <= SIDECAR_RANGE[1], `${rel(f)}: sidecar port ${port}`).toBe(true);
      }
    }
  });
});

describe('deploy/systemd', () => {
  it('runs only isthmus commands and flags that exist', () => {
    const problems: string[] = [];
    let n = 0;
    for (const f of byKind.units) {
      for (const inv of unitInvocations(f, problems)) {
        n++;
        const r = checkInvocation(inv);
        problems.push(...r.problems);
        const ports = flagPorts(r.parsed);
        for (const p of ports.isthmus) if (!isthmusPort(p)) problems.push(`${inv.where}: port ${p} is none Isthmus uses`);
      }
    }
    expect(problems).toEqual([]);
    expect(n).toBeGreaterThanOrEqual(3);
  });

  it('runs the server with a config that loads (each example as /etc/isthmus/region.json) and a data dir it may write', () => {
    const problems: string[] = [];
    for (const f of byKind.units) {
      const u = unit(f);
      for (const inv of unitInvocations(f, problems)) {
        const r = checkInvocation(inv);
        if (r.command !== serverCommand || !r.parsed) continue;
        const flags: ConfigFlags = {};
        for (const k of CONFIG_FLAGS) if (typeof r.parsed.values[k] === 'string') (flags as Record<string, string>)[k] = r.parsed.values[k] as string;
        const configs: RegionConfig[] = [];
        for (const example of byKind.regionConfigs) {
          try {
            configs.push(loadRegionConfig({ mode: 'server', flags, env: inv.env, configFile: r.parsed.values.config ? example : undefined }));
          } catch (err) {
            problems.push(`${inv.where} with ${rel(example)}: ${(err as Error).message}`);
          }
        }
        const writable = (u.get('Service.ReadWritePaths') ?? []).flatMap((x) => x.split(/\s+/)).map((p) => p.replace(/^-/, ''));
        for (const c of configs) {
          if (c.dataDir && !writable.some((w) => c.dataDir === w || c.dataDir!.startsWith(`${w}/`)))
            problems.push(`${rel(f)}: data dir ${c.dataDir} (${c.dc}) is not under ReadWritePaths=${writable.join(' ')}`);
        }
        if (configs.length === 0) problems.push(`${rel(f)}: no config loaded`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('has a dedicated user, its env files, a restart policy, LimitNOFILE and the hardening', () => {
    const problems: string[] = [];
    for (const f of byKind.units) {
      const u = unit(f);
      const one = (k: string) => u.get(k)?.at(-1);
      const user = one('Service.User');
      if (!user || user === 'root' || user === '0') problems.push(`${rel(f)}: User= must name a dedicated user`);
      const envs = u.get('Service.EnvironmentFile') ?? [];
      if (envs.length === 0 || !envs.every((p) => /^-?\/etc\/isthmus\/[^/]+\.env$/.test(p)))
        problems.push(`${rel(f)}: EnvironmentFile=/etc/isthmus/*.env expected, got ${envs.join(', ')}`);
      if (!/^(on-failure|always|on-abnormal)$/.test(one('Service.Restart') ?? '')) problems.push(`${rel(f)}: Restart=`);
      if (!/^\d+$/.test(one('Service.LimitNOFILE') ?? '')) problems.push(`${rel(f)}: LimitNOFILE=`);
      if (one('Service.NoNewPrivileges') !== 'yes') problems.push(`${rel(f)}: NoNewPrivileges=yes`);
      if (one('Service.ProtectSystem') !== 'strict') problems.push(`${rel(f)}: ProtectSystem=strict`);
    }
    expect(problems).toEqual([]);
  });

  it('env files name only variables the code reads (or the units substitute), with Isthmus ports', () => {
    const problems: string[] = [];
    const substituted = new Set(byKind.units.flatMap((f) => [...read(f).matchAll(/\$\{(\w+)\}/g)].map((m) => m[1])));
    for (const f of byKind.envs) {
      for (const [k, v] of Object.entries(envFile(f))) {
        if (k.startsWith('ISTHMUS_') ? !SOURCE_TEXT.includes(k) : !substituted.has(k)) problems.push(`${rel(f)}: ${k} is read by nothing`);
        if (/^[^\s:/]+:\d{1,5}$/.test(v) && !isthmusPort(splitHostPort(v).port)) problems.push(`${rel(f)}: ${k}=${v}: port is none Isthmus uses`);
      }
    }
    expect(problems).toEqual([]);
  });
});

describe('deploy/kubernetes', () => {
  it('is written in the YAML subset this test reads', () => {
    expect(YAML_ERRORS).toEqual([]);
    for (const { file, doc } of YAML_DOCS) {
      expect(typeof doc.kind, file).toBe('string');
      expect(typeof doc.apiVersion, file).toBe('string');
    }
  });

  it('reads every file and every container runs only isthmus commands and flags that exist', () => {
    const problems: string[] = [];
    let n = 0;
    for (const pod of PODS) {
      for (const inv of podInvocations(pod, problems)) {
        n++;
        problems.push(...checkInvocation(inv).problems);
      }
    }
    expect(problems).toEqual([]);
    expect(n).toBeGreaterThanOrEqual(3);
    const run = PODS.flatMap((p) => podInvocations(p, []).map((i) => checkInvocation(i).command?.name));
    for (const name of ['server', 'gateway', 'connect proxy']) expect(run, `a container runs isthmus ${name}`).toContain(name);
  });

  it('runs the server with a region config (a ConfigMap in deploy/) that loads together with its flags', () => {
    const problems: string[] = [];
    for (const pod of PODS) {
      for (const inv of podInvocations(pod, problems)) {
        const r = checkInvocation(inv);
        if (r.command !== serverCommand || !r.parsed) continue;
        const path = r.parsed.values.config as string | undefined;
        const text = path ? mountedFile(pod, inv.container, path) : undefined;
        if (path && text === undefined) {
          problems.push(`${inv.where}: --config ${path} is not a ConfigMap key mounted from deploy/kubernetes`);
          continue;
        }
        const flags: ConfigFlags = {};
        for (const k of CONFIG_FLAGS) if (typeof r.parsed.values[k] === 'string') (flags as Record<string, string>)[k] = r.parsed.values[k] as string;
        try {
          loadRegionConfig({ mode: 'server', flags, env: inv.env, configFile: text === undefined ? undefined : tmpFile('region.json', text) });
        } catch (err) {
          problems.push(`${inv.where}: ${(err as Error).message}`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('ConfigMaps hold region configs that load and service definitions that parse', () => {
    let n = 0;
    for (const { file, doc } of docsOf('ConfigMap')) {
      for (const [key, text] of Object.entries((doc.data ?? {}) as Record<string, string>)) {
        if (!key.endsWith('.json')) continue;
        n++;
        // Placeholders an init container fills in from the pod.
        const json = JSON.parse(text.replace(/@POD_NAME@/g, 'web-0').replace(/@POD_IP@/g, '10.0.0.1')) as Record<string, unknown>;
        if ('service' in json || 'services' in json) {
          for (const d of parseServiceDefinition(json)) {
            const port = d.Connect?.SidecarService?.Port;
            if (port !== undefined) expect(port >= SIDECAR_RANGE[0] && port <= SIDECAR_RANGE[1], `${file} ${key}: sidecar port ${port}`).toBe(true);
          }
        } else {
          const config = loadRegionConfig({ mode: 'server', env: {}, configFile: tmpFile(key, text) });
          for (const a of [config.httpAddr, config.grpcAddr, config.grpcTlsAddr]) expect(isthmusPort(splitHostPort(a).port), `${file} ${key}: ${a}`).toBe(true);
        }
      }
    }
    expect(n).toBeGreaterThan(0);
  });

  it('opens only Isthmus ports (and the Redis port the server is given), and Services target ports that exist', () => {
    const problems: string[] = [];
    const redisPorts = new Set<number>();
    for (const pod of PODS) for (const inv of podInvocations(pod, [])) for (const p of flagPorts(checkInvocation(inv).parsed).redis) redisPorts.add(p);
    const containerPorts = (pod: Pod) =>
      [...list(pod.spec.initContainers), ...list(pod.spec.containers)].flatMap((c) => list(c.ports).map((p) => Number(p.containerPort)));
    for (const pod of PODS) {
      for (const c of [...list(pod.spec.initContainers), ...list(pod.spec.containers)]) {
        const where = `${pod.file} ${pod.name}/${String(c.name)}`;
        const ports = [
          ...list(c.ports).map((p) => p.containerPort),
          ...['readinessProbe', 'livenessProbe', 'startupProbe']
            .flatMap((pr) => [get(c, pr, 'httpGet', 'port'), get(c, pr, 'tcpSocket', 'port')])
            .filter((p) => p !== undefined),
        ];
        for (const p of ports) {
          const ok = isIsthmusImage(c.image) ? isthmusPort(Number(p)) : redisPorts.has(Number(p));
          if (!ok) problems.push(`${where}: port ${String(p)} is none Isthmus uses`);
        }
      }
      for (const inv of podInvocations(pod, [])) {
        for (const p of flagPorts(checkInvocation(inv).parsed).isthmus)
          if (!isthmusPort(p)) problems.push(`${inv.where}: port ${p} in a flag is none Isthmus uses`);
      }
    }
    for (const { file, doc } of docsOf('Service')) {
      const name = String(get(doc, 'metadata', 'name'));
      const selector = (get(doc, 'spec', 'selector') ?? {}) as YMap;
      const targets = PODS.filter((p) => p.namespace === get(doc, 'metadata', 'namespace') && Object.entries(selector).every(([k, v]) => p.labels[k] === v));
      if (targets.length === 0) problems.push(`${file} Service ${name}: selects no workload in deploy/kubernetes`);
      for (const p of list(get(doc, 'spec', 'ports'))) {
        const port = Number(p.port);
        const target = Number(p.targetPort ?? p.port);
        if (!isthmusPort(port) && !redisPorts.has(port)) problems.push(`${file} Service ${name}: port ${port} is none Isthmus uses`);
        if (!targets.some((t) => containerPorts(t).includes(target)))
          problems.push(`${file} Service ${name}: targetPort ${target} is no containerPort of what it selects`);
      }
    }
    const gw = docsOf('Service').filter((d) => get(d.doc, 'spec', 'type') === 'LoadBalancer');
    expect(gw.flatMap((d) => list(get(d.doc, 'spec', 'ports')).map((p) => p.port))).toEqual([GATEWAY_PORT]);
    expect(problems).toEqual([]);
  });

  it('probes: HTTP on the server answers 200 on a real server (ACL deny, no token); TCP on the gateway is its listener', async () => {
    const problems: string[] = [];
    const httpPaths = new Set<string>();
    for (const pod of PODS) {
      for (const inv of podInvocations(pod, [])) {
        const r = checkInvocation(inv);
        const c = inv.container;
        for (const pr of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
          const http = get(c, pr, 'httpGet') as YMap | undefined;
          const tcp = get(c, pr, 'tcpSocket') as YMap | undefined;
          if (http) {
            if (r.command !== serverCommand) problems.push(`${inv.where}: ${pr} httpGet on a container that runs no server`);
            else {
              const text = r.parsed?.values.config ? mountedFile(pod, c, String(r.parsed.values.config)) : undefined;
              const cfg = loadRegionConfig({ mode: 'server', env: {}, configFile: text ? tmpFile('region.json', text) : undefined });
              if (Number(http.port) !== splitHostPort(cfg.httpAddr).port)
                problems.push(`${inv.where}: ${pr} port ${String(http.port)} is not the HTTP port ${cfg.httpAddr}`);
              httpPaths.add(String(http.path));
            }
          }
          if (tcp && r.command?.name === 'gateway') {
            const addr = (r.parsed?.values.addr as string | undefined) ?? `0.0.0.0:${GATEWAY_PORT}`;
            if (Number(tcp.port) !== splitHostPort(addr).port) problems.push(`${inv.where}: ${pr} port ${String(tcp.port)} is not --addr ${addr}`);
          }
        }
      }
    }
    expect(problems).toEqual([]);
    expect(httpPaths.size).toBeGreaterThan(0);
    const config = loadRegionConfig({
      mode: 'server',
      env: {},
      flags: {
        'http-addr': '127.0.0.1:0',
        'grpc-addr': '127.0.0.1:0',
        'grpc-tls-addr': '127.0.0.1:0',
        'data-dir': join(tmp, 'probe-data'),
        'log-level': 'error',
      },
    });
    expect(config.aclDefaultPolicy).toBe('deny');
    const region = await startRegion(config, { processMetrics: false });
    try {
      for (const path of httpPaths) {
        const res = await fetch(`http://${region.httpAddress}${path}`);
        expect(res.status, path).toBe(200);
      }
    } finally {
      await region.stop();
    }
  });
});

describe('deploy/container/Containerfile', () => {
  const ins = containerfile();
  const all = (i: string) => ins.filter((x) => x.instr === i);

  it('exposes exactly the default server ports and the gateway port', () => {
    const exposed = all('EXPOSE')
      .flatMap((x) => x.args.split(/\s+/))
      .map((p) => Number(p.replace(/\/tcp$/, '')));
    expect([...exposed].sort()).toEqual([...new Set([...SERVER_PORTS, GATEWAY_PORT])].sort());
  });

  it('enters through the package bin with node, as a non-root user, from a Node the package supports', () => {
    expect(ENTRYPOINT).toEqual(['node', PKG.bin.isthmus]);
    expect(existsSync(join(ROOT, PKG.bin.isthmus))).toBe(true);
    const user = all('USER').at(-1)?.args.split(':')[0];
    expect(user).toBeDefined();
    expect(['root', '0']).not.toContain(user);
    const min = Number(/>=\s*(\d+)/.exec(PKG.engines.node)?.[1]);
    for (const f of all('FROM')) {
      const m = /^node:(\d+)-slim\b/.exec(f.args);
      expect(m, f.args).not.toBeNull();
      expect(Number(m![1])).toBeGreaterThanOrEqual(min);
    }
  });

  it('copies only paths that exist in the repository (and its ignore file keeps them)', () => {
    for (const c of all('COPY').filter((x) => !x.args.startsWith('--from'))) {
      const parts = c.args.split(/\s+/);
      for (const src of parts.slice(0, -1)) expect(existsSync(join(ROOT, src)), `COPY ${src}`).toBe(true);
    }
    for (const f of byKind.ignore) {
      for (const line of read(f).split('\n')) {
        const m = /^!(.+?)\/?$/.exec(line.trim());
        if (m) expect(existsSync(join(ROOT, m[1])), `${rel(f)}: ${line}`).toBe(true);
      }
    }
  });
});

describe('deploy/README.md', () => {
  it('runs only isthmus commands and flags that exist', () => {
    const problems: string[] = [];
    const names = new Set<string>();
    for (const inv of readmeInvocations(problems)) {
      const r = checkInvocation(inv);
      if (r.command) names.add(r.command.name);
      problems.push(...r.problems);
      for (const p of flagPorts(r.parsed).isthmus) if (!isthmusPort(p)) problems.push(`${inv.where}: port ${p} is none Isthmus uses`);
    }
    expect(problems).toEqual([]);
    for (const name of ['acl bootstrap', 'federation token', 'federation status']) expect([...names], `the README shows isthmus ${name}`).toContain(name);
  });

  it('says where every file goes, and names only variables the code reads', () => {
    const text = read(byKind.readme[0]);
    for (const f of FILES.filter((x) => x !== byKind.readme[0])) expect(text, relative(DEPLOY, f)).toContain(relative(DEPLOY, f));
    const problems: string[] = [];
    for (const f of FILES) for (const m of read(f).matchAll(/\bISTHMUS_[A-Z0-9_]+\b/g)) if (!SOURCE_TEXT.includes(m[0])) problems.push(`${rel(f)}: ${m[0]}`);
    expect(problems).toEqual([]);
  });
});
