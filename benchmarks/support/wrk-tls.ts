// wrk over HTTPS with a chosen SNI. wrk takes the server name it sends from the URL's host and
// resolves that host itself; a mesh name (api.default.dc1.internal.<td>) resolves nowhere, so the
// script replaces wrk.resolve to connect to the address given instead, keeping the URL's host as
// the SNI and Host header. No /etc/hosts entry needed.
import { spawnSync } from 'node:child_process';
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
}

/** What wrk reported, with the response bytes per second in MB (10^6). */
export type TlsLoadResult = ReturnType<typeof parseWrk>;

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
  return parseWrk(out);
}
