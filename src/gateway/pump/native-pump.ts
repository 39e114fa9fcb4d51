// The native byte pump: the binding of native/pump.c (build/Release/pump.node, built by the install
// step). The sockets' fds are handed to the addon's thread, which moves their bytes with epoll and
// splice(2) and reports each connection once it is over, several per call when they end together.
import { createRequire } from 'node:module';
import type net from 'node:net';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, IsthmusError } from '../../core/errors.js';
import type { BytePump, PumpReport } from './byte-pump.js';

/** What native/pump.c exports. */
export interface PumpAddon {
  /** Once per process (per Node environment), before start(): where the reports go. */
  init(onReports: (reports: PumpReport[]) => void): void;
  /** Dups both fds (the caller keeps its own) and hands the copies to the pump thread; `group` is for closeIdle(). */
  start(fdA: number, fdB: number, head: Buffer | undefined, id: number, group?: number): void;
  /** Closes the group's connections that moved no byte for `idleMs` (0: all of them), on the pump thread. */
  closeIdle(group: number, idleMs: number): void;
  /** No start() from now on, for the whole process; returns the connections still open. */
  stop(): number;
  open(): number;
}

/** The same path from src/gateway/pump/ and from dist/gateway/pump/. */
export const ADDON_PATH = fileURLToPath(new URL('../../../build/Release/pump.node', import.meta.url));

/**
 * The addon and the connections it carries for every NativePump of this process. A module-level
 * value on purpose: the addon's thread and its one report function exist once per process (per
 * Node environment, as native modules go), so the pumps share them and each keeps its own count.
 */
export class AddonReports {
  private readonly waiting = new Map<number, (r: PumpReport) => void>();
  private nextId = 1;
  private nextGroup = 1;
  /** Calls of onReports so far: each brings every report gathered since the last. */
  batches = 0;

  constructor(readonly addon: PumpAddon) {
    addon.init(this.onReports);
  }

  /** A group of its own, for one pump (its connections, for closeIdle()). */
  group(): number {
    return this.nextGroup++;
  }

  start(fdA: number, fdB: number, head: Buffer | undefined, group: number, onDone: (r: PumpReport) => void): void {
    const id = this.nextId++;
    this.addon.start(fdA, fdB, head, id, group);
    this.waiting.set(id, onDone);
  }

  private readonly onReports = (reports: PumpReport[]): void => {
    this.batches++;
    for (const r of reports) {
      const done = this.waiting.get(r.id);
      this.waiting.delete(r.id);
      try {
        done?.(r);
      } catch (err) {
        // One owner's failure must not cost the others their reports; it surfaces as it would have.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  };
}

/** The addon at `path`, or why it cannot be loaded (one line for the log). */
export function loadAddon(path: string): { addon: PumpAddon } | { reason: string } {
  if (process.platform !== 'linux') return { reason: `the native pump is Linux's (epoll, splice), not ${process.platform}'s` };
  try {
    return { addon: createRequire(import.meta.url)(path) as PumpAddon };
  } catch (err) {
    return { reason: `native pump not loaded (${path}): ${(err as Error).message.split('\n')[0]}` };
  }
}

export type NativePumpLoad = { available: true; create: () => NativePump; reports: AddonReports } | { available: false; reason: string };

let loaded: NativePumpLoad | undefined;

/** The addon, loaded on first use (`available`, and pumps on it); or why it cannot be. */
export function loadNativePump(): NativePumpLoad {
  if (!loaded) {
    const got = loadAddon(ADDON_PATH);
    if ('reason' in got) loaded = { available: false, reason: got.reason };
    else {
      const reports = new AddonReports(got.addon);
      loaded = { available: true, create: () => new NativePump(reports), reports };
    }
  }
  return loaded;
}

/** The fd of a net.Socket on a TCP handle (`_handle.fd`, Linux), or a clear error. */
function fdOf(s: net.Socket, side: string): number {
  const fd = (s as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new IsthmusError(ErrorCodes.INTERNAL, `byte pump: socket ${side} has no fd (not a connected TCP socket)`);
  if (s.readableLength > 0 || s.writableLength > 0)
    throw new IsthmusError(ErrorCodes.INTERNAL, `byte pump: socket ${side} has bytes buffered (${s.readableLength} read, ${s.writableLength} to write)`);
  return fd;
}

export class NativePump implements BytePump {
  readonly name = 'native';
  private stopped = false;
  private count = 0;
  private readonly group: number;

  constructor(private readonly reports: AddonReports) {
    this.group = reports.group();
  }

  start(a: net.Socket, b: net.Socket, head: Buffer | undefined, onDone: (report: PumpReport) => void): void {
    if (this.stopped) throw new IsthmusError(ErrorCodes.UNAVAILABLE, 'byte pump stopped: it takes no new connections');
    const fdA = fdOf(a, 'a');
    const fdB = fdOf(b, 'b');
    // Who owns the fd: libuv has no way to let go of a TCP handle's fd without closing it, and a
    // socket kept open beside the pump would leave two owners of one fd (and libuv still watching
    // it). So the addon dup(2)s each fd and owns its copy, and Node closes its own now: a plain
    // close(2) of one of two fds on the connection (no shutdown, no RST), so the connection lives
    // on the pump's. Each fd is closed exactly once, by its one owner. (The sockets' 'close' comes
    // now; a server's connection count no longer includes them: wait on open() instead.)
    a.pause();
    b.pause();
    this.startFds(fdA, fdB, head, onDone);
    a.destroy();
    b.destroy();
  }

  /**
   * start() on two fds the caller then closes (its own copies; the pump has dup(2)ed them): for
   * connections that have no net.Socket (the gateway's fast path). Nothing may be buffered on them.
   * Throws when the pump is stopped or out of fds, and then the fds are the caller's as before.
   */
  startFds(fdA: number, fdB: number, head: Buffer | undefined, onDone: (report: PumpReport) => void): void {
    if (this.stopped) throw new IsthmusError(ErrorCodes.UNAVAILABLE, 'byte pump stopped: it takes no new connections');
    this.reports.start(fdA, fdB, head, this.group, (r) => {
      this.count--;
      onDone(r);
    });
    this.count++;
  }

  closeIdle(idleMs: number): void {
    if (this.count > 0) this.reports.addon.closeIdle(this.group, idleMs);
  }

  stop(): void {
    this.stopped = true;
  }

  open(): number {
    return this.count;
  }
}
