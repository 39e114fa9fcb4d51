#!/usr/bin/env node
// `npm test`: brings what npm does not (Chromium for the browser tests, libfaketime for the fault
// tests, from Debian's packages), runs the gates in STYLE.md's order (format check, lint, type
// check, import check), builds the CLI the tests run, runs vitest, and ends with one plain line
// "N passed, N failed".
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const args = process.argv.slice(2);

function run(cmd, cmdArgs, opts = {}) {
  const r = spawnSync(cmd, cmdArgs, { stdio: 'inherit', cwd: root, ...opts });
  return r.status ?? 1;
}

function findFiles(dir, pattern, out = []) {
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) findFiles(p, pattern, out);
    else if (pattern.test(name)) out.push(p);
  }
  return out;
}

/** Installs a Debian package when `path` (a file it brings) is missing, for `tests`; exits if it cannot. */
function ensureDebianPackage(pkg, path, tests) {
  if (existsSync(path)) return;
  console.log(`== Installing ${pkg} from Debian packages (${tests} need it)`);
  const sudo = process.getuid && process.getuid() !== 0 ? ['sudo'] : [];
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const apt = (a) => (sudo.length ? run('sudo', ['apt-get', ...a], { env }) : run('apt-get', a, { env }));
  if (apt(['update', '-qq']) !== 0 || apt(['install', '-y', '-qq', pkg]) !== 0) {
    console.error(`Error: could not install ${pkg} (apt-get install ${pkg}); ${tests} cannot run.`);
    process.exit(1);
  }
}

const ensureChromium = () => ensureDebianPackage('chromium', '/usr/bin/chromium', 'the browser tests');
// The fault suite skews one DC's clock with libfaketime (Debian's faketime package).
const ensureFaketime = () => ensureDebianPackage('faketime', '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1', 'the clock-skew fault tests');

if (findFiles(join(root, 'test'), /\.browser\.test\.ts$/).length > 0) ensureChromium();
if (existsSync(join(root, 'test', 'faults'))) ensureFaketime();

/** Runs one gate: its commands in order; the first that fails ends `npm test` as one failure. */
function gate(title, ...commands) {
  console.log(`== ${title}`);
  for (const [cmd, ...cmdArgs] of commands) {
    if (run('npx', ['--no-install', cmd, ...cmdArgs]) !== 0) {
      console.log('0 passed, 1 failed');
      process.exit(1);
    }
  }
}

gate('Format check', ['prettier', '--check', '--log-level', 'warn', '.']);
gate('Lint', ['eslint', '--cache', '--cache-location', 'node_modules/.cache/eslint/', '--cache-strategy', 'content', '.']);
gate('Type check', ['tsc', '--noEmit', '-p', 'tsconfig.json'], ['tsc', '-p', 'tsconfig.ui.json']);
gate('Import check (cycles and layers)', ['depcruise', 'src', 'test', 'benchmarks', 'scripts', 'bin', '--output-type', 'err']);
gate('Build', ['tsc', '-p', 'tsconfig.build.json']);

console.log('== Tests');
mkdirSync(join(root, 'test-results'), { recursive: true });
const report = join(root, 'test-results', 'vitest.json');
const code = run('npx', ['--no-install', 'vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...args]);
let passed = 0;
let failed = 0;
try {
  const r = JSON.parse(readFileSync(report, 'utf8'));
  passed = r.numPassedTests ?? 0;
  failed = (r.numFailedTests ?? 0) + (r.numRuntimeErrorTestSuites ?? 0);
  // A file that fails to load has no tests counted: count it as a failure.
  for (const f of r.testResults ?? []) if (f.status === 'failed' && (f.assertionResults ?? []).length === 0) failed++;
} catch {
  failed = Math.max(failed, 1);
}
if (code !== 0 && failed === 0) failed = 1;
console.log(`${passed} passed, ${failed} failed`);
process.exit(code === 0 && failed === 0 ? 0 : 1);
