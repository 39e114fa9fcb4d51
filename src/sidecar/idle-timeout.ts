// The route's IdleTimeout (service-router Destination.IdleTimeout, Envoy's route idle_timeout): a
// stream that moves no byte either way for that long is ended. One watcher per stream, reading a
// byte count it is given: the proxy's sockets already count what they move.
import { parseDuration } from '../core/duration.js';
import type { ChainRoute } from '../config-entries/index.js';
import type http from 'node:http';

type Destination = NonNullable<ChainRoute['Destination']>;

/** The route's IdleTimeout in ms; 0 (none) when unset or unparsable (the server refuses those when they are written). */
export function idleTimeoutOf(d: Destination | undefined): number {
  if (!d?.IdleTimeout) return 0;
  try {
    return parseDuration(d.IdleTimeout);
  } catch {
    return 0;
  }
}

/**
 * Calls `onIdle` once `bytes()` has not changed for `idleMs` (0: never). The count is read eight
 * times per period, so an idle stream ends between `idleMs` and an eighth more. Returns the stop.
 */
export function watchIdle(idleMs: number, bytes: () => number, onIdle: () => void): () => void {
  if (idleMs <= 0) return () => {};
  let seen = bytes();
  let quietSince = Date.now();
  const tick = Math.max(1, Math.floor(idleMs / 8));
  const timer = setInterval(() => {
    const now = bytes();
    if (now !== seen) {
      seen = now;
      quietSince = Date.now();
    } else if (Date.now() - quietSince >= idleMs) {
      clearInterval(timer);
      onIdle();
    }
  }, tick);
  return () => clearInterval(timer);
}

/**
 * For one proxied HTTP/1.1 request: watches the caller's connection (what it sends and what it is
 * sent is what the stream moves) and, when it goes quiet for the route's IdleTimeout, calls
 * `onIdle` with why. The proxy ends the stream as for its request timeout: 504 when no answer has
 * begun, else a reset. It stops by itself when the answer is done; the stop is returned as well.
 */
export function watchRequestIdle(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  d: Destination | undefined,
  routeIndex: number | undefined,
  onIdle: (message: string) => void,
): () => void {
  const ms = idleTimeoutOf(d);
  const sock = req.socket;
  const stop = watchIdle(
    ms,
    () => sock.bytesRead + sock.bytesWritten,
    () => onIdle(`no bytes either way for ${ms} ms (Routes[${routeIndex ?? 0}] IdleTimeout)`),
  );
  res.once('close', stop);
  return stop;
}
