// Domain folders talk through their index.ts only (core/ holds one concept per file and config/ one
// loader per process, each imported file by file: a sidecar loads its own loader and not the
// server's); domain folders never import the API, the CLI or a composition root.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../../src', import.meta.url));
const TOP = new Set(['api', 'cli', 'region', 'gateway-process', 'sidecar-process']);
const FILE_BY_FILE = new Set(['core', 'config']);

function files(dir: string, out: string[] = []): string[] {
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) files(p, out);
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

describe('import boundaries', () => {
  it('reaches other domains only through their index.ts, and keeps domains off api/cli/region', () => {
    const problems: string[] = [];
    for (const file of files(SRC)) {
      const rel = relative(SRC, file);
      const domain = rel.split('/')[0];
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/from '(\.\.?\/[^']+)'/g)) {
        const target = relative(SRC, join(file, '..', m[1]));
        const targetDomain = target.split('/')[0];
        if (targetDomain === domain || FILE_BY_FILE.has(targetDomain)) continue;
        if (target !== `${targetDomain}/index.js`) problems.push(`${rel} imports ${m[1]} (use ../${targetDomain}/index.js)`);
        if (TOP.has(targetDomain) && !TOP.has(domain)) problems.push(`${rel} (a domain) imports ${targetDomain}/`);
      }
    }
    expect(problems).toEqual([]);
  });
});
