// The fast path: accepted handles taken from the listener before Node wraps them, connections driven
// on their libuv handles (bare-tcp.ts), writes straight to the handle (direct-write.ts). All of it on
// Node internals, so it is used only after its self-test passed (choose.ts).
import net from 'node:net';
import { acceptedSocket, closeHandle, peerOf, resetHandle, takeAccepts } from './accepted-handle.js';
import { acceptBare, bareTcpMissing, connectBare } from './bare-tcp.js';
import type { Accepted, DataPath } from './data-path.js';

/** What this Node lacks for the fast path; undefined: nothing (whether it behaves is the self-test's to say). */
export const fastPathMissing = bareTcpMissing;

export const fastPath: DataPath = {
  name: 'fast',
  passesAccepted: true,
  createServer(onAccept: (c: Accepted) => void): net.Server {
    // Paused on accept: a connection Node made a socket for (no hook, below) reads nothing.
    const server = net.createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true });
    // The listener's handle exists once it is bound; 'listening' comes before any accept is polled.
    server.once('listening', () => {
      if (!takeAccepts(server, onAccept, (err) => server.emit('error', err))) {
        server.emit('error', new Error('the fast path cannot take accepted connections from this listener (no onconnection on its handle)'));
      }
    });
    return server;
  },
  accept: acceptBare,
  connect: connectBare,
  socketOf: acceptedSocket,
  close: closeHandle,
  reset: resetHandle,
  peerOf,
};
