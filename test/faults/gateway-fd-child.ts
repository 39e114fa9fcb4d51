// A mesh gateway with the native byte pump in a process of its own, for gateway-pump.test.ts, which
// starts it under a low RLIMIT_NOFILE (prlimit) to run it out of file descriptors. Routes
// api.default.dc1.internal.golden.isthmus to 127.0.0.1:<argv[2]>. Writes one JSON line to stdout
// per log line ({log}), per flow record ({flow}) and per command read on stdin: "status" ({status}),
// "fill N" (opens /dev/null until out of fds, then closes N of them: {filled}), "unfill" ({filled}).
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Gateway } from '../../src/gateway/index.js';
import { createLogger } from '../../src/telemetry/index.js';

const upstream = Number(process.argv[2]);
if (!Number.isInteger(upstream) || upstream <= 0)
  throw new Error(`gateway-fd-child: argv[2] must be the upstream port, not ${JSON.stringify(process.argv[2])}`);

const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
const fdCount = () => readdirSync('/proc/self/fd').length;
const limit = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1];

const gw = new Gateway({
  id: 'mesh-gateway-dc1',
  dc: 'dc1',
  host: '127.0.0.1',
  port: 0,
  pump: 'on',
  pumpAfterMs: 0,
  logger: createLogger({ level: 'info', write: (line) => out({ log: JSON.parse(line) as unknown }) }),
  onFlow: (r) => out({ flow: { verdict: r.verdict, reason: r.reason, bytesIn: r.bytesIn, bytesOut: r.bytesOut } }),
  routes: {
    dc: 'dc1',
    trustDomain: 'golden.isthmus',
    services: [{ name: 'api', namespace: 'default', endpoints: [{ host: '127.0.0.1', port: upstream }] }],
    serverAddresses: [],
    remotes: [],
  },
});
await gw.start();
out({ started: { port: gw.port, limit: Number(limit), fds: fdCount() } });
const filler: number[] = [];
createInterface({ input: process.stdin })
  .on('line', (line) => {
    const [cmd, arg] = line.trim().split(/\s+/);
    if (cmd === 'status') out({ status: { connections: gw.connections, pumped: gw.pump?.open() ?? -1, fds: fdCount() } });
    else if (cmd === 'fill') {
      try {
        for (;;) filler.push(openSync('/dev/null', 'r'));
      } catch {
        // EMFILE: the limit reached.
      }
      for (let i = 0; i < Number(arg); i++) closeSync(filler.pop()!);
      out({ filled: { held: filler.length } });
    } else if (cmd === 'unfill') {
      while (filler.length) closeSync(filler.pop()!);
      out({ filled: { held: 0 } });
    }
  })
  // The test is done with it (or gone).
  .on('close', () => void gw.stop().then(() => process.exit(0)));
