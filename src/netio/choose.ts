// Which data path this process uses: the fast one, unless it is switched off (ISTHMUS_FAST_PATH=off,
// or the caller's option) or fails its self-test, which runs once per process, on first use, before
// anything is served. The choice says why, for the one log line its user writes at start.
import net from 'node:net';
import type { Accepted, DataPath } from './data-path.js';
import { fastPath, fastPathMissing } from './fast-path.js';
import { plainPath } from './plain-path.js';
import { selfTest } from './self-test.js';

export interface DataPathChoice {
  path: DataPath;
  /** Whether the fast path's self-test passed; skipped when the fast path is switched off. */
  selfTest: 'passed' | 'failed' | 'skipped';
  /** Why the plain path, when it is. */
  reason?: string;
}

export interface ChooseOptions {
  /**
   * true: the fast path wherever it passes its self-test; false: the plain path. Unset: as the
   * environment says (ISTHMUS_FAST_PATH=off: the plain path).
   */
  fastPath?: boolean;
  /** Default process.env. */
  env?: NodeJS.ProcessEnv;
}

/** The fast path's self-test, run once per process: how it went. */
let fastTried: Promise<DataPathChoice> | undefined;

export function chooseDataPath(opts: ChooseOptions = {}): Promise<DataPathChoice> {
  if (opts.fastPath === false) return Promise.resolve({ path: plainPath, selfTest: 'skipped', reason: 'fast path switched off (--fast-path off)' });
  const env = (opts.env ?? process.env).ISTHMUS_FAST_PATH;
  if (opts.fastPath === undefined && env?.toLowerCase() === 'off')
    return Promise.resolve({ path: plainPath, selfTest: 'skipped', reason: `ISTHMUS_FAST_PATH=${env}` });
  fastTried ??= tryDataPath(fastPath, fastPathMissing);
  return fastTried;
}

/**
 * `candidate` when it passes its self-test, else the plain path and what went wrong (`missing`: what
 * the candidate already knows it lacks, a failure without a test).
 */
export async function tryDataPath(candidate: DataPath, missing?: string): Promise<DataPathChoice> {
  try {
    if (missing !== undefined) throw new Error(missing);
    await selfTest(candidate);
    return { path: candidate, selfTest: 'passed' };
  } catch (err) {
    return { path: plainPath, selfTest: 'failed', reason: `self-test failed: ${(err as Error).message}` };
  }
}

/**
 * The one line a process writes at start about its data path: `data path` with the path, how the
 * self-test went and why the plain path when it is; a warning when the self-test failed.
 */
export function logDataPath(
  log: { info(msg: string, fields: Record<string, unknown>): void; warn(msg: string, fields: Record<string, unknown>): void },
  choice: DataPathChoice,
): void {
  const fields = { path: choice.path.name, selfTest: choice.selfTest, reason: choice.reason };
  if (choice.selfTest === 'failed') log.warn('data path', fields);
  else log.info('data path', fields);
}

/**
 * Closes an accepted connection no TcpConn or socket was made for, whichever path accepted it: a
 * process that passes connections on to others closes its copies so.
 */
export function closeAccepted(c: Accepted): void {
  ((c as unknown) instanceof net.Socket ? plainPath : fastPath).close(c);
}
