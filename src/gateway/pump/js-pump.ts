// The TypeScript byte pump, for where the native one is not built or is switched off
// (ISTHMUS_PUMP=off): both sockets' streams piped into each other by hand, so that the report and
// the half-close and reset rules are the native pump's (byte-pump.ts).
import type net from 'node:net';
import { ErrorCodes, IsthmusError } from '../../core/errors.js';
import type { BytePump, PumpReport } from './byte-pump.js';

type Side = 'a' | 'b';
type Mutable<T> = { -readonly [K in keyof T]: T[K] };

const isReset = (code: string | undefined) => code === 'ECONNRESET' || code === 'EPIPE';

export class JsPump implements BytePump {
  readonly name = 'js';
  private stopped = false;
  private count = 0;
  private nextId = 1;
  /** The open connections: when each last moved a byte, and how to close it (closeIdle()). */
  private readonly live = new Set<{ lastMs: number; close(how: 'idle' | 'closed'): void }>();

  start(a: net.Socket, b: net.Socket, head: Buffer | undefined, onDone: (report: PumpReport) => void): void {
    if (this.stopped) throw new IsthmusError(ErrorCodes.UNAVAILABLE, 'byte pump stopped: it takes no new connections');
    const r: Mutable<PumpReport> = {
      id: this.nextId++,
      bytesAtoB: head?.length ?? 0,
      bytesBtoA: 0,
      firstByteAtoBMs: undefined,
      firstByteBtoAMs: undefined,
      closedAtMs: 0,
      closedBy: 'error',
      how: 'fin',
      errno: 0,
    };
    let ended: Side | undefined;
    let failed = false;
    let open = 2;
    let local: 'idle' | 'closed' | undefined;
    const entry = {
      lastMs: Date.now(),
      close: (how: 'idle' | 'closed') => {
        local = how;
        a.destroy();
        b.destroy();
      },
    };
    this.count++;
    this.live.add(entry);
    const closed = (): void => {
      if (--open > 0) return;
      this.count--;
      this.live.delete(entry);
      if (local) {
        failed = true;
        r.closedBy = 'local';
        r.how = local;
        r.errno = 0;
      }
      r.closedAtMs = Date.now();
      if (!failed) r.closedBy = ended ?? 'error';
      onDone(r);
    };
    const fail = (side: Side, err: NodeJS.ErrnoException): void => {
      if (failed) return;
      failed = true;
      const reset = isReset(err.code);
      r.closedBy = side;
      r.how = reset ? 'reset' : 'error';
      r.errno = Math.abs(err.errno ?? 0);
      const other = side === 'a' ? b : a;
      if (other.destroyed) return;
      // A reset is passed on as a reset, so the other peer does not take it for a clean end.
      if (reset) other.resetAndDestroy();
      else other.destroy();
    };
    const flow = (src: net.Socket, dst: net.Socket, side: Side): void => {
      // A FIN from one side must leave the other side's writing open (Node ends it otherwise).
      src.allowHalfOpen = true;
      src.on('data', (chunk: Buffer) => {
        entry.lastMs = Date.now();
        if (side === 'a') {
          r.bytesAtoB += chunk.length;
          r.firstByteAtoBMs ??= Date.now();
        } else {
          r.bytesBtoA += chunk.length;
          r.firstByteBtoAMs ??= Date.now();
        }
        // Back-pressure: stop reading while the other side's buffer is over its high-water mark.
        if (!dst.destroyed && !dst.write(chunk)) src.pause();
      });
      dst.on('drain', () => src.resume());
      src.on('end', () => {
        ended ??= side;
        dst.end();
      });
      src.on('error', (err: NodeJS.ErrnoException) => fail(side, err));
      src.on('close', closed);
    };
    flow(a, b, 'a');
    flow(b, a, 'b');
    if (head?.length) b.write(head);
    a.resume();
    b.resume();
  }

  closeIdle(idleMs: number): void {
    const before = Date.now() - idleMs;
    for (const e of this.live) if (e.lastMs <= before) e.close(idleMs > 0 ? 'idle' : 'closed');
  }

  stop(): void {
    this.stopped = true;
  }

  open(): number {
    return this.count;
  }
}
