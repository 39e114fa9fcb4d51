// What the inbound's HTTP/1.1 and HTTP/2 paths answer alike: the denial body, the trace context
// handed to the app, and the fields a proxy keeps to its own side of a connection.
import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import { ErrorCodes } from '../core/errors.js';
import type { Decision } from './sidecar-context.js';

/** The project's error shape (docs/errors.md), naming the deciding intention and permission. */
export function deniedBody(d: Decision): string {
  return JSON.stringify({
    Error: ErrorCodes.INTENTION_DENIED,
    Message: d.reason,
    IntentionID: d.intentionId,
    Permission: d.permission === undefined ? null : `Permissions[${d.permission}]`,
  });
}

/**
 * Set (value `unreachable`) on the answer a server sidecar gives for a local application it cannot
 * reach: the call never reached an app, so the client sidecar counts it as a connect failure and
 * takes the next endpoint (a field, not the body's words, is what a proxy decides by).
 */
export const LOCAL_APP_HEADER = 'x-isthmus-local-app';

/** The 502 body for an app the sidecar cannot reach, in the project's error shape. */
export function unreachableBody(): string {
  return JSON.stringify({ Error: ErrorCodes.UNAVAILABLE, Message: 'local application unreachable' });
}

/** The caller's `traceparent`, or a new span of the connection's trace. */
export function traceparentOf(given: string | string[] | undefined, traceId: string): string {
  if (typeof given === 'string' && given) return given;
  // randomUUID draws from a buffered pool (randomBytes makes a call into OpenSSL each time); its
  // random hex digits, without the version and variant ones, make the span ID.
  const u = randomUUID();
  return `00-${traceId}-${u.slice(0, 8)}${u.slice(9, 13)}${u.slice(24, 28)}-01`;
}

/** Hop-by-hop fields (RFC 9110 7.6.1), which a proxy does not pass on: these and any the Connection field names. */
// (TE is hop-by-hop too, but `TE: trailers` is what a gRPC call carries end to end: the h2 path keeps it.)
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'upgrade', 'transfer-encoding']);

export function endToEnd(headers: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const named = new Set(
    String(headers.connection ?? '')
      .toLowerCase()
      .split(',')
      .map((f) => f.trim()),
  );
  const out: http.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined && !HOP_BY_HOP.has(k) && !named.has(k)) out[k] = v;
  return out;
}
