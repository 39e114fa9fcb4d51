// Writing a chunk straight to a socket's handle, as Node's Writable does underneath (a WriteWrap
// given to `handle.writeBuffer`), without the Writable around it: no state machine, no callback
// deferred to the next tick, no copy. A relay learns at once whether the kernel took every byte, so
// a chunk that lies in a shared read buffer needs no copy unless the write has to wait. Rests on
// Node internals (the `stream_wrap` binding, `_handle`), checked once; without them every write goes
// through `socket.write()` and the callers' fallbacks.
import type net from 'node:net';

interface WriteReq {
  handle: unknown;
  oncomplete: (this: WriteReq, status: number) => void;
  async: boolean;
  bytes: number;
  buffer: unknown;
  after: ((err: Error | null) => void) | undefined;
  fail: ((err: Error) => void) | undefined;
}

/** A stream handle (a TCP handle, say) as the binding writes to it. */
export interface StreamHandle {
  writeBuffer(req: WriteReq, data: Uint8Array): number;
}

interface StreamWrapBinding {
  WriteWrap: new () => WriteReq;
  streamBaseState: Int32Array;
  kLastWriteWasAsync: number;
}

function loadBinding(): StreamWrapBinding | undefined {
  try {
    const get = (process as unknown as { binding?: (name: string) => unknown }).binding;
    const b = get?.call(process, 'stream_wrap') as Partial<StreamWrapBinding> | undefined;
    if (typeof b?.WriteWrap === 'function' && b.streamBaseState instanceof Int32Array && typeof b.kLastWriteWasAsync === 'number') return b as StreamWrapBinding;
  } catch {
    // No binding: every write takes socket.write().
  }
  return undefined;
}

const binding = loadBinding();
/**
 * A request object no write holds: one the kernel took whole at once never got a native request
 * behind it, so it can serve the next write (a write that waits keeps its own).
 */
let spare: WriteReq | undefined;

/** Whether this Node lets writes go straight to a handle. */
export const directWrites = binding !== undefined;

/** How a direct write went. */
export const enum Written {
  /** The kernel took every byte: the buffer is free again. */
  Done,
  /** Part of it waits for the socket to drain: the buffer stays in use until `after` is called. */
  Pending,
  /** Not written: the socket cannot take a direct write now (call socket.write() instead). */
  Refused,
}

const writeError = (status: number): Error => Object.assign(new Error(`write failed (${status})`), { errno: status, syscall: 'write' });

function onComplete(this: WriteReq, status: number): void {
  const after = this.after;
  const fail = this.fail;
  this.after = undefined;
  this.fail = undefined;
  this.buffer = undefined;
  if (status < 0) {
    const err = writeError(status);
    fail?.(err);
    after?.(err);
    return;
  }
  after?.(null);
}

/**
 * Writes `buf` to `socket`'s handle now. Refused (nothing written) when the socket is not connected
 * and open, is a TLS socket, or its own write queue holds bytes (they go first: order is kept by writing after them
 * through socket.write()). A write the kernel refuses destroys the socket with the error, as
 * socket.write() would, and counts as Done. `after` is called only for a Pending write, once the
 * kernel has taken the rest (or the write failed: the socket is destroyed by then).
 */
export function writeDirect(socket: net.Socket, buf: Uint8Array, after: (err: Error | null) => void): Written {
  if (!binding) return Written.Refused;
  const handle = (socket as unknown as { _handle: StreamHandle | null })._handle;
  // A TLS socket's handle encrypts what it is given and completes later: its own write path it is.
  if (!handle || socket.connecting || socket.destroyed || socket.writableEnded || socket.writableLength > 0 || (socket as { encrypted?: boolean }).encrypted) return Written.Refused;
  return writeHandle(handle, buf, after, (err) => {
    if (!socket.destroyed) socket.destroy(err);
  });
}

/**
 * Writes `buf` to a stream handle of no socket's (see bare-tcp.ts): as writeDirect, with `fail`
 * called (before `after`, for a Pending write) when the kernel refuses the write. Refused only when
 * this Node has no such writes.
 */
export function writeHandle(handle: StreamHandle, buf: Uint8Array, after: (err: Error | null) => void, fail: (err: Error) => void): Written {
  if (!binding) return Written.Refused;
  const req = spare ?? new binding.WriteWrap();
  spare = undefined;
  req.handle = handle;
  req.oncomplete = onComplete;
  req.async = false;
  req.after = undefined;
  req.fail = undefined;
  const err = handle.writeBuffer(req, buf);
  if (err !== 0) {
    fail(writeError(err));
    return Written.Done;
  }
  if (binding.streamBaseState[binding.kLastWriteWasAsync] === 0) {
    req.handle = undefined;
    spare = req;
    return Written.Done;
  }
  req.async = true;
  req.buffer = buf;
  req.after = after;
  req.fail = fail;
  return Written.Pending;
}
