// Request bodies and queries checked at the edge, one schema per shape; zod issue paths become
// Consul-style field paths (`Permissions[0].HTTP.PathRegex`).
import type { IncomingMessage } from 'node:http';
import type { Context } from 'hono';
import type { z } from 'zod';
import { invalid, IsthmusError, ErrorCodes, type Violation } from '../core/errors.js';
import { endWithError } from './errors.js';

export const MAX_BODY_BYTES = 1 << 20;
/** Deepest nesting a body may have; the deepest shape the API takes (an intention's header match) is 6. */
export const MAX_BODY_DEPTH = 32;
/** A body has this long to start arriving, and must then keep up at least this rate (slow senders hold sockets). */
const BODY_GRACE_MS = 5000;
const BODY_MIN_BYTES_PER_SECOND = 1024;

export function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out;
}

/** Every issue with its field path; an issue with the whole value (not an object, say) is named "body". */
export function violationsOf(error: z.ZodError): Violation[] {
  return error.issues.map((i) => ({ Field: fieldPath(i.path) || 'body', Message: i.message }));
}

/** Parses a value against a schema or throws ISTHMUS_ERR_INVALID listing every violation. */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw invalid(violationsOf(r.error));
  return r.data;
}

/** Reads a JSON body (bounded in size, depth and time), failing with a clear 400/408/413 on anything else. Empty body -> undefined. */
export async function readJson(c: Context): Promise<unknown> {
  const text = (await readText(c)).trim();
  if (text === '') return undefined;
  if (mayNestDeeperThan(text, MAX_BODY_DEPTH) && deeperThan(text, MAX_BODY_DEPTH))
    throw invalid([{ Field: 'body', Message: `nested deeper than ${MAX_BODY_DEPTH} levels` }]);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw invalid([{ Field: 'body', Message: `not valid JSON: ${(err as Error).message}` }]);
  }
  // A "__proto__" key would become the prototype of the objects schemas build from the body, and
  // its fields would then be read as if the body had them, unchecked. A number past the range of a
  // double parses as Infinity and is stored as null. Both are looked for only when the text could hold one.
  if (text.includes('__proto__') || text.includes('\\u') || HUGE_NUMBER.test(text)) {
    const bad = oddValue(value);
    if (bad) throw invalid([bad]);
  }
  return value;
}

const HUGE_NUMBER = /[eE]\+?\d{3}|\d{300}/;

/** Reads a request body as text, failing with 413 past MAX_BODY_BYTES and 408 when it comes in too slowly. */
export async function readText(c: Context): Promise<string> {
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  const len = Number((incoming ? incoming.headers['content-length'] : c.req.header('content-length')) ?? '0');
  if (len > MAX_BODY_BYTES) throw tooLarge();
  // Served by Node and still arriving: read the request stream itself, so a body is cut off at the
  // bound (not buffered whole first) and a sender that dribbles is timed out. In app.request()
  // there is no stream.
  const stream = incoming && typeof incoming.on === 'function' && !incoming.readableDidRead;
  let raw: string;
  if (!stream || incoming.complete) raw = await c.req.text();
  // With a length: hono's reader, bounded in time by the slowest pace that length allows.
  else if (incoming.headers['content-length'] !== undefined) {
    const started = Date.now();
    const pace: PacedRead = {
      deadline: started + BODY_GRACE_MS + (len * 1000) / BODY_MIN_BYTES_PER_SECOND,
      timeout: () => refuseSlowBody(incoming, pace, len, started),
    };
    watchPace(pace);
    try {
      raw = await c.req.text();
    } finally {
      reading.delete(pace);
    }
  }
  // Chunked: read here, cut off at the bound and paced chunk by chunk.
  else raw = await readBounded(incoming);
  if (raw.length > MAX_BODY_BYTES) throw tooLarge();
  return raw;
}

function tooLarge(): IsthmusError {
  return new IsthmusError(ErrorCodes.PAYLOAD_TOO_LARGE, `request body is larger than ${MAX_BODY_BYTES} bytes`);
}

/**
 * Bodies being read, each with the moment it is too slow; one sweep a second times them out (a
 * timer per request would cost more than reading a small body does).
 */
interface PacedRead {
  /** When the body is too slow (ms since the epoch); moved on as bytes arrive. */
  deadline: number;
  timeout(): void;
}
const reading = new Set<PacedRead>();
let sweep: NodeJS.Timeout | undefined;

function watchPace(read: PacedRead): void {
  reading.add(read);
  sweep ??= setInterval(() => {
    const now = Date.now();
    for (const r of reading) if (now > r.deadline) r.timeout();
    if (reading.size === 0) {
      clearInterval(sweep);
      sweep = undefined;
    }
  }, 1000).unref();
}

/**
 * A body of known length that has not arrived by its deadline: the 408 goes out on the socket at
 * once and the request is ended with the same error, which the pending read then answers with
 * (into a closed connection). Nothing else is set up per request for the pace.
 */
function refuseSlowBody(incoming: IncomingMessage, pace: PacedRead, len: number, started: number): void {
  reading.delete(pace);
  const err = new IsthmusError(
    ErrorCodes.REQUEST_TIMEOUT,
    `request body of ${len} bytes not received in ${Date.now() - started} ms (after ${BODY_GRACE_MS / 1000} s it must keep up ${BODY_MIN_BYTES_PER_SECOND} bytes/s)`,
  );
  endWithError(incoming.socket, 408, err.code, err.message);
  incoming.destroy(err);
}

/** The body of a Node request, refused past MAX_BODY_BYTES or when it comes in slower than the minimum rate. */
function readBounded(incoming: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const started = Date.now();
    const pace: PacedRead = {
      deadline: started + BODY_GRACE_MS,
      timeout: () =>
        done(
          new IsthmusError(
            ErrorCodes.REQUEST_TIMEOUT,
            `request body sent too slowly (${size} bytes in ${Date.now() - started} ms; after ${BODY_GRACE_MS / 1000} s it must keep up ${BODY_MIN_BYTES_PER_SECOND} bytes/s)`,
          ),
        ),
    };
    const done = (err: IsthmusError | undefined, text?: string) => {
      reading.delete(pace);
      incoming.off('data', onData);
      incoming.off('end', onEnd);
      incoming.off('error', onClose);
      incoming.off('close', onClose);
      // What is left of a refused body is drained (or the socket closed) once the answer is sent.
      if (err) {
        incoming.pause();
        reject(err);
      } else resolve(text!);
    };
    const onData = (chunk: Buffer | string) => {
      const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      size += b.length;
      if (size > MAX_BODY_BYTES) return done(tooLarge());
      chunks.push(b);
      pace.deadline = started + BODY_GRACE_MS + (size * 1000) / BODY_MIN_BYTES_PER_SECOND;
    };
    const onEnd = () => done(undefined, (chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size)).toString('utf8'));
    const onClose = () => done(invalid([{ Field: 'body', Message: 'the connection closed before the body was complete' }]));
    incoming.on('data', onData);
    incoming.on('end', onEnd);
    incoming.on('error', onClose);
    incoming.on('close', onClose);
    if (incoming.readableEnded) onEnd();
    else watchPace(pace);
  });
}

/** False when the text has too few brackets to nest deeper than `limit` (found natively, most bodies have a handful). */
function mayNestDeeperThan(text: string, limit: number): boolean {
  let n = 0;
  for (const open of ['{', '[']) {
    for (let i = text.indexOf(open); i !== -1; i = text.indexOf(open, i + 1)) if (++n > limit) return true;
  }
  return false;
}

/** True when brackets outside strings nest deeper than `limit` (checked before parsing, so nothing recurses on it). */
function deeperThan(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (ch === 0x5c) i++;
      else if (ch === 0x22) inString = false;
    } else if (ch === 0x22) inString = true;
    else if (ch === 0x7b || ch === 0x5b) {
      if (++depth > limit) return true;
    } else if (ch === 0x7d || ch === 0x5d) depth--;
  }
  return false;
}

/** The first "__proto__" key or non-finite number in a parsed body, named by its field path. */
function oddValue(value: unknown): Violation | undefined {
  const stack: [unknown, PropertyKey[]][] = [[value, []]];
  while (stack.length) {
    const [v, path] = stack.pop()!;
    if (typeof v === 'number' && !Number.isFinite(v)) return { Field: fieldPath(path) || 'body', Message: 'number out of range' };
    if (Array.isArray(v)) v.forEach((x, i) => stack.push([x, [...path, i]]));
    else if (v && typeof v === 'object') {
      for (const k of Object.keys(v)) {
        if (k === '__proto__') return { Field: fieldPath([...path, k]), Message: 'is not an allowed key' };
        stack.push([(v as Record<string, unknown>)[k], [...path, k]]);
      }
    }
  }
  return undefined;
}

/** Reads and validates a JSON body in one step. */
export async function readBody<S extends z.ZodType>(c: Context, schema: S): Promise<z.output<S>> {
  return parseWith(schema, await readJson(c));
}
