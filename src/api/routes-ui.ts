// The dashboard at /ui: the static files of src/ui/ (plain HTML, CSS and ES modules), read from the
// source tree, which sits at the same relative path from src/api/ and from dist/api/.
import { readFile } from 'node:fs/promises';
import type { Hono } from 'hono';
import type { ApiEnv } from './env.js';
import { notFound } from '../core/errors.js';

export const UI_DIR = new URL('../../src/ui/', import.meta.url);

const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  svg: 'image/svg+xml',
};

// One flat folder of plain names: nothing with a slash or a dot-dot can name a file outside it.
const FILE_RE = /^[a-z0-9][a-z0-9-]*\.(html|js|css|svg)$/;

// The page loads nothing but its own files and talks to nothing but this API.
const HEADERS = {
  'Cache-Control': 'no-cache',
  'X-Content-Type-Options': 'nosniff',
  'Content-Security-Policy': "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
};

export interface UiRouteDeps {
  /** Where the files are (tests point it elsewhere); default src/ui/. */
  dir?: URL;
}

export function registerUiRoutes(app: Hono<ApiEnv>, deps: UiRouteDeps = {}): void {
  const dir = deps.dir ?? UI_DIR;

  const serve = async (name: string): Promise<Response> => {
    const ext = FILE_RE.exec(name)?.[1];
    const body = ext ? await readFile(new URL(name, dir)).catch(() => undefined) : undefined;
    if (!ext || !body) throw notFound(`no such file in the dashboard: ${name}`);
    return new Response(new Uint8Array(body), { status: 200, headers: { ...HEADERS, 'Content-Type': TYPES[ext] } });
  };

  // The page uses absolute /ui/... paths, so /ui and /ui/ both work as its address.
  app.get('/ui', () => serve('index.html'));
  app.get('/ui/', () => serve('index.html'));
  app.get('/ui/:file', (c) => serve(c.req.param('file')));
}
