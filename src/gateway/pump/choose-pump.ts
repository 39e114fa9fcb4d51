// Which byte pump this process uses: the native one when it was built and loads, unless
// ISTHMUS_PUMP=off; otherwise the TypeScript one, with the reason for the one log line.
import { ErrorCodes, IsthmusError } from '../../core/errors.js';
import type { BytePump } from './byte-pump.js';
import { JsPump } from './js-pump.js';
import { loadNativePump } from './native-pump.js';

export interface PumpChoice {
  pump: BytePump;
  /** Why the TypeScript pump, when it is. */
  reason?: string;
}

/** ISTHMUS_PUMP: unset or `auto` (the native pump where it loads), or `off` (the TypeScript pump). */
export function choosePump(env: NodeJS.ProcessEnv = process.env): PumpChoice {
  const setting = env.ISTHMUS_PUMP;
  const value = setting?.trim().toLowerCase();
  if (value === 'off') return { pump: new JsPump(), reason: `ISTHMUS_PUMP=${setting}` };
  if (value !== undefined && value !== '' && value !== 'auto')
    throw new IsthmusError(ErrorCodes.BAD_CONFIG, `ISTHMUS_PUMP must be "auto" or "off", not ${JSON.stringify(setting)}`, {
      violations: [{ Field: 'ISTHMUS_PUMP', Message: 'must be "auto" or "off"' }],
    });
  const native = loadNativePump();
  if (!native.available) return { pump: new JsPump(), reason: native.reason };
  return { pump: native.create() };
}

/** The one line a process writes at start about its byte pump. */
export function logPump(log: { info(msg: string, fields: Record<string, unknown>): void }, choice: PumpChoice): void {
  log.info('byte pump', { pump: choice.pump.name, reason: choice.reason });
}
