// wrk over HTTPS with a chosen SNI. wrk takes the server name it sends from the URL's host and
// resolves that host itself; a mesh name (api.default.dc1.internal.<td>) resolves nowhere, so the
// script replaces wrk.resolve to connect to the address given instead, keeping the URL's host as
// the SNI and Host header. No /etc/hosts entry needed.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseWrk } from './wrk.js';

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
  /** How long a response may take before wrk counts it as a timeout (its default: 2 s). */
  timeoutMs?: number;
}

/** What wrk reported, with the response bytes per second in MB (10^6). */
export type TlsLoadResult = ReturnType<typeof parseWrk>;

const dir = mkdtempSync(join(tmpdir(), 'isthmus-wrk-tls-'));
let scripts = 0;

function wrkArgs(o: TlsLoadOptions): string[] {
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
  const timeout = o.timeoutMs ? ['--timeout', `${Math.ceil(o.timeoutMs / 1000)}s`] : [];
  return [`-t${o.threads ?? 2}`, `-c${o.connections}`, `-d${Math.max(1, Math.round(o.durationMs / 1000))}s`, '--latency', ...timeout, '-s', script, url];
}

function parsed(args: string[], out: string, err: string): TlsLoadResult {
  if (!/Requests\/sec/.test(out)) throw new Error(`wrk ${args.join(' ')} failed: ${out}${err}`);
  return parseWrk(out);
}

export function runWrkTls(o: TlsLoadOptions): TlsLoadResult {
  const args = wrkArgs(o);
  const r = spawnSync('wrk', args, { encoding: 'utf8' });
  return parsed(args, r.stdout ?? '', r.stderr ?? '');
}

/** The same without blocking, so that the caller can sample the router while wrk runs. */
export function runWrkTlsAsync(o: TlsLoadOptions): Promise<TlsLoadResult> {
  const args = wrkArgs(o);
  const proc = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout.on('data', (d: Buffer) => (out += d));
  proc.stderr.on('data', (d: Buffer) => (err += d));
  return new Promise((resolve, reject) => {
    proc.once('error', reject);
    proc.once('close', () => {
      try {
        resolve(parsed(args, out, err));
      } catch (e) {
        reject(e);
      }
    });
  });
}
