// Request bodies and queries checked at the edge, one schema per shape; zod issue paths become
// Consul-style field paths (`Permissions[0].HTTP.PathRegex`).
import type { Context } from 'hono';
import type { z } from 'zod';
import { invalid, IsthmusError, ErrorCodes, type Violation } from '../core/errors.js';

export const MAX_BODY_BYTES = 1 << 20;

export function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out;
}

export function violationsOf(error: z.ZodError): Violation[] {
  return error.issues.map((i) => ({ Field: fieldPath(i.path), Message: i.message }));
}

/** Parses a value against a schema or throws ISTHMUS_ERR_INVALID listing every violation. */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw invalid(violationsOf(r.error));
  return r.data;
}

/** Reads a JSON body (bounded), failing with a clear 400/413 on anything else. Empty body -> undefined. */
export async function readJson(c: Context): Promise<unknown> {
  const incoming = (c.env as { incoming?: { headers: Record<string, string | string[] | undefined> } } | undefined)?.incoming;
  const len = Number((incoming ? incoming.headers['content-length'] : c.req.header('content-length')) ?? '0');
  if (len > MAX_BODY_BYTES) {
    throw new IsthmusError(ErrorCodes.PAYLOAD_TOO_LARGE, `request body is larger than ${MAX_BODY_BYTES} bytes`);
  }
  // text() keeps @hono/node-server's fast path (arrayBuffer() copies through a Blob).
  const raw = await c.req.text();
  if (raw.length > MAX_BODY_BYTES) {
    throw new IsthmusError(ErrorCodes.PAYLOAD_TOO_LARGE, `request body is larger than ${MAX_BODY_BYTES} bytes`);
  }
  const text = raw.trim();
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw invalid([{ Field: 'body', Message: `not valid JSON: ${(err as Error).message}` }]);
  }
}

/** Reads and validates a JSON body in one step. */
export async function readBody<S extends z.ZodType>(c: Context, schema: S): Promise<z.output<S>> {
  return parseWith(schema, await readJson(c));
}
