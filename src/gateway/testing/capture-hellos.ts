// Captures real ClientHellos (Node, openssl s_client, curl) from a local listener into
// src/gateway/testdata/*.bin, with what is known of each independently of our parser in
// testdata/golden.json. Run: npx tsx src/gateway/testing/capture-hellos.ts
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';

const OUT = fileURLToPath(new URL('../testdata/', import.meta.url));
const TD = 'golden.isthmus';

interface Golden {
  client: string;
  sni: string;
  /** ClientHello.random, hex, read at its fixed offset (one-record hellos only). */
  random: string;
  records: number;
  length: number;
  alpn: string[];
  tls13: boolean;
}

/** Bytes up to the end of the record holding the last handshake byte, by record headers alone. */
function helloEnd(buf: Buffer): { end: number; records: number } | undefined {
  let off = 0;
  let have = 0;
  let need = -1;
  let records = 0;
  let head = Buffer.alloc(0);
  while (need < 0 || have < need) {
    if (off + 5 > buf.length) return undefined;
    const len = buf.readUInt16BE(off + 3);
    if (off + 5 + len > buf.length) return undefined;
    const frag = buf.subarray(off + 5, off + 5 + len);
    if (head.length < 4) head = Buffer.concat([head, frag]).subarray(0, 4);
    if (need < 0 && head.length === 4) need = 4 + head.readUIntBE(1, 3);
    have += len;
    off += 5 + len;
    records++;
  }
  return { end: off, records };
}

function capture(run: (port: number) => void): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((sock) => {
      let buf = Buffer.alloc(0);
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        const done = helloEnd(buf);
        if (done) {
          sock.destroy();
          server.close();
          resolve(buf.subarray(0, done.end));
        }
      });
      sock.on('error', () => {});
    });
    server.listen(0, '127.0.0.1', () => run((server.address() as net.AddressInfo).port));
    setTimeout(() => reject(new Error('no ClientHello in 10 s')), 10_000).unref();
  });
}

function nodeClient(opts: tls.ConnectionOptions) {
  return (port: number) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...opts });
    s.on('error', () => {});
  };
}

function command(cmd: string, args: (port: number) => string[]) {
  return (port: number) => {
    execFile(cmd, args(port), { timeout: 5000 }, () => {});
  };
}

const svc = (s: string) => `${s}.default.dc1.internal.${TD}`;
const cases: { name: string; client: string; sni: string; alpn: string[]; tls13: boolean; run: (port: number) => void }[] = [
  { name: 'node-tls13', client: `node ${process.version} tls.connect`, sni: svc('api'), alpn: [], tls13: true, run: nodeClient({ servername: svc('api') }) },
  {
    name: 'node-tls12',
    client: `node ${process.version} tls.connect maxVersion TLSv1.2`,
    sni: svc('web'),
    alpn: [],
    tls13: false,
    run: nodeClient({ servername: svc('web'), maxVersion: 'TLSv1.2' }),
  },
  {
    name: 'node-alpn-subset',
    client: `node ${process.version} tls.connect ALPN h2,http/1.1`,
    sni: `v2.${svc('api')}`,
    alpn: ['h2', 'http/1.1'],
    tls13: true,
    run: nodeClient({ servername: `v2.${svc('api')}`, ALPNProtocols: ['h2', 'http/1.1'] }),
  },
  {
    name: 'node-server',
    client: `node ${process.version} tls.connect`,
    sni: `server.dc2.${TD}`,
    alpn: [],
    tls13: true,
    run: nodeClient({ servername: `server.dc2.${TD}` }),
  },

  {
    name: 'openssl-tls13',
    client: 'openssl s_client -tls1_3',
    sni: svc('db'),
    alpn: [],
    tls13: true,
    run: command('openssl', (port) => ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', svc('db'), '-tls1_3']),
  },
  {
    name: 'openssl-tls12',
    client: 'openssl s_client -tls1_2',
    sni: svc('db'),
    alpn: [],
    tls13: false,
    run: command('openssl', (port) => ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', svc('db'), '-tls1_2']),
  },
  {
    name: 'curl',
    client: 'curl (OpenSSL)',
    sni: svc('web'),
    alpn: ['h2', 'http/1.1'],
    tls13: true,
    run: command('curl', (port) => ['-sk', '--max-time', '3', `https://${svc('web')}:${port}/`, '--resolve', `${svc('web')}:${port}:127.0.0.1`]),
  },
];

async function main(): Promise<void> {
  const golden: Record<string, Golden> = {};
  for (const c of cases) {
    const bytes = await capture(c.run);
    const { records } = helloEnd(bytes)!;
    writeFileSync(`${OUT}${c.name}.bin`, bytes);
    golden[c.name] = {
      client: c.client,
      sni: c.sni,
      random: bytes.subarray(11, 43).toString('hex'),
      records,
      length: bytes.length,
      alpn: c.alpn,
      tls13: c.tls13,
    };
    process.stdout.write(`${c.name}: ${bytes.length} bytes, ${records} record(s)\n`);
  }
  writeFileSync(`${OUT}golden.json`, JSON.stringify(golden, null, 2) + '\n');
}

await main();
