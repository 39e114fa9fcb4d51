// Moving bytes between a sidecar's two sockets. A socket made with `onread` (net.connect, tls.connect,
// or an accepted handle) reads into a buffer the caller gives instead of a fresh one per read, and
// hands the bytes to a callback instead of pushing them through a Readable: the relay writes them
// on at once. All such sockets of a process share one read buffer (each handle keeps the buffer it
// was given until its next read), so what is written on is a copy of the bytes: a write Node cannot
// finish at once keeps a reference to what it was given, and the next read would overwrite it.
import type net from 'node:net';

const READ_BUFFER_BYTES = 64 * 1024;

/** The shared read buffer of the process. */
export class ReadBuffer {
  readonly #buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
  /** For `onread.buffer`. */
  readonly next = (): Buffer => this.#buffer;
}

/** Where one direction's bytes go, once the destination exists. */
export class RelayTarget {
  dest: net.Socket | undefined;
  /** Bytes read before there was a destination (copies), written first. */
  early: Buffer[] = [];
}

/**
 * The `onread` of a socket whose bytes go to `target.dest`. Bytes read before there is a
 * destination are kept (and reading stops) until relay() sets it. With the destination's queue
 * full, reading stops until it drains.
 */
export function relayRead(buffers: ReadBuffer, target: RelayTarget, source: () => net.Socket | undefined): net.OnReadOpts {
  const resume = () => source()?.resume();
  return {
    buffer: buffers.next,
    callback: (n: number, buf: Uint8Array): boolean => {
      const dest = target.dest;
      if (!dest) {
        target.early.push(Buffer.from((buf as Buffer).subarray(0, n)));
        return false;
      }
      if (dest.destroyed) return false;
      dest.write(Buffer.from((buf as Buffer).subarray(0, n)));
      if (dest.writableNeedDrain) {
        dest.once('drain', resume);
        return false;
      }
      return true;
    },
  };
}

/**
 * Joins two sockets: `a`'s bytes go to `b` and back. Each side either reads through a `relayRead`
 * onread (given `target`, set here) or, when it has no onread, is piped. An end on one side ends
 * the other; an error or a close on one destroys the other.
 */
export function relay(a: net.Socket, aTarget: RelayTarget | undefined, b: net.Socket, bTarget: RelayTarget | undefined): void {
  join(a, aTarget, b);
  join(b, bTarget, a);
  a.once('error', () => b.destroy());
  b.once('error', () => a.destroy());
  a.once('close', () => b.destroy());
  b.once('close', () => a.destroy());
}

function join(from: net.Socket, target: RelayTarget | undefined, to: net.Socket): void {
  if (!target) {
    from.pipe(to);
    return;
  }
  target.dest = to;
  for (const chunk of target.early) to.write(chunk);
  target.early = [];
  from.once('end', () => to.end());
  from.resume();
}
