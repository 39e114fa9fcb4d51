import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { testApp } from './testing/test-app.js';
import { registerUiRoutes, UI_DIR } from './routes-ui.js';

const app = testApp((a) => registerUiRoutes(a));

describe('dashboard files at /ui', () => {
  it('serves the page at /ui and /ui/, each file with its type, and the page loads nothing from elsewhere', async () => {
    for (const path of ['/ui', '/ui/']) {
      const res = await app.request(path);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
      expect(res.headers.get('content-security-policy')).toContain("default-src 'self'");
      expect(await res.text()).toContain('<script type="module" src="/ui/app.js"></script>');
    }
    const js = await app.request('/ui/app.js');
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    const css = await app.request('/ui/style.css');
    expect(css.headers.get('content-type')).toBe('text/css; charset=utf-8');
    // No fonts, scripts or styles from elsewhere (the SVG namespace is a name, not a fetch).
    for (const name of readdirSync(UI_DIR)) expect(readFileSync(new URL(name, UI_DIR), 'utf8'), name).not.toMatch(/https?:\/\/(?!www\.w3\.org\/2000\/svg')/);
  });

  it('serves every module the page imports', async () => {
    const modules = readdirSync(UI_DIR).filter((n) => n.endsWith('.js'));
    for (const name of modules) {
      const text = readFileSync(new URL(name, UI_DIR), 'utf8');
      for (const m of text.matchAll(/from '\.\/([^']+)'/g)) expect(modules, `${name} imports ${m[1]}`).toContain(m[1]);
      expect((await app.request(`/ui/${name}`)).status).toBe(200);
    }
  });

  it('answers 404 for anything that is not a file of the folder', async () => {
    for (const path of ['/ui/missing.js', '/ui/..%2Fapi%2Fapp.ts', '/ui/%2e%2e%2fpackage.json', '/ui/.hidden.js', '/ui/README.md', '/ui/sub/app.js']) {
      const res = await app.request(path);
      expect(res.status, path).toBe(404);
      if (res.headers.get('content-type')?.includes('json')) expect(((await res.json()) as { Error: string }).Error).toBe('ISTHMUS_ERR_NOT_FOUND');
    }
  });
});
