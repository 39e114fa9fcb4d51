// Domains do not read each other's storage: a Store table's name, as its constant or as a string
// handed to the Store, appears only where the table's owner lives; everyone else asks the owner
// (catalog.watch('services'), intentions.onChange(...), ca.indexedRoots(), AuditLog, ...).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SRC = join(ROOT, 'src');

/** Each table and where its owner lives (a folder of src/, or one file). */
const OWNERS: { owner: string; tables: string[] }[] = [
  { owner: 'catalog/', tables: ['services', 'checks', 'nodes'] },
  { owner: 'acl/', tables: ['acl-tokens', 'acl-policies', 'acl-meta'] },
  { owner: 'ca/', tables: ['ca-roots', 'ca-intermediates', 'ca-secrets', 'ca-config'] },
  { owner: 'intentions/', tables: ['intentions'] },
  { owner: 'config-entries/', tables: ['config-entries'] },
  { owner: 'federation/', tables: ['fed-members', 'fed-join-tokens', 'fed-state', 'fed-services', 'fed-peers'] },
  { owner: 'core/audit.ts', tables: ['audit'] },
  { owner: 'region/trust-domain.ts', tables: ['meta'] },
];

/**
 * Known uses still to go, as [file or folder, constant or table]. Federation is being split into
 * its parts; those convert their catalog reads to catalog.onChange and their own tables behind
 * federation functions, and these entries go with them. Federation replicates other domains'
 * tables as opaque entries, so its tests name them.
 */
const PENDING: [string, string][] = [
  ['federation/federation.test.ts', 'services'],
  ['federation/federation.test.ts', 'intentions'],
  ['federation/federation.test.ts', 'ca-secrets'],
];

function files(dir: string, out: string[] = []): string[] {
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) files(p, out);
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** A folder owns what is under it; a file owner, itself and its unit test. */
const owns = (owner: string, rel: string) => (owner.endsWith('/') ? rel.startsWith(owner) : rel === owner || rel === owner.replace(/\.ts$/, '.test.ts'));
const pending = (rel: string, name: string) => PENDING.some(([where, n]) => n === name && owns(where, rel));
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const sources = files(SRC).map((file) => ({ file, rel: relative(SRC, file), text: readFileSync(file, 'utf8') }));

/** The constants that hold each owner's table names (`const SERVICES = 'services'`), found in its own files. */
const constants = OWNERS.map(({ owner, tables }) => {
  const names = new Map<string, string>();
  for (const s of sources) {
    if (!owns(owner, s.rel) || s.rel.endsWith('.test.ts')) continue;
    for (const m of s.text.matchAll(/\bconst ([A-Z][A-Z0-9_]*)\s*(?::[^=]+)?=\s*'([a-z][a-z-]*)'/g)) if (tables.includes(m[2])) names.set(m[1], m[2]);
  }
  return { owner, tables, names };
});

describe('storage boundaries', () => {
  it('finds a constant for every table it knows (the list above has not gone stale)', () => {
    const missing = constants.flatMap(({ owner, tables, names }) => tables.filter((t) => ![...names.values()].includes(t)).map((t) => `${owner}: ${t}`));
    expect(missing).toEqual([]);
  });

  it("keeps table-name constants out of other folders' imports (src and benchmarks)", () => {
    const callers = [...sources, ...files(join(ROOT, 'benchmarks')).map((file) => ({ file, rel: relative(SRC, file), text: readFileSync(file, 'utf8') }))];
    const problems: string[] = [];
    for (const { file, rel, text } of callers) {
      for (const m of text.matchAll(/(?:import|export)\s+(?:type\s+)?\{([^}]*)\}\s*from\s*'(\.{1,2}\/[^']+)'/g)) {
        const target = relative(SRC, resolve(dirname(file), m[2]));
        for (const { owner, names } of constants) {
          if (!owns(owner, target) || owns(owner, rel)) continue;
          // `NAME`, `type NAME`, `NAME as Alias`: what is imported is NAME.
          for (const item of m[1].split(',').map(
            (x) =>
              x
                .trim()
                .replace(/^type\s+/, '')
                .split(/\s+as\s+/)[0],
          )) {
            if (names.has(item) && !pending(rel, item)) problems.push(`${rel} imports ${item} from ${owner} (ask the owner through its functions)`);
          }
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it("hands the Store no other owner's table by its name (src and benchmarks, the store's own suite aside)", () => {
    const callers = [...sources, ...files(join(ROOT, 'benchmarks')).map((file) => ({ file, rel: relative(SRC, file), text: readFileSync(file, 'utf8') }))];
    const problems: string[] = [];
    for (const { owner, tables } of OWNERS) {
      for (const table of tables) {
        const t = `'${escape(table)}'`;
        // A table named in an op, compared with a change's table, or given to a Store read or wait.
        const uses = new RegExp(
          `\\btable\\s*(?::|===|!==)\\s*${t}|\\.(?:get|list|tableIndex)\\s*(?:<[^>()]*>)?\\(\\s*${t}|waitForChange\\s*\\(\\s*\\[[^\\]]*${t}|new Set\\(\\s*\\[[^\\]]*${t}`,
        );
        for (const { rel, text } of callers) {
          if (owns(owner, rel) || rel.startsWith('store/') || pending(rel, table)) continue;
          if (uses.test(text)) problems.push(`${rel} names ${owner}'s table ${t}`);
        }
      }
    }
    expect(problems).toEqual([]);
  });
});
