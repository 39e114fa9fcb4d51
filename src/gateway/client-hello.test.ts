import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ErrorCodes, IsthmusError } from '../core/errors.js';
import { isGrease, parseClientHello, type ClientHello, type ParseHelloOptions } from './client-hello.js';
import { helloMessage, messageOf, records } from './testing/hello-builder.js';

const DATA = new URL('./testdata/', import.meta.url);
const golden = JSON.parse(readFileSync(new URL('golden.json', DATA), 'utf8')) as Record<
  string,
  { client: string; sni: string; random: string; records: number; length: number; alpn: string[]; tls13: boolean }
>;
const files = Object.keys(golden).map((name) => ({ name, bytes: readFileSync(new URL(`${name}.bin`, DATA)), want: golden[name] }));

function badHello(buf: Uint8Array, opts?: ParseHelloOptions): IsthmusError {
  try {
    parseClientHello(buf, opts);
  } catch (err) {
    expect(err).toBeInstanceOf(IsthmusError);
    expect((err as IsthmusError).code).toBe(ErrorCodes.BAD_CLIENT_HELLO);
    return err as IsthmusError;
  }
  throw new Error('expected BAD_CLIENT_HELLO');
}

describe('parseClientHello: golden hellos from real clients', () => {
  it('has hellos from Node, openssl and curl', () => {
    expect(files.map((f) => f.name).sort()).toEqual(['curl', 'node-alpn-subset', 'node-server', 'node-tls12', 'node-tls13', 'openssl-tls12', 'openssl-tls13']);
  });

  for (const { name, bytes, want } of files) {
    it(`reads ${name} (${want.client})`, () => {
      const h = parseClientHello(bytes)!;
      expect(h.sni).toBe(want.sni);
      expect(h.random.toString('hex')).toBe(want.random);
      expect(h.traceId).toBe(want.random.slice(0, 32));
      expect(h.traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(h.records).toBe(want.records);
      expect(h.length).toBe(want.length);
      expect(h.alpn).toEqual(want.alpn);
      expect(h.legacyVersion).toBe(0x0303);
      expect(h.versions.includes(0x0304)).toBe(want.tls13);
      expect(h.extensions).toContain(0);
    });
  }

  it('needs more bytes for every proper prefix, and calls each one truncated once the connection closes', () => {
    for (const { bytes } of files) {
      for (let i = 0; i < bytes.length; i++) {
        const prefix = bytes.subarray(0, i);
        expect(parseClientHello(prefix)).toBeUndefined();
        const err = badHello(prefix, { final: true });
        expect(err.message).toMatch(i === 0 ? /before any byte/ : /truncated/);
      }
      expect(parseClientHello(bytes)?.sni).toBeTruthy();
    }
  });

  it('reads a hello split over two TLS records at every byte of the handshake message', () => {
    for (const { bytes, want } of files) {
      const msg = messageOf(bytes);
      for (let cut = 1; cut < msg.length; cut++) {
        const two = records(msg, [cut]);
        const h = parseClientHello(two)!;
        expect(h.records).toBe(2);
        expect(h.sni).toBe(want.sni);
        expect(h.random.toString('hex')).toBe(want.random);
        expect(h.length).toBe(two.length);
      }
    }
  });

  it('reads a two-record hello arriving in TCP segments split at every byte', () => {
    const { bytes, want } = files.find((f) => f.name === 'node-tls13')!;
    const msg = messageOf(bytes);
    for (const cut of [1, 3, 4, 5, 100, msg.length - 1]) {
      const two = records(msg, [cut]);
      for (let i = 0; i < two.length; i++) expect(parseClientHello(two.subarray(0, i))).toBeUndefined();
      expect(parseClientHello(two)!.sni).toBe(want.sni);
    }
  });

  it('reads a hello sent one handshake byte per record, and refuses one spread over too many records', () => {
    const msg = helloMessage({ sni: 'a.default.dc1.internal.t.isthmus', versions: [] });
    expect(msg.length).toBeLessThan(256);
    const tiny = records(msg, Array(msg.length).fill(1));
    expect(parseClientHello(tiny)).toMatchObject({ sni: 'a.default.dc1.internal.t.isthmus', records: msg.length });
    const big = helloMessage({ sni: 'a.default.dc1.internal.t.isthmus', padding: 300 });
    expect(badHello(records(big, Array(big.length).fill(1))).message).toMatch(/more than 256 TLS records/);
  });

  it('ignores bytes after the hello (a following record), which the caller forwards', () => {
    const { bytes, want } = files[0];
    const after = Buffer.concat([bytes, Buffer.from([20, 3, 3, 0, 1, 1]), Buffer.from('early')]);
    expect(parseClientHello(after)).toMatchObject({ sni: want.sni, length: bytes.length });
  });
});

describe('parseClientHello: GREASE and unknown extensions', () => {
  it('skips GREASE in extensions and versions, and unknown extensions', () => {
    const msg = helloMessage({
      sni: 'api.default.dc1.internal.t.isthmus',
      grease: true,
      alpn: ['h2'],
      extra: [
        [0xfe0d, Buffer.alloc(200, 7)],
        [0x4469, Buffer.from('xyz')],
      ],
    });
    const h = parseClientHello(records(msg))!;
    expect(h.sni).toBe('api.default.dc1.internal.t.isthmus');
    expect(h.versions).toEqual([0x0304, 0x0303]);
    expect(h.alpn).toEqual(['h2']);
    expect(h.extensions.some(isGrease)).toBe(false);
    expect(h.extensions).toEqual([0xfe0d, 0x4469, 0, 16, 43]);
  });

  it('knows the GREASE values', () => {
    const grease = Array.from({ length: 16 }, (_, i) => ((i << 4) | 0x0a) * 0x101);
    expect(grease.every(isGrease)).toBe(true);
    expect([0x0a0b, 0x1a2a, 0x0304, 0].some(isGrease)).toBe(false);
  });

  it('reads a hello near the 16 KiB cap and refuses one over it before it arrives', () => {
    const near = helloMessage({ sni: 'a.default.dc1.internal.t.isthmus', padding: 16_000 });
    expect(parseClientHello(records(near, [10_000]))?.sni).toBe('a.default.dc1.internal.t.isthmus');
    const over = helloMessage({ sni: 'a.default.dc1.internal.t.isthmus', padding: 17_000 });
    // Refused from its first record header and handshake header alone.
    expect(badHello(records(over, [16_000]).subarray(0, 9)).message).toMatch(/over the 16384-byte limit/);
    expect(badHello(records(near), { maxHandshakeBytes: 1024 }).message).toMatch(/over the 1024-byte limit/);
  });
});

describe('parseClientHello: refusals name what is wrong', () => {
  const good = helloMessage({ sni: 'api.default.dc1.internal.t.isthmus' });
  const cases: [string, Buffer, RegExp][] = [
    ['plain HTTP', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), /plain text/],
    ['an alert record', Buffer.from([21, 3, 3, 0, 2, 2, 40]), /content type 21 \(alert\)/],
    ['an SSLv2 hello', Buffer.from([0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15]), /SSLv2/],
    ['a non-TLS record version', Buffer.from([22, 2, 0, 0, 4, 1, 0, 0, 0]), /version 2\.0/],
    ['an empty record', Buffer.from([22, 3, 1, 0, 0]), /empty handshake record/],
    ['an oversized record', Buffer.from([22, 3, 1, 0x40, 0x01]), /over the TLS limit/],
    ['a ServerHello', records(Buffer.concat([Buffer.from([2]), good.subarray(1)])), /type 2, not ClientHello/],
    ['no SNI', records(helloMessage({})), /no server_name/],
    [
      'an application data record after the first',
      Buffer.concat([records(good.subarray(0, 10)), Buffer.from([23, 3, 3, 0, 1, 0])]),
      /content type 23 \(application_data\)/,
    ],
    ['a second handshake message in the record', records(Buffer.concat([good, Buffer.from([20, 0, 0, 0])])), /follow the ClientHello/],
    ['a bad host name', records(helloMessage({ sni: 'bad name\u0000.x' })), /not a host name/],
    ['an empty host name', records(helloMessage({ sni: '' })), /host_name is empty/],
    [
      'a duplicate extension',
      records(
        helloMessage({
          sni: 'a.b',
          extra: [
            [7, Buffer.alloc(0)],
            [7, Buffer.alloc(0)],
          ],
        }),
      ),
      /extension 7 appears twice/,
    ],
  ];
  for (const [what, bytes, message] of cases) {
    it(`refuses ${what}`, () => {
      expect(badHello(bytes).message).toMatch(message);
    });
  }

  it('refuses inconsistent lengths inside the hello', () => {
    const msg = Buffer.from(good);
    // extensions length: the 2 bytes after compression methods (34 + 1 + 32 + 2 + 10 + 2 into the body).
    const extAt = 4 + 2 + 32 + 1 + 32 + 2 + 10 + 2;
    msg.writeUInt16BE(msg.readUInt16BE(extAt) + 1, extAt);
    expect(badHello(records(msg)).message).toMatch(/extensions length/);
    const sid = Buffer.from(good);
    sid[4 + 2 + 32] = 33;
    expect(badHello(records(sid)).message).toMatch(/legacy_session_id of 33 bytes/);
    const suites = Buffer.from(good);
    suites.writeUInt16BE(11, 4 + 2 + 32 + 1 + 32);
    expect(badHello(records(suites)).message).toMatch(/cipher_suites length 11/);
  });
});

describe('parseClientHello: fuzz', () => {
  // A small PRNG so a failure can be replayed from its seed.
  function rng(seed: number) {
    let s = seed >>> 0 || 1;
    return () => {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      return (s >>> 0) / 0x100000000;
    };
  }
  const seeds = [files.map((f) => f.bytes), records(helloMessage({ sni: 'x.default.dc1.internal.t.isthmus', grease: true, alpn: ['h2'] }), [40, 7])].flat();

  function mutate(r: () => number, input: Buffer): Buffer {
    let b = Buffer.from(input);
    const n = 1 + Math.floor(r() * 4);
    for (let i = 0; i < n; i++) {
      const at = Math.floor(r() * b.length);
      switch (Math.floor(r() * 7)) {
        case 0:
          b[at] ^= 1 << Math.floor(r() * 8);
          break;
        case 1:
          b[at] = Math.floor(r() * 256);
          break;
        case 2:
          b[at] = [0, 0xff, 0x7f, 0x80, 1][Math.floor(r() * 5)];
          break;
        case 3:
          b = b.subarray(0, at);
          break;
        case 4:
          b = Buffer.concat([b.subarray(0, at), Buffer.from([Math.floor(r() * 256)]), b.subarray(at)]);
          break;
        case 5:
          b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + Math.floor(r() * 8)))]);
          break;
        default:
          if (at + 1 < b.length) b.writeUInt16BE(Math.floor(r() * 65536), at);
      }
      if (b.length === 0) break;
    }
    return b;
  }

  function check(buf: Buffer, seed: number, final: boolean): ClientHello | undefined {
    try {
      const h = parseClientHello(buf, { final });
      if (h) {
        expect(h.random.length).toBe(32);
        expect(h.length).toBeLessThanOrEqual(buf.length);
      } else {
        expect(final).toBe(false);
      }
      return h;
    } catch (err) {
      if (!(err instanceof IsthmusError) || err.code !== ErrorCodes.BAD_CLIENT_HELLO) {
        throw new Error(`seed ${seed}: ${(err as Error).stack}\ninput ${buf.toString('hex')}`, { cause: err });
      }
      return undefined;
    }
  }

  it('answers mutated and random input only with a hello, "more bytes" or BAD_CLIENT_HELLO', () => {
    const base = Number(process.env.ISTHMUS_FUZZ_SEED ?? 20240601);
    const deadline = Date.now() + 3000;
    let runs = 0;
    for (let i = 0; i < 30_000 && Date.now() < deadline; i++, runs++) {
      const seed = base + i;
      const r = rng(seed);
      const input =
        r() < 0.1 ? Buffer.from(Array.from({ length: Math.floor(r() * 600) }, () => Math.floor(r() * 256))) : mutate(r, seeds[Math.floor(r() * seeds.length)]);
      check(input, seed, false);
      check(input, seed, true);
    }
    expect(runs).toBeGreaterThan(1000);
  });
});
