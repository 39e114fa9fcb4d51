// HTTP/1.1 Upgrade (WebSocket) through a sidecar: once the far side answers 101 Switching Protocols,
// the two connections are joined byte for byte until both have ended (each side's end is passed on:
// a half-closed connection keeps carrying the other way) or either is reset. The answers written
// straight onto a socket (no ServerResponse exists for an upgrade request) are framed here too.
import http from 'node:http';
import type net from 'node:net';
import { watchIdle } from './idle-timeout.js';

/** What an upgraded connection moved, for its flow record. */
export interface SpliceResult {
  /** Bytes from the caller's side to the far side (the bytes after the 101 included). */
  aToB: number;
  bToA: number;
  /** Ended by the idle timeout rather than by either side. */
  idle: boolean;
}

/** A response head as HTTP/1.1 writes it; array values become one line each. */
export function responseHead(status: number, headers: http.OutgoingHttpHeaders): string {
  let head = `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\n`;
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) head += `${k}: ${String(one)}\r\n`;
  }
  return head + '\r\n';
}

/** A whole answer on an upgrade request's socket, which then closes (the caller asked for another protocol on it). */
export function answerRaw(sock: net.Socket, status: number, headers: http.OutgoingHttpHeaders, body: string): number {
  if (sock.destroyed) return 0;
  sock.end(responseHead(status, { ...headers, 'content-length': Buffer.byteLength(body), connection: 'close' }) + body);
  return Buffer.byteLength(body);
}

/**
 * Passes a non-101 answer to an upgrade request on: its head, then its body as it comes, then the
 * socket closes (so the body needs no framing of its own: HTTP/1.1's close-delimited body).
 * `done` gets the body's bytes.
 */
export function answerFrom(sock: net.Socket, res: http.IncomingMessage, headers: http.OutgoingHttpHeaders, done: (bytes: number) => void): void {
  const out: http.OutgoingHttpHeaders = { ...headers, connection: 'close' };
  delete out['transfer-encoding'];
  sock.write(responseHead(res.statusCode ?? 502, out));
  let bytes = 0;
  res.on('data', (c: Buffer) => {
    bytes += c.length;
    if (!sock.write(c)) {
      res.pause();
      sock.once('drain', () => res.resume());
    }
  });
  res.once('end', () => {
    sock.end();
    done(bytes);
  });
  res.once('error', () => {
    sock.destroy();
    done(bytes);
  });
  sock.once('close', () => res.destroy());
}

/** The fields of a 101 (or an upgrade request) on a proxy's own side: the end-to-end ones, and the upgrade itself. */
export function withUpgrade(headers: http.OutgoingHttpHeaders, upgrade: string | undefined): http.OutgoingHttpHeaders {
  return { ...headers, connection: 'Upgrade', upgrade: upgrade ?? 'websocket' };
}

/**
 * Joins `a` (the caller's side) and `b` once the upgrade took: each side's early bytes go first,
 * then everything either reads goes to the other. An end is passed on as an end (half-close); a
 * reset or error on one destroys the other; `idleMs` with no byte either way destroys both. `done`
 * is told once, when both sockets have closed.
 */
export function splice(a: net.Socket, aHead: Buffer, b: net.Socket, bHead: Buffer, idleMs: number, done: (r: SpliceResult) => void): void {
  const r: SpliceResult = { aToB: 0, bToA: 0, idle: false };
  // Set before either side's end can arrive: an end read must not end the socket's own writes.
  a.allowHalfOpen = true;
  b.allowHalfOpen = true;
  a.setTimeout(0);
  b.setTimeout(0);
  a.on('error', () => {});
  b.on('error', () => {});
  const stopIdle = watchIdle(
    idleMs,
    () => r.aToB + r.bToA,
    () => {
      r.idle = true;
      a.destroy();
      b.destroy();
    },
  );
  if (aHead.length) {
    r.aToB += aHead.length;
    b.write(aHead);
  }
  if (bHead.length) {
    r.bToA += bHead.length;
    a.write(bHead);
  }
  const oneWay = (from: net.Socket, to: net.Socket, count: (n: number) => void) => {
    from.on('data', (c: Buffer) => {
      count(c.length);
      if (!to.write(c)) {
        from.pause();
        to.once('drain', () => from.resume());
      }
    });
    from.once('end', () => to.end());
    // Closed without an end of its bytes (a reset, an error): nothing more can go either way.
    // Closed after its end: what is still queued for the other side is written, then it closes.
    from.once('close', () => {
      if (!from.readableEnded || to.writableLength === 0) to.destroy();
      else to.once('finish', () => to.destroy());
    });
  };
  oneWay(a, b, (n) => (r.aToB += n));
  oneWay(b, a, (n) => (r.bToA += n));
  let closed = 0;
  const onClose = () => {
    if (++closed < 2) return;
    stopIdle();
    done(r);
  };
  a.once('close', onClose);
  b.once('close', onClose);
  a.resume();
  b.resume();
}
