// The loader hook of module-trace.mjs.
import { appendFileSync } from 'node:fs';

const file = process.env.MODULE_TRACE_FILE;

export async function load(url, context, next) {
  if (file && url.startsWith('file:')) appendFileSync(file, `${url}\n`);
  return next(url, context);
}
