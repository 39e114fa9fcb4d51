// Which byte pump this process uses, from ISTHMUS_PUMP: `on` the native one (a start-up error where
// it does not load), `auto` the native one where it loads, `off` none of it; with the reason for the
// one log line when it is not the native one.
import { ErrorCodes, IsthmusError } from '../../core/errors.js';
import type { BytePump } from './byte-pump.js';
import { JsPump } from './js-pump.js';
import { loadNativePump, type NativePump, type NativePumpLoad } from './native-pump.js';

export type PumpSetting = 'off' | 'on' | 'auto';

const SETTINGS: readonly string[] = ['off', 'on', 'auto'];

/** ISTHMUS_PUMP as set (undefined: unset or empty), or a clear error naming it. */
export function pumpSetting(env: NodeJS.ProcessEnv = process.env): PumpSetting | undefined {
  const setting = env.ISTHMUS_PUMP;
  const value = setting?.trim().toLowerCase();
  if (value === undefined || value === '') return undefined;
  if (!SETTINGS.includes(value))
    throw new IsthmusError(ErrorCodes.BAD_CONFIG, `ISTHMUS_PUMP must be "off", "on" or "auto", not ${JSON.stringify(setting)}`, {
      violations: [{ Field: 'ISTHMUS_PUMP', Message: 'must be "off", "on" or "auto"' }],
    });
  return value as PumpSetting;
}

/**
 * The native pump for `setting`, or why none: `on` where it cannot load is an error naming where the
 * setting came from (`setBy`: the variable, or a flag or config key that set it).
 */
export function chooseNativePump(
  setting: PumpSetting,
  load: () => NativePumpLoad = loadNativePump,
  setBy = 'ISTHMUS_PUMP',
): { pump: NativePump; reason?: undefined } | { pump?: undefined; reason: string } {
  if (setting === 'off') return { reason: `${setBy}=off` };
  const native = load();
  if (native.available) return { pump: native.create() };
  if (setting === 'on')
    throw new IsthmusError(ErrorCodes.BAD_CONFIG, `${setBy}=on, but the native byte pump cannot be used: ${native.reason}`, {
      violations: [{ Field: setBy, Message: `"on" needs the native byte pump: ${native.reason}` }],
    });
  return { reason: native.reason };
}

export interface PumpChoice {
  pump: BytePump;
  /** Why the TypeScript pump, when it is. */
  reason?: string;
}

/** A byte pump for ISTHMUS_PUMP (unset: `auto`): the native one, or the TypeScript one and why. */
export function choosePump(env: NodeJS.ProcessEnv = process.env): PumpChoice {
  const got = chooseNativePump(pumpSetting(env) ?? 'auto');
  return got.pump ? { pump: got.pump } : { pump: new JsPump(), reason: got.reason };
}

/** The one line a process writes at start about its byte pump. */
export function logPump(log: { info(msg: string, fields: Record<string, unknown>): void }, choice: PumpChoice): void {
  log.info('byte pump', { pump: choice.pump.name, reason: choice.reason });
}
