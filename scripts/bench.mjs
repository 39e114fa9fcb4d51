#!/usr/bin/env node
// `npm run bench [-- NAME...] [--OPTION VALUE...]`: runs each benchmarks/*.bench.ts in its own process,
// one after another, and prints their JSON result lines (the figures in benchmarks/README.md come from
// these). Options (`--duration 60s`, `--duration=60s`) are passed on to every benchmark run; the soak
// runs only when named (`npm run bench -- soak`), as it takes ten minutes. It builds dist/ first (the
// servers, gateways and sidecars under test run the build, as the `isthmus` command does);
// BENCH_NO_BUILD=1 skips that.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

const dir = new URL('../benchmarks/', import.meta.url).pathname;
const NAMED_ONLY = ['soak.bench.ts'];
const wanted = [];
const options = [];
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  if (!args[i].startsWith('--')) wanted.push(args[i]);
  else {
    options.push(args[i]);
    if (!args[i].includes('=') && i + 1 < args.length && !args[i + 1].startsWith('--')) options.push(args[++i]);
  }
}
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.bench.ts'))
  .filter((f) => (wanted.length === 0 ? !NAMED_ONLY.includes(f) : wanted.some((w) => f.includes(w))))
  .sort();
if (process.env.BENCH_NO_BUILD !== '1') {
  console.error('== npm run build');
  const b = spawnSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' });
  if (b.status !== 0) process.exit(1);
}
let failed = 0;
for (const f of files) {
  console.error(`== ${f}`);
  const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', join(dir, f), ...options], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
