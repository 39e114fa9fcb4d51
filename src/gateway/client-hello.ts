// Reads the SNI and the client random out of a TLS ClientHello without decrypting anything: walks
// the record layer, reassembles the handshake message across any number of records (and the TCP
// segments they arrived in), and checks every length against RFC 8446 / RFC 5246 bounds.
import { ErrorCodes, IsthmusError } from '../core/errors.js';

export interface ClientHello {
  /** The host_name of the server_name extension (RFC 6066), as sent. */
  sni: string;
  /** ClientHello.random, 32 bytes (a copy: the input buffer may be reused). */
  random: Buffer;
  /** The first 16 bytes of `random` as 32 lowercase hex characters: the flow's traceId. */
  traceId: string;
  /** ClientHello.legacy_version (0x0303 for TLS 1.2 and 1.3 hellos). */
  legacyVersion: number;
  /** supported_versions (RFC 8446 4.2.1) without GREASE values; [] for a TLS 1.2-only hello. */
  versions: number[];
  /** ALPN protocol names offered, in order. */
  alpn: string[];
  /** Extension types in the order sent, GREASE values left out. */
  extensions: number[];
  /** Bytes of the input the hello's records take, record headers included. */
  length: number;
  /** TLS records the hello was spread over. */
  records: number;
}

export interface ParseHelloOptions {
  /** Largest handshake message accepted (default 16 KiB); a bigger one is refused, not buffered. */
  maxHandshakeBytes?: number;
  /** The connection ended: an incomplete hello is an error rather than "need more bytes". */
  final?: boolean;
}

export const DEFAULT_MAX_HELLO_BYTES = 16 * 1024;

const RECORD_HEADER = 5;
const HANDSHAKE_HEADER = 4;
const CONTENT_HANDSHAKE = 22;
const CLIENT_HELLO = 1;
/** TLSPlaintext.length must not exceed 2^14 (RFC 8446 5.1). */
const MAX_RECORD = 16384;
/** No real client needs more; bounds the work spent on a hello sent one byte per record. */
const MAX_RECORDS = 256;
const EXT_SERVER_NAME = 0;
const EXT_ALPN = 16;
const EXT_SUPPORTED_VERSIONS = 43;
const HOST_NAME_RE = /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*$/;

function bad(message: string): never {
  throw new IsthmusError(ErrorCodes.BAD_CLIENT_HELLO, message);
}

/** RFC 8701 GREASE values: 0x0A0A, 0x1A1A, ... 0xFAFA. */
export function isGrease(v: number): boolean {
  return (v & 0x0f0f) === 0x0a0a && v >> 8 === (v & 0xff);
}

/**
 * Parses the ClientHello at the start of `buf` (the bytes a client sent, from the first one).
 * Returns undefined while more bytes are needed; throws IsthmusError(BAD_CLIENT_HELLO) naming what
 * is wrong for anything that is not a well-formed hello with a server name.
 */
export function parseClientHello(buf: Uint8Array, opts: ParseHelloOptions = {}): ClientHello | undefined {
  const max = opts.maxHandshakeBytes ?? DEFAULT_MAX_HELLO_BYTES;
  // Pass 1: walk record headers only, until the whole handshake message is there. Cheap enough to
  // repeat on every segment of a dribbled hello: the work is per record, not per byte.
  let off = 0;
  let records = 0;
  let have = 0;
  let need = -1;
  let h0 = 0;
  let h1 = 0;
  let h2 = 0;
  let h3 = 0;
  while (need < 0 || have < need) {
    if (off + RECORD_HEADER > buf.length) return more(buf, opts, have, need);
    const type = buf[off];
    if (type !== CONTENT_HANDSHAKE) bad(describeContentType(type, records, buf, off));
    const major = buf[off + 1];
    const minor = buf[off + 2];
    if (major !== 3 || minor > 4) bad(`record ${records} has version ${major}.${minor}, not a TLS record version`);
    const len = (buf[off + 3] << 8) | buf[off + 4];
    if (len === 0) bad(`record ${records} is an empty handshake record`);
    if (len > MAX_RECORD) bad(`record ${records} is ${len} bytes, over the TLS limit of ${MAX_RECORD}`);
    if (++records > MAX_RECORDS) bad(`ClientHello spread over more than ${MAX_RECORDS} TLS records`);
    const start = off + RECORD_HEADER;
    const avail = Math.min(len, buf.length - start);
    for (let i = 0; have + i < HANDSHAKE_HEADER && i < avail; i++) {
      const b = buf[start + i];
      const at = have + i;
      if (at === 0) h0 = b;
      else if (at === 1) h1 = b;
      else if (at === 2) h2 = b;
      else h3 = b;
    }
    if (have < HANDSHAKE_HEADER && have + avail >= HANDSHAKE_HEADER) {
      if (h0 !== CLIENT_HELLO) bad(`first handshake message is type ${h0}, not ClientHello (1)`);
      const hsLen = (h1 << 16) | (h2 << 8) | h3;
      if (hsLen > max) bad(`ClientHello of ${hsLen} bytes is over the ${max}-byte limit`);
      need = HANDSHAKE_HEADER + hsLen;
    }
    have += avail;
    if (avail < len) {
      if (need >= 0 && have >= need) bad('handshake bytes follow the ClientHello in its record');
      return more(buf, opts, have, need);
    }
    off = start + len;
  }
  // No client sends another handshake message before the server answers.
  if (have > need) bad('handshake bytes follow the ClientHello in its record');

  let body: Uint8Array;
  if (records === 1) {
    body = buf.subarray(RECORD_HEADER + HANDSHAKE_HEADER, RECORD_HEADER + need);
  } else {
    // Pass 2 (rare: a hello over several records): copy the fragments into one message.
    const msg = Buffer.allocUnsafe(need);
    let p = 0;
    let o = 0;
    while (p < need) {
      const len = (buf[o + 3] << 8) | buf[o + 4];
      msg.set(buf.subarray(o + RECORD_HEADER, o + RECORD_HEADER + len), p);
      p += len;
      o += RECORD_HEADER + len;
    }
    body = msg.subarray(HANDSHAKE_HEADER);
  }
  return parseBody(body, off, records);
}

function more(buf: Uint8Array, opts: ParseHelloOptions, have: number, need: number): undefined {
  if (!opts.final) return undefined;
  if (buf.length === 0) bad('connection closed before any byte of a ClientHello');
  bad(
    need >= 0
      ? `ClientHello truncated: connection closed after ${buf.length} bytes (${have} of ${need} handshake bytes)`
      : `ClientHello truncated: connection closed after ${buf.length} bytes`,
  );
}

function describeContentType(type: number, records: number, buf: Uint8Array, off: number): string {
  if (records === 0 && (type & 0x80) !== 0 && buf[off + 2] === CLIENT_HELLO) return 'an SSLv2-format ClientHello (not supported)';
  if (records === 0 && type >= 0x41 && type <= 0x5a) return 'not TLS: the connection starts with plain text (HTTP?)';
  const name = type === 20 ? ' (change_cipher_spec)' : type === 21 ? ' (alert)' : type === 23 ? ' (application_data)' : '';
  return `record ${records} has content type ${type}${name}, not handshake (22)`;
}

function parseBody(b: Uint8Array, length: number, records: number): ClientHello {
  let p = 0;
  const need = (n: number, what: string) => {
    if (p + n > b.length) bad(`${what} runs past the end of the ClientHello`);
  };
  const u8 = () => b[p++];
  const u16 = () => {
    const v = (b[p] << 8) | b[p + 1];
    p += 2;
    return v;
  };

  need(2 + 32, 'legacy_version and random');
  const legacyVersion = u16();
  if (legacyVersion >> 8 !== 3) bad(`legacy_version 0x${legacyVersion.toString(16).padStart(4, '0')} is not a TLS version`);
  const randomAt = p;
  p += 32;
  need(1, 'legacy_session_id');
  const sid = u8();
  if (sid > 32) bad(`legacy_session_id of ${sid} bytes (at most 32)`);
  need(sid, 'legacy_session_id');
  p += sid;
  need(2, 'cipher_suites');
  const suites = u16();
  if (suites < 2 || suites % 2 !== 0) bad(`cipher_suites length ${suites} is not a positive even number`);
  need(suites, 'cipher_suites');
  p += suites;
  need(1, 'legacy_compression_methods');
  const comp = u8();
  if (comp < 1) bad('legacy_compression_methods is empty');
  need(comp, 'legacy_compression_methods');
  p += comp;
  if (p === b.length) bad('ClientHello has no extensions, so no server_name');
  need(2, 'extensions');
  const extLen = u16();
  if (p + extLen !== b.length) bad(`extensions length ${extLen} does not match the ${b.length - p} bytes left in the ClientHello`);

  let sni: string | undefined;
  let versions: number[] = [];
  const alpn: string[] = [];
  const extensions: number[] = [];
  const seen = new Set<number>();
  while (p < b.length) {
    need(4, 'an extension header');
    const type = u16();
    const len = u16();
    need(len, `extension ${type}`);
    const end = p + len;
    if (seen.has(type)) bad(`extension ${type} appears twice`);
    seen.add(type);
    if (!isGrease(type)) extensions.push(type);
    if (type === EXT_SERVER_NAME) sni = readServerName(b, p, end);
    else if (type === EXT_ALPN) readAlpn(b, p, end, alpn);
    else if (type === EXT_SUPPORTED_VERSIONS) versions = readVersions(b, p, end);
    p = end;
  }
  if (sni === undefined) bad('ClientHello has no server_name (SNI) extension');
  const random = Buffer.from(b.subarray(randomAt, randomAt + 32));
  return { sni, random, traceId: random.toString('hex', 0, 16), legacyVersion, versions, alpn, extensions, length, records };
}

function readServerName(b: Uint8Array, p: number, end: number): string {
  if (end - p < 2) bad('server_name extension is too short');
  const listLen = (b[p] << 8) | b[p + 1];
  p += 2;
  if (p + listLen !== end) bad(`server_name list length ${listLen} does not match the extension's ${end - p} bytes`);
  let host: string | undefined;
  while (p < end) {
    if (end - p < 3) bad('server_name entry is truncated');
    const nameType = b[p];
    const len = (b[p + 1] << 8) | b[p + 2];
    p += 3;
    if (p + len > end) bad('server_name entry runs past the extension');
    if (nameType === 0) {
      if (host !== undefined) bad('server_name has two host_name entries');
      if (len === 0) bad('server_name host_name is empty');
      if (len > 255) bad(`server_name host_name of ${len} bytes (at most 255)`);
      host = Buffer.from(b.buffer, b.byteOffset + p, len).toString('latin1');
      if (!HOST_NAME_RE.test(host)) bad(`server_name ${JSON.stringify(host)} is not a host name`);
    }
    p += len;
  }
  if (host === undefined) bad('server_name extension has no host_name entry');
  return host;
}

function readAlpn(b: Uint8Array, p: number, end: number, out: string[]): void {
  if (end - p < 2) bad('ALPN extension is too short');
  const listLen = (b[p] << 8) | b[p + 1];
  p += 2;
  if (p + listLen !== end) bad(`ALPN list length ${listLen} does not match the extension's ${end - p} bytes`);
  while (p < end) {
    const len = b[p++];
    if (len === 0 || p + len > end) bad('ALPN protocol name is empty or runs past the extension');
    out.push(Buffer.from(b.buffer, b.byteOffset + p, len).toString('latin1'));
    p += len;
  }
}

function readVersions(b: Uint8Array, p: number, end: number): number[] {
  if (end - p < 1) bad('supported_versions extension is empty');
  const len = b[p++];
  if (p + len !== end || len < 2 || len % 2 !== 0) bad(`supported_versions length ${len} does not fit the extension`);
  const out: number[] = [];
  for (; p < end; p += 2) {
    const v = (b[p] << 8) | b[p + 1];
    if (!isGrease(v)) out.push(v);
  }
  return out;
}
