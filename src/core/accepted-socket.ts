// Node reads an accepted connection into a fresh 64 KiB buffer per read; `onread` (a caller's buffer,
// no stream machinery per chunk) exists only for sockets the caller creates. So the gateway and the
// sidecar take each accepted handle from the listener and wrap it in a net.Socket that has an `onread`:
// Node's own accept path would build a socket only to be thrown away. Both rest on Node internals
// (`_handle`, its `onconnection`), checked at run time, with a fallback that needs only `_handle`.
import net from 'node:net';
import { getSystemErrorName } from 'node:util';

/** A connection's handle as the listener accepted it. */
export interface AcceptedHandle {
  readonly accepted: unique symbol;
}

interface WithHandle {
  _handle: unknown;
}

/**
 * Makes `server` (listening) hand each accepted connection's handle to `take`, its accept errors to
 * `onError`. False when this Node has no such hook: the server's 'connection' event fires as usual.
 */
export function takeAccepts(server: net.Server, take: (handle: AcceptedHandle) => void, onError: (err: Error) => void): boolean {
  const listener = (server as unknown as WithHandle)._handle as { onconnection?: unknown } | null;
  if (!listener || typeof listener.onconnection !== 'function') return false;
  listener.onconnection = (status: number, handle: AcceptedHandle | undefined) => {
    if (status < 0 || !handle) {
      onError(Object.assign(new Error(`accept: ${getSystemErrorName(status)}`), { code: getSystemErrorName(status), errno: status, syscall: 'accept' }));
      return;
    }
    take(handle);
  };
  return true;
}

/** A socket (TCP_NODELAY set) around an accepted handle, reading through `onread` when given. */
export function acceptedSocket(handle: AcceptedHandle, onread?: net.OnReadOpts): net.Socket {
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
export function closeHandle(handle: AcceptedHandle): void {
  (handle as unknown as RawHandle).close();
}

/** Resets (RST) and closes a handle no socket was made for (one refused at the limit). */
export function resetHandle(handle: AcceptedHandle): void {
  const h = handle as unknown as RawHandle;
  if (typeof h.reset !== 'function' || h.reset() !== 0) h.close();
}

/** The peer address of a handle no socket was made for, for a log line. */
export function peerOf(handle: AcceptedHandle): string | undefined {
  const out: { address?: string } = {};
  try {
    return (handle as unknown as RawHandle).getpeername(out) === 0 ? out.address : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The fallback: moves the handle of a connection accepted with `pauseOnConnect` (see takeHandle)
 * into a new socket reading through `onread`; undefined when it has none any more.
 */
export function readingInto(accepted: net.Socket, onread: net.OnReadOpts): net.Socket | undefined {
  const handle = takeHandle(accepted);
  return handle && acceptedSocket(handle, onread);
}

/**
 * Takes the handle out of a connection accepted with `pauseOnConnect`; undefined when it has none
 * any more. `accepted` is left destroyed and handle-less, so its server counts the connection as gone.
 */
export function takeHandle(accepted: net.Socket): AcceptedHandle | undefined {
  const handle = (accepted as unknown as WithHandle)._handle as AcceptedHandle | null;
  if (!handle) return undefined;
  (accepted as unknown as WithHandle)._handle = null;
  accepted.destroy();
  return handle;
}

/** The socket's own key for its `onread` buffer (a Node internal), looked up on first use; null: none. */
let userBufferKey: symbol | null | undefined;

/**
 * Points a socket that reads through `onread` at another buffer for its next reads (Node keeps the
 * one last returned until the next read): so a buffer it no longer needs can go elsewhere. Only
 * between reads (reads land synchronously in the poll phase). True when the socket reads into `buf`
 * from now on, or reads nothing more (its handle is gone); false when this Node offers no way: the
 * socket keeps its buffer.
 */
export function switchReadBuffer(socket: net.Socket, buf: Buffer): boolean {
  if (userBufferKey === undefined) userBufferKey = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'kBuffer') ?? null;
  const handle = (socket as unknown as WithHandle)._handle as { useUserBuffer?: (b: Uint8Array) => void } | null;
  const holder = socket as unknown as Record<symbol, unknown>;
  if (!userBufferKey) return false;
  if (!handle) return true;
  if (typeof handle.useUserBuffer !== 'function' || !(holder[userBufferKey] instanceof Uint8Array)) return false;
  handle.useUserBuffer(buf);
  holder[userBufferKey] = buf;
  return true;
}
