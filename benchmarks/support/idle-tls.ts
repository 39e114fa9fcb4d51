// Benchmark child: opens argv[4] TLS connections to argv[2]:argv[3] with SNI argv[5] (any
// certificate accepted), a few hundred handshakes at a time, and holds them open and silent.
// Prints { open, failed } once all have finished their handshakes; closes them on SIGTERM.
import tls from 'node:tls';

const [host, portArg, countArg, servername] = process.argv.slice(2);
const port = Number(portArg);
const count = Number(countArg);
const socks: tls.TLSSocket[] = [];
let open = 0;
let failed = 0;
let session: Buffer | undefined;

function one(): Promise<void> {
  return new Promise((resolve) => {
    const s = tls.connect({ host, port, servername, rejectUnauthorized: false, minVersion: 'TLSv1.3', session });
    s.once('session', (t) => (session ??= t));
    s.once('secureConnect', () => {
      open++;
      resolve();
    });
    s.on('error', () => {
      failed++;
      resolve();
    });
    socks.push(s);
  });
}

let next = 0;
await Promise.all(
  Array.from({ length: 200 }, async () => {
    while (next < count) {
      next++;
      await one();
    }
  }),
);
process.stdout.write(JSON.stringify({ open, failed }) + '\n');
process.on('SIGTERM', () => {
  for (const s of socks) s.destroy();
  process.exit(0);
});
setInterval(() => {}, 1 << 30);
