// A skewed wall clock for one process tree, with Debian's libfaketime: the offset applies to
// Date.now() and to OpenSSL's certificate checks alike, while monotonic time (timers, backoff) stays
// real. scripts/test.mjs installs the package when test/faults/ is present.
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';

export const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';

/** Environment that runs a process with its clock `offset` off, in libfaketime's syntax: "+3m", "-3m", "+1h". */
export function skewedClock(offset: string): NodeJS.ProcessEnv {
  if (!/^[+-]\d+[smhd]?$/.test(offset)) throw new Error(`clock offset must look like +3m or -90s, got "${offset}"`);
  return { LD_PRELOAD: LIBFAKETIME, FAKETIME: offset, FAKETIME_DONT_FAKE_MONOTONIC: '1' };
}

/** The offset in ms a node process under `env` sees against ours; throws if libfaketime is missing. */
export function measuredSkewMs(env: NodeJS.ProcessEnv): number {
  if (!existsSync(LIBFAKETIME)) throw new Error(`${LIBFAKETIME} is missing: apt-get install faketime (scripts/test.mjs does it)`);
  const before = Date.now();
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(Date.now()))'], { env: { ...process.env, ...env }, encoding: 'utf8' });
  const after = Date.now();
  if (r.status !== 0) throw new Error(`node under libfaketime failed: ${r.stderr}`);
  return Number(r.stdout) - (before + after) / 2;
}
