// What the gateway asks of a byte pump: take two connected sockets (and the bytes already read
// from the first, the ClientHello), move their bytes both ways until both sides have closed, and
// report the connection once it is over. Two implementations: native-pump.ts (the C addon in
// native/pump.c) and js-pump.ts (Node streams); choose-pump.ts picks one per process.
import type net from 'node:net';

/** One connection the pump carried, from its start to both sockets closed. */
export interface PumpReport {
  readonly id: number;
  /** Bytes taken from A for B, the head given to start() included; and from B for A. */
  readonly bytesAtoB: number;
  readonly bytesBtoA: number;
  /** When the pump read its first byte from A (the head not counted) and from B (ms since the epoch); undefined: none. */
  readonly firstByteAtoBMs: number | undefined;
  readonly firstByteBtoAMs: number | undefined;
  /** When both sockets were closed (ms since the epoch). */
  readonly closedAtMs: number;
  /** The side that ended first (fin) or failed (reset, error); 'local': closeIdle(); 'error': the pump itself. */
  readonly closedBy: 'a' | 'b' | 'local' | 'error';
  /**
   * fin: both sides ended (each FIN passed on); reset: a side reset (the other is reset too); error:
   * another failure; idle: closed by closeIdle(ms) for moving nothing for ms; closed: by closeIdle(0).
   */
  readonly how: 'fin' | 'reset' | 'error' | 'idle' | 'closed';
  /** The failure's errno (ECONNRESET is 104 on Linux); 0 for fin. */
  readonly errno: number;
}

export type PumpName = 'native' | 'js';

export interface BytePump {
  readonly name: PumpName;
  /**
   * Moves bytes between `a` and `b` (both connected, allowing half-open, nothing buffered either
   * way: paused before anything was read past `head`) until both have closed: `head` goes to `b`
   * first, a FIN is passed on as a FIN (the other direction goes on), a reset as a reset. The
   * sockets are the pump's from here on: the caller neither reads nor writes them, and their
   * 'close' may come at once (the native pump carries the connection on its own fds). `onDone` is
   * called once, when the connection is over. Throws when the pump is stopped or out of fds.
   */
  start(a: net.Socket, b: net.Socket, head: Buffer | undefined, onDone: (report: PumpReport) => void): void;
  /**
   * Closes (a plain close of both sockets) this pump's connections that moved no byte either way for
   * `idleMs`, or all of them for 0; each is reported with closedBy 'local', how 'idle' (or 'closed').
   * Asynchronous: the reports come as the connections close.
   */
  closeIdle(idleMs: number): void;
  /** Takes no new connection from now on; the open ones carry on until they close. */
  stop(): void;
  /** Connections started and not yet reported. */
  open(): number;
}
