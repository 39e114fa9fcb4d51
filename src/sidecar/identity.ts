// Reading identities off TLS peers: the SPIFFE URI SAN of a certificate, and the traceId from the
// keylog line Node hands over during a handshake (the client random; the secret is dropped at once).
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { spiffeIdOfSan } from '../core/names.js';

export function spiffeOf(cert: PeerCertificate | undefined): string | undefined {
  return spiffeIdOfSan(cert?.subjectaltname);
}

/**
 * The SPIFFE ID of a TLS socket's peer. Read through the X509Certificate view, which parses only
 * what is asked of it (getPeerCertificate() also computes three digests and every field of it).
 */
export function peerSpiffeId(sock: TLSSocket): string | undefined {
  return spiffeIdOfSan(sock.getPeerX509Certificate()?.subjectAltName);
}

/** "CLIENT_HANDSHAKE_TRAFFIC_SECRET <random> <secret>" or "CLIENT_RANDOM <random> <secret>" -> first 16 bytes of the random, hex. */
export function traceIdFromKeylog(line: Buffer): string | undefined {
  const text = line.toString('latin1');
  const first = text.indexOf(' ');
  if (first < 0) return undefined;
  const random = text.slice(first + 1, first + 1 + 64);
  return /^[0-9a-fA-F]{64}$/.test(random) ? random.slice(0, 32).toLowerCase() : undefined;
}
