// The value rules the gateway's and the sidecar's schemas share. Each message quotes what it got
// (a flag's value is the operator's own typing), except a token's, which is a secret.
import { z } from 'zod';
import { parseDuration } from '../core/duration.js';
import { parseHostPort, type HostPort } from '../core/names.js';
import type { LogLevel } from '../telemetry/index.js';

const got = (v: unknown) => (typeof v === 'string' ? `"${v}"` : JSON.stringify(v));

/** A setting read from its text by `read`; refused as "must be <rule>, got <value>". */
function rule<T>(what: string, read: (text: string) => T | undefined) {
  return z.unknown().transform((v, ctx): T => {
    // A number in a JSON config file reads as the same text on the command line.
    const text = typeof v === 'number' ? String(v) : v;
    const out = typeof text === 'string' ? read(text) : undefined;
    if (out !== undefined) return out;
    ctx.addIssue({ code: 'custom', message: `must be ${what}, got ${got(v)}` });
    return z.NEVER;
  });
}

export const pattern = (re: RegExp, what: string) => rule(what, (t) => (re.test(t) ? t : undefined));

export const hostPort = (what: string, allowPortZero: boolean) => rule<HostPort>(what, (t) => parseHostPort(t, { portZero: allowPortZero }));

/** An address to dial, kept as written (a name stays a name, resolved when dialed). */
export const dialAddress = (what: string) => rule(what, (t) => (parseHostPort(t) ? t : undefined));

export const wholeNumber = (min: number, max: number) =>
  rule(`a whole number from ${min} to ${max}`, (t) => (/^\d+$/.test(t) && Number(t) >= min && Number(t) <= max ? Number(t) : undefined));

export const positiveDuration = () =>
  rule('a positive duration (e.g. 10s, 1m)', (t) => {
    try {
      const ms = parseDuration(t);
      return ms > 0 ? ms : undefined;
    } catch {
      return undefined;
    }
  });

const LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];
/** `on` or `off`, as a boolean. */
export const onOff = () => rule('on or off', (t) => (t === 'on' ? true : t === 'off' ? false : undefined));

/** One of `choices`, as written or in capitals and with spaces around (as ISTHMUS_PUMP always was read). */
export const oneOf = <T extends string>(choices: readonly T[], what: string) => rule(what, (t) => choices.find((c) => c === t.trim().toLowerCase()));

export const logLevel = () => rule('debug, info, warn or error', (t) => LEVELS.find((l) => l === t));

/** Never quoted back: a token in an error would land in a terminal's scrollback and in logs. */
export const token = () => z.string({ error: 'must be a string' }).max(512, { error: 'must be at most 512 characters' });
