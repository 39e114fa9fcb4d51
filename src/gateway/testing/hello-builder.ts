// Builds ClientHellos byte by byte for tests: GREASE, unknown extensions, any record framing.
import { randomBytes } from 'node:crypto';

export interface HelloSpec {
  sni?: string;
  random?: Buffer;
  alpn?: string[];
  /** supported_versions; omitted when empty. */
  versions?: number[];
  /** GREASE in cipher suites, extensions and versions, as Chrome sends. */
  grease?: boolean;
  /** Extra extensions [type, data], placed before server_name. */
  extra?: [number, Buffer][];
  /** Pads the hello with a padding extension (21) of this many bytes. */
  padding?: number;
}

const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
const u24 = (n: number) => Buffer.from([n >> 16, (n >> 8) & 0xff, n & 0xff]);
const ext = (type: number, data: Buffer) => Buffer.concat([u16(type), u16(data.length), data]);

/** The handshake message (type 1, 24-bit length, body). */
export function helloMessage(spec: HelloSpec = {}): Buffer {
  const random = spec.random ?? randomBytes(32);
  const suites = [...(spec.grease ? [0x0a0a] : []), 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f];
  const exts: Buffer[] = [];
  if (spec.grease) exts.push(ext(0x1a1a, Buffer.alloc(0)));
  for (const [t, d] of spec.extra ?? []) exts.push(ext(t, d));
  if (spec.sni !== undefined) {
    const name = Buffer.from(spec.sni, 'latin1');
    const entry = Buffer.concat([Buffer.from([0]), u16(name.length), name]);
    exts.push(ext(0, Buffer.concat([u16(entry.length), entry])));
  }
  if (spec.alpn?.length) {
    const list = Buffer.concat(spec.alpn.map((p) => Buffer.concat([Buffer.from([p.length]), Buffer.from(p)])));
    exts.push(ext(16, Buffer.concat([u16(list.length), list])));
  }
  const versions = [...(spec.grease ? [0x2a2a] : []), ...(spec.versions ?? [0x0304, 0x0303])];
  if (versions.length) exts.push(ext(43, Buffer.concat([Buffer.from([versions.length * 2]), ...versions.map(u16)])));
  if (spec.padding) exts.push(ext(21, Buffer.alloc(spec.padding)));
  if (spec.grease) exts.push(ext(0x3a3a, Buffer.from([0])));
  const extBytes = Buffer.concat(exts);
  const body = Buffer.concat([
    u16(0x0303),
    random,
    Buffer.from([32]),
    randomBytes(32),
    u16(suites.length * 2),
    ...suites.map(u16),
    Buffer.from([1, 0]),
    u16(extBytes.length),
    extBytes,
  ]);
  return Buffer.concat([Buffer.from([1]), u24(body.length), body]);
}

/** Frames a handshake message into TLS records of the given fragment sizes (the last takes the rest). */
export function records(message: Buffer, sizes: number[] = []): Buffer {
  const out: Buffer[] = [];
  let off = 0;
  for (const size of sizes) {
    if (off >= message.length) break;
    const frag = message.subarray(off, Math.min(off + size, message.length));
    out.push(Buffer.from([22, 3, 1]), u16(frag.length), frag);
    off += frag.length;
  }
  if (off < message.length) {
    const frag = message.subarray(off);
    out.push(Buffer.from([22, 3, 1]), u16(frag.length), frag);
  }
  return Buffer.concat(out);
}

/** The handshake message inside a one-record hello. */
export function messageOf(hello: Buffer): Buffer {
  return hello.subarray(5);
}

/** X25519MLKEM768 (RFC draft-ietf-tls-ecdhe-mlkem): a 1184-byte ML-KEM key and a 32-byte X25519 key. */
const X25519_MLKEM768 = 0x11ec;
const X25519 = 0x001d;

/**
 * A ClientHello of the size Node 22+ (OpenSSL 3.5) sends by default: a hybrid post-quantum key share
 * beside the X25519 one, about 1.5 KB, in one record (Node 20's OpenSSL 3.0 cannot make one).
 */
export function postQuantumHello(sni: string): Buffer {
  const share = (group: number, len: number) => Buffer.concat([u16(group), u16(len), randomBytes(len)]);
  const shares = Buffer.concat([share(X25519_MLKEM768, 1184 + 32), share(X25519, 32)]);
  const groups = [X25519_MLKEM768, X25519, 0x0017, 0x0018];
  return records(
    helloMessage({
      sni,
      grease: true,
      extra: [
        [10, Buffer.concat([u16(groups.length * 2), ...groups.map(u16)])],
        [51, Buffer.concat([u16(shares.length), shares])],
      ],
    }),
  );
}
