// Writing a chunk straight to a TCP handle, as Node's Writable does underneath (a WriteWrap given to
// `handle.writeBuffer`), without the Writable around it: no state machine, no callback deferred to
// the next tick, no copy. A relay learns at once whether the kernel took every byte, so a chunk that
// lies in a shared read buffer needs no copy unless the write has to wait. Rests on Node internals
// (the `stream_wrap` binding), looked up once; without them the fast path is not used (choose.ts).
import { Written } from './data-path.js';

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
    if (typeof b?.WriteWrap === 'function' && b.streamBaseState instanceof Int32Array && typeof b.kLastWriteWasAsync === 'number')
      return b as StreamWrapBinding;
  } catch {
    // No binding: no direct writes.
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
 * Writes `buf` to a stream handle (see bare-tcp.ts). Done when the kernel took it all; Pending when
 * the rest waits, and `after` is called once it is out. `fail` is called (before `after`, for a
 * Pending write) when the kernel refuses the write; a write refused at once counts as Done. Only
 * where `directWrites`.
 */
export function writeHandle(handle: StreamHandle, buf: Uint8Array, after: (err: Error | null) => void, fail: (err: Error) => void): Written {
  const b = binding!;
  const req = spare ?? new b.WriteWrap();
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
  if (b.streamBaseState[b.kLastWriteWasAsync] === 0) {
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
