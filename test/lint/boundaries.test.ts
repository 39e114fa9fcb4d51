// The import floors of .dependency-cruiser.js, run on a small tree that breaks each of them once, in
// every form an import takes (bare, re-export, dynamic, type-only), and on one that keeps them.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { cruise, type ICruiseResult, type IConfiguration } from 'dependency-cruiser';
import { afterAll, describe, expect, it } from 'vitest';

// The checker's own configuration, as `npm test` runs it (a plain JS module, hence no static import).
const config = (await import(new URL('../../.dependency-cruiser.js', import.meta.url).href)).default as IConfiguration;

const dirs: string[] = [];

/** Writes `files` under a fresh folder and returns "rule: from → to" for each violation found. */
async function violations(files: Record<string, string>): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'isthmus-boundaries-'));
  dirs.push(dir);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  const { output } = await cruise(['src'], { ...config.options, ruleSet: { forbidden: config.forbidden }, validate: true, baseDir: dir, outputType: 'json' });
  const result = (typeof output === 'string' ? JSON.parse(output) : output) as ICruiseResult;
  return result.summary.violations.map((v) => `${v.rule.name}: ${v.from} → ${v.to}`).sort();
}

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const tree = {
  'src/core/errors.ts': 'export const E = 1;\n',
  'src/store/index.ts': "export { E } from '../core/errors.js';\n",
  'src/catalog/index.ts': "export { record } from './record.js';\n",
  'src/catalog/record.ts': "import '../store/index.js';\nexport const record = 1;\n",
  'src/acl/index.ts': "import { record } from '../catalog/index.js';\nexport const acl = record;\n",
  'src/api/index.ts': "import { acl } from '../acl/index.js';\nexport const api = acl;\n",
  'src/region/index.ts': "import { api } from '../api/index.js';\nexport const region = api;\n",
  'src/ui/app.js': "import './dom.js';\n",
  'src/ui/dom.js': 'export const h = 1;\n',
};

describe('import boundaries (dependency-cruiser)', () => {
  it('finds nothing in a tree that keeps them', async () => {
    expect(await violations(tree)).toEqual([]);
  });

  it('refuses a deep import into another domain, as a bare import, a re-export or an import()', async () => {
    expect(
      await violations({
        ...tree,
        'src/acl/bare.ts': "import '../catalog/record.js';\n",
        'src/acl/again.ts': "export { record } from '../catalog/record.js';\n",
        'src/acl/later.ts': "export const later = () => import('../catalog/record.js');\n",
      }),
    ).toEqual([
      'domain-through-index: src/acl/again.ts → src/catalog/record.ts',
      'domain-through-index: src/acl/bare.ts → src/catalog/record.ts',
      'domain-through-index: src/acl/later.ts → src/catalog/record.ts',
    ]);
  });

  it('refuses a domain that imports api/ or region/, even for a type, and any arrow up the layers', async () => {
    expect(
      await violations({
        ...tree,
        'src/acl/up.ts': "import type { api } from '../api/index.js';\nexport type A = typeof api;\n",
        'src/store/up.ts': "import '../catalog/index.js';\n",
        'src/api/up.ts': "export const r = () => import('../region/index.js');\n",
      }),
    ).toEqual([
      'domain-not-top: src/acl/up.ts → src/api/index.ts',
      'no-arrow-up-from-domains: src/acl/up.ts → src/api/index.ts',
      'no-arrow-up-from-edges: src/api/up.ts → src/region/index.ts',
      'no-arrow-up-from-store: src/store/up.ts → src/catalog/index.ts',
    ]);
  });

  it('refuses a cycle, a folder outside the layers, and src/ui reaching out or being reached', async () => {
    expect(
      await violations({
        ...tree,
        'src/catalog/loop.ts': "import './record.js';\nexport const loop = 1;\n",
        'src/catalog/record.ts': "import './loop.js';\nexport const record = 1;\n",
        'src/extra/index.ts': "import '../core/errors.js';\n",
        'src/ui/dom.js': "import '../core/errors.js';\nexport const h = 1;\n",
        'src/api/page.ts': "import '../ui/dom.js';\n",
        'src/catalog/helper.ts': "import './record.test.js';\n",
        'src/catalog/record.test.ts': 'export {};\n',
      }),
    ).toEqual([
      'folder-in-a-layer: src/extra/index.ts → src/core/errors.ts',
      'no-circular: src/catalog/loop.ts → src/catalog/record.ts',
      'not-to-test-code: src/catalog/helper.ts → src/catalog/record.test.ts',
      'not-to-ui: src/api/page.ts → src/ui/dom.js',
      'ui-alone: src/ui/dom.js → src/core/errors.ts',
    ]);
  });
});
