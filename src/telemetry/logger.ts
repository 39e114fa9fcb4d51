// JSON-lines logger with redaction: a secret never reaches a log line, whatever the caller passes.
import { REDACTED, redactUrlsIn } from '../core/names.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

const SECRET_KEY = /secret|token|password|passwd|private|privatekey|authorization|join.?token/i;
export { REDACTED };

/** Returns a copy of `value` with every secret-looking field replaced and credentials in URLs masked. */
export function redact(value: unknown, depth = 0): unknown {
  if (depth > 8) return '[deep]';
  if (typeof value === 'string') return redactUrlCredentials(value);
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1));
  if (value instanceof Error) return { name: value.name, message: redactUrlCredentials(value.message), code: (value as { code?: unknown }).code };
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = SECRET_KEY.test(k) && v !== undefined && v !== null && v !== '' ? REDACTED : redact(v, depth + 1);
    }
    return out;
  }
  return value;
}

function redactUrlCredentials(s: string): string {
  // redis://user:pass@host -> redis://user:*****@host ; a PEM private key block is dropped whole.
  return redactUrlsIn(s).replace(/-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----/g, REDACTED);
}

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
  /** True when ISTHMUS_TRACE names this logger's component (or "all"). */
  readonly tracing: boolean;
}

export interface LoggerOptions {
  level?: LogLevel;
  write?: (line: string) => void;
  fields?: Record<string, unknown>;
  /** Components switched to debug by ISTHMUS_TRACE=gateway,federation (or "all"). */
  trace?: string[];
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = LEVELS[opts.level ?? 'info'];
  const write = opts.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const trace = opts.trace ?? parseTrace(process.env.ISTHMUS_TRACE);
  const base = opts.fields ?? {};
  const component = typeof base.component === 'string' ? base.component : undefined;
  const tracing = trace.includes('all') || (component !== undefined && trace.includes(component));
  const emit = (lvl: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (LEVELS[lvl] < level && !(lvl === 'debug' && tracing)) return;
    const record = { time: new Date().toISOString(), level: lvl, msg: redactUrlCredentials(msg), ...(redact({ ...base, ...fields }) as object) };
    write(JSON.stringify(record));
  };
  return {
    tracing,
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => createLogger({ ...opts, trace, fields: { ...base, ...fields } }),
  };
}

export function parseTrace(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

export const silentLogger: Logger = createLogger({ write: () => {} });
