// Node reads an accepted connection into a fresh 64 KiB buffer per read; `onread` (a caller's buffer,
// no stream machinery per chunk) exists only for sockets the caller creates. So the fast path takes
// each accepted handle from the listener (its `onconnection`, a Node internal) and drives it itself
// (bare-tcp.ts) or wraps it in a net.Socket that has an `onread`: Node's own accept path would build a
// socket only to be thrown away. Checked by the self-test before the fast path is used.
import net from 'node:net';
import { getSystemErrorName } from 'node:util';
import type { Accepted } from './data-path.js';

interface WithHandle {
  _handle: unknown;
}

/**
 * Makes `server` (listening) hand each accepted connection's handle to `take`, its accept errors to
 * `onError`. False when this Node has no such hook: the server's 'connection' event fires as usual.
 */
export function takeAccepts(server: net.Server, take: (handle: Accepted) => void, onError: (err: Error) => void): boolean {
  const listener = (server as unknown as WithHandle)._handle as { onconnection?: unknown } | null;
  if (!listener || typeof listener.onconnection !== 'function') return false;
  listener.onconnection = (status: number, handle: Accepted | undefined) => {
    if (status < 0 || !handle) {
      onError(Object.assign(new Error(`accept: ${getSystemErrorName(status)}`), { code: getSystemErrorName(status), errno: status, syscall: 'accept' }));
      return;
    }
    take(handle);
  };
  return true;
}

/** A socket (TCP_NODELAY set, half-open allowed) around an accepted handle, reading through `onread`. */
export function acceptedSocket(handle: Accepted, onread: net.OnReadOpts): net.Socket {
  const sock = new net.Socket({ handle, onread, allowHalfOpen: true } as net.SocketConstructorOpts);
  sock.setNoDelay(true);
  return sock;
}

interface RawHandle {
  close(): void;
  reset?(): number;
  getpeername(out: { address?: string }): number;
}

/** Closes a handle no socket was made for (one passed to another process, or refused). */
export function closeHandle(handle: Accepted): void {
  (handle as unknown as RawHandle).close();
}

/** Resets (RST) and closes a handle no socket was made for (one refused at the limit). */
export function resetHandle(handle: Accepted): void {
  const h = handle as unknown as RawHandle;
  if (typeof h.reset !== 'function' || h.reset() !== 0) h.close();
}

/** The peer address of a handle no socket was made for, for a log line. */
export function peerOf(handle: Accepted): string | undefined {
  const out: { address?: string } = {};
  try {
    return (handle as unknown as RawHandle).getpeername(out) === 0 ? out.address : undefined;
  } catch {
    return undefined;
  }
}
