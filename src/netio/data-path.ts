// What the gateway and the sidecar need of TCP: listeners whose accepted connections they drive
// themselves, and connections read into their own buffers. One interface, several implementations
// (fast-path.ts on Node internals, plain-path.ts on public net.Socket), one chosen per process at
// start (choose.ts); a native byte pump would be one more implementation of this file's DataPath.
import type net from 'node:net';

/** How a write went. */
export const enum Written {
  /** The kernel took every byte: the buffer is free again. */
  Done,
  /** Part of it waits for the connection to drain: the buffer stays in use until `after` is called. */
  Pending,
}

/**
 * A connection as its listener accepted it, not yet reading: made into a TcpConn or a net.Socket by
 * the path that accepted it, or closed. It can be passed to another process (`process.send`'s
 * handle) where the path says so (`passesAccepted`).
 */
export interface Accepted {
  readonly accepted: unique symbol;
}

/** What a connection tells its owner. Called synchronously from the event loop, never re-entrantly. */
export interface TcpEvents {
  /** The read buffer for the next read. */
  buffer(): Buffer;
  /** `n` bytes read into `buf` (n > 0); false stops reading until resume(). */
  read(n: number, buf: Buffer): boolean;
  /** Connected (for connect() only); reading starts after this returns. */
  connect?(): void;
  /** The peer ended its side (FIN). */
  end(): void;
  /** A connect, read or write failed (`code`: ECONNRESET, ECONNREFUSED, ...); close() follows. */
  error(code: string): void;
  /** Closed: no event follows. */
  close(): void;
}

/** One TCP connection as the gateway drives it (both sides: accepted and connected). */
export interface TcpConn {
  /** Bytes read and bytes given to write() so far. */
  readonly bytesRead: number;
  readonly bytesWritten: number;
  /** Destroyed, reset or closed after both ends ended: nothing more is read or written. */
  readonly destroyed: boolean;
  /** end() was called: nothing more is written. */
  readonly ended: boolean;
  /** The peer's address, looked up when asked. */
  remoteAddress(): string | undefined;
  pause(): void;
  resume(): void;
  /**
   * Points the next reads at `buf` (between reads only). False when this path offers no way to (the
   * connection keeps its buffer).
   */
  readInto(buf: Buffer): boolean;
  /**
   * Writes `data` now. Done: the kernel took it all, `data` is free again. Pending: the rest is queued
   * (in order after earlier writes) and `after` is called once it is written or has failed (the
   * connection is destroyed by then). A write to a connection that is destroyed or ended is dropped
   * (Done).
   */
  write(data: Buffer, after: (err: Error | null) => void): Written;
  /** Ends our side once queued writes are out (FIN); closes when both sides have ended. */
  end(): void;
  /** Closes now; queued writes are dropped. */
  destroy(): void;
  /** Closes now with a reset (RST), so the peer does not take it for a clean end. */
  reset(): void;
  /**
   * The connection's file descriptor, for a byte pump that dup(2)s it and carries the connection on
   * its copy (see detach()); -1 when there is none (not connected, closed) or when bytes are still
   * held here (read and not handed to the owner, or queued to write), which the copy would not carry.
   */
  fd(): number;
  /**
   * Lets go of the connection without ending it, once a byte pump holds a copy of fd(): our fd is
   * closed (a plain close(2) of one of two fds on the connection: no FIN, no RST) and no event
   * follows, close() included.
   */
  detach(): void;
}

export type DataPathName = 'fast' | 'plain';

/** One way of doing TCP for the gateway and the sidecar. */
export interface DataPath {
  readonly name: DataPathName;
  /** Whether an Accepted can be passed to another process (and taken there by the same path). */
  readonly passesAccepted: boolean;
  /**
   * A server (not yet listening: the caller listens) that hands each accepted connection to
   * `onAccept`, half-open allowed, TCP_NODELAY set, nothing read yet. Accept errors (EMFILE and
   * the like) are the server's 'error' events.
   */
  createServer(onAccept: (c: Accepted) => void): net.Server;
  /** A connection on an accepted one, reading. */
  accept(c: Accepted, ev: TcpEvents): TcpConn;
  /** A connection to `host`:`port` (TCP_NODELAY set); ev.connect, then reads, once connected. */
  connect(host: string, port: number, ev: TcpEvents): TcpConn;
  /** A net.Socket on an accepted connection, half-open allowed, reading through `onread` (as net.connect's). */
  socketOf(c: Accepted, onread: net.OnReadOpts): net.Socket;
  /** Closes an accepted connection no TcpConn or socket was made for. */
  close(c: Accepted): void;
  /** Resets (RST) and closes an accepted connection no TcpConn or socket was made for. */
  reset(c: Accepted): void;
  /** The peer address of an accepted connection no TcpConn or socket was made for, for a log line. */
  peerOf(c: Accepted): string | undefined;
}
