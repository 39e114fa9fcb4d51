// The one place errors become HTTP answers. Unknown errors are a 500 that says nothing internal.
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Context } from 'hono';
import { ErrorCodes, IsthmusError, isIsthmusError, type ErrorCode } from '../core/errors.js';

const STATUS: Partial<Record<ErrorCode, number>> = {
  [ErrorCodes.INVALID]: 400,
  [ErrorCodes.BAD_CONFIG]: 400,
  [ErrorCodes.TRUST_DOMAIN_MISMATCH]: 400,
  [ErrorCodes.NOT_FOUND]: 404,
  [ErrorCodes.ACL_NOT_FOUND]: 403,
  [ErrorCodes.CONFLICT]: 409,
  [ErrorCodes.PERMISSION_DENIED]: 403,
  [ErrorCodes.INTENTION_DENIED]: 403,
  [ErrorCodes.ACL_BOOTSTRAPPED]: 403,
  [ErrorCodes.PAYLOAD_TOO_LARGE]: 413,
  [ErrorCodes.REQUEST_TIMEOUT]: 408,
  [ErrorCodes.RATE_LIMITED]: 429,
  [ErrorCodes.STORE_UNAVAILABLE]: 503,
  [ErrorCodes.PRIMARY_UNREACHABLE]: 503,
  [ErrorCodes.UNAVAILABLE]: 503,
  [ErrorCodes.TIMEOUT]: 504,
  [ErrorCodes.INDEX_TOO_OLD]: 409,
};

export function statusFor(code: ErrorCode): number {
  return STATUS[code] ?? 500;
}

export interface ErrorBody {
  Error: ErrorCode;
  Message: string;
  Violations?: { Field: string; Message: string }[];
}

export function errorBody(err: unknown): { status: number; body: ErrorBody } {
  if (err instanceof IsthmusError) {
    const status = statusFor(err.code);
    const body: ErrorBody = { Error: err.code, Message: status === 500 ? 'internal error' : err.message };
    if (err.violations.length > 0) body.Violations = err.violations;
    return { status, body };
  }
  return { status: 500, body: { Error: ErrorCodes.INTERNAL, Message: 'internal error' } };
}

export function respondError(c: Context, err: unknown): Response {
  const { status, body } = errorBody(err);
  return c.json(body, status as 400);
}

/**
 * How a request's failure is logged: server-side failures as errors, except a write a secondary
 * could not forward to its unreachable primary (503 by design for as long as a partition lasts),
 * which is a warning; refusals of the request itself (4xx) not at all.
 */
export function failureLogLevel(err: unknown, status: number): 'warn' | 'error' | undefined {
  if (status < 500) return undefined;
  return isIsthmusError(err) && err.code === ErrorCodes.PRIMARY_UNREACHABLE ? 'warn' : 'error';
}

/**
 * Answers on the raw connection, before or instead of the app (a request Node's parser refused, a
 * body that stopped coming): the same JSON error every other refusal has, then the connection closes.
 */
export function endWithError(socket: Duplex, status: number, code: ErrorCode, message: string): void {
  const body = JSON.stringify({ Error: code, Message: message });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}
