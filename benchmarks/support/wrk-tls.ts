// wrk over HTTPS with a chosen SNI. wrk takes the server name it sends from the URL's host and
// resolves that host itself; a mesh name (api.default.dc1.internal.<td>) resolves nowhere, so the
// script replaces wrk.resolve to connect to the address given instead, keeping the URL's host as
// the SNI and Host header. No /etc/hosts entry needed.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TlsLoadOptions {
  /** Server name sent in the ClientHello (and the Host header). */
  sni: string;
  /** Where to connect. */
  host: string;
  port: number;
  path?: string;
  connections: number;
  threads?: number;
  durationMs: number;
  headers?: Record<string, string>;
}

export interface TlsLoadResult {
  requests: number;
  errors: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  /** Response bytes (headers and bodies) per second, in MB (10^6). */
  mbPerSec: number;
}

const dir = mkdtempSync(join(tmpdir(), 'isthmus-wrk-tls-'));
let scripts = 0;

export function runWrkTls(o: TlsLoadOptions): TlsLoadResult {
  const script = join(dir, `s${scripts++}.lua`);
  writeFileSync(
    script,
    [
      `local addr = ${JSON.stringify(o.host)}`,
      'function wrk.resolve(host, service)',
      '  wrk.addrs = wrk.lookup(addr, service)',
      'end',
      ...Object.entries(o.headers ?? {}).map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`),
    ].join('\n'),
  );
  const url = `https://${o.sni}:${o.port}${o.path ?? '/'}`;
  const args = [`-t${o.threads ?? 2}`, `-c${o.connections}`, `-d${Math.max(1, Math.round(o.durationMs / 1000))}s`, '--latency', '-s', script, url];
  const r = spawnSync('wrk', args, { encoding: 'utf8' });
  const out = r.stdout ?? '';
  if (!/Requests\/sec/.test(out)) throw new Error(`wrk ${args.join(' ')} failed: ${out}${r.stderr ?? ''}`);
  const ms = (re: RegExp) => {
    const m = re.exec(out);
    if (!m) return 0;
    const v = Number(m[1]);
    return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
  };
  const transfer = /Transfer\/sec:\s+([\d.]+)(B|KB|MB|GB)/.exec(out);
  const unit = transfer ? { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3 }[transfer[2] as 'B' | 'KB' | 'MB' | 'GB'] : 0;
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const errs = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    requests: Number(/(\d+) requests in/.exec(out)?.[1] ?? 0),
    errors: non2xx + (errs ? errs.slice(1).reduce((a, b) => a + Number(b), 0) : 0),
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0),
    p50Ms: ms(/50%\s+([\d.]+)(us|ms|s)/),
    p99Ms: ms(/99%\s+([\d.]+)(us|ms|s)/),
    mbPerSec: transfer ? (Number(transfer[1]) * unit) / 1e6 : 0,
  };
}
