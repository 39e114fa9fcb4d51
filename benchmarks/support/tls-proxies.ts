// The C side of the gateway benchmark: a TLS 1.3 nginx backend (certificates from src/ca, P-256)
// and the two SNI routers compared with the gateway, HAProxy (tcp mode, req.ssl_sni) and nginx
// (stream, ssl_preread). Each writes its configuration into the run's directory and runs in the
// foreground as a child of the benchmark.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRoot, newKeyPem, signCa, signLeaf } from '../../src/ca/index.js';

export interface Route {
  sni: string;
  port: number;
}

const NGINX_STREAM_MODULES = ['/usr/lib/nginx/modules/ngx_stream_module.so', '/usr/share/nginx/modules/ngx_stream_module.so'];

export function haveHaproxy(): boolean {
  return spawnSync('haproxy', ['-v']).status === 0;
}

export function haveNginx(): boolean {
  return spawnSync('nginx', ['-v']).status === 0;
}

/** A root, an intermediate and a leaf for the backend's names; writes backend.crt (leaf + chain) and backend.key. */
export async function writeBackendCerts(dir: string, trustDomain: string, names: string[]): Promise<void> {
  const root = await createRoot({ trustDomain, commonName: 'bench root', ttlMs: 86_400_000 });
  const interKey = await newKeyPem();
  const inter = await signCa({ signer: root, subjectKeyPem: interKey, commonName: 'bench inter', trustDomain, ttlMs: 86_400_000, pathLength: 0 });
  const leaf = await signLeaf({
    signer: { certPem: inter.certPem, keyPem: interKey },
    spiffeId: `spiffe://${trustDomain}/ns/default/dc/dc1/svc/api`,
    dnsNames: names,
    commonName: 'api',
    ttlMs: 86_400_000,
  });
  writeFileSync(join(dir, 'backend.crt'), `${leaf.certPem.trim()}\n${inter.certPem.trim()}\n`);
  writeFileSync(join(dir, 'backend.key'), leaf.keyPem);
  writeFileSync(join(dir, 'root.pem'), root.certPem);
}

function nginxCommon(dir: string, name: string, workers: number | 'auto', workerConnections: number): string {
  return `daemon off;
master_process on;
worker_processes ${workers};
worker_rlimit_nofile 20000;
pid ${join(dir, `${name}.pid`)};
error_log ${join(dir, `${name}-error.log`)} warn;
${process.getuid?.() === 0 ? 'user root;' : ''}
events { worker_connections ${workerConnections}; }
`;
}

function startNginx(dir: string, name: string, conf: string): ChildProcess {
  const file = join(dir, `${name}.conf`);
  writeFileSync(file, conf);
  const proc = spawn('nginx', ['-p', dir, '-e', join(dir, `${name}-error.log`), '-c', file], { stdio: 'inherit' });
  proc.once('exit', (code, sig) => {
    if (code !== 0 && sig !== 'SIGTERM' && sig !== 'SIGKILL') console.error(`nginx ${name} exited (${code ?? sig}); see ${join(dir, `${name}-error.log`)}`);
  });
  return proc;
}

/**
 * The backend: an HTTPS server answering 64 bytes on /, 1 MiB on /1m and 1 GiB on /1g (a sparse
 * file: the page cache serves its zeros without a disk under them), on two ports with the same
 * certificate: `resumable` issues session tickets, `full` issues none and keeps no session cache, so
 * every new connection to it is a full handshake.
 */
export function startBackend(dir: string, ports: { resumable: number; full: number }): ChildProcess {
  const www = join(dir, 'www');
  mkdirSync(www, { recursive: true });
  writeFileSync(join(www, '1m'), Buffer.alloc(1024 * 1024, 'x'));
  writeFileSync(join(www, '1g'), '');
  truncateSync(join(www, '1g'), 1024 ** 3);
  const tmp = join(dir, 'tmp');
  mkdirSync(tmp, { recursive: true });
  const server = (port: number, tickets: boolean) => `
  server {
    listen 127.0.0.1:${port} ssl backlog=4096;
    ssl_certificate ${join(dir, 'backend.crt')};
    ssl_certificate_key ${join(dir, 'backend.key')};
    ssl_protocols TLSv1.3;
    ssl_session_tickets ${tickets ? 'on' : 'off'};
    ssl_session_cache ${tickets ? 'shared:S:10m' : 'off'};
    location = / { return 200 "${'x'.repeat(64)}"; }
    location = /1m { root ${www}; }
    location = /1g { root ${www}; }
  }`;
  return startNginx(
    dir,
    'backend',
    `${nginxCommon(dir, 'backend', 'auto', 16000)}
http {
  access_log off;
  default_type application/octet-stream;
  keepalive_requests 1000000000;
  keepalive_timeout 3600s;
  client_body_temp_path ${tmp}/body;
  proxy_temp_path ${tmp}/proxy;
  fastcgi_temp_path ${tmp}/fastcgi;
  uwsgi_temp_path ${tmp}/uwsgi;
  scgi_temp_path ${tmp}/scgi;
${server(ports.resumable, true)}
${server(ports.full, false)}
}
`,
  );
}

/** nginx as an SNI router: stream, ssl_preread, a map from the server name to the backend. */
export function startNginxRouter(dir: string, port: number, routes: Route[], name = 'router'): ChildProcess {
  const mod = NGINX_STREAM_MODULES.find((m) => existsSync(m));
  return startNginx(
    dir,
    name,
    `${mod ? `load_module ${mod};\n` : ''}${nginxCommon(dir, name, 'auto', 20000)}
stream {
  map $ssl_preread_server_name $upstream {
${routes.map((r) => `    ${r.sni} 127.0.0.1:${r.port};`).join('\n')}
    default 127.0.0.1:1;
  }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    ssl_preread on;
    preread_timeout 10s;
    proxy_connect_timeout 5s;
    proxy_timeout 1h;
    proxy_pass $upstream;
  }
}
`,
  );
}

/** HAProxy as an SNI router: tcp mode, wait for the ClientHello, route on req.ssl_sni. */
export function startHaproxy(dir: string, port: number, routes: Route[], name = 'haproxy'): ChildProcess {
  const cfg = `global
  maxconn 9990
  log stderr format short local0 err
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
frontend sni
  bind 127.0.0.1:${port}
  tcp-request inspect-delay 10s
  tcp-request content accept if { req.ssl_hello_type 1 }
${routes.map((r, i) => `  use_backend b${i} if { req.ssl_sni -i ${r.sni} }`).join('\n')}
${routes.map((r, i) => `backend b${i}\n  server s 127.0.0.1:${r.port}`).join('\n')}
`;
  const file = join(dir, `${name}.cfg`);
  writeFileSync(file, cfg);
  const proc = spawn('haproxy', ['-db', '-f', file], { stdio: 'inherit' });
  proc.once('exit', (code, sig) => {
    if (code !== 0 && sig !== 'SIGTERM' && sig !== 'SIGKILL') console.error(`haproxy exited (${code ?? sig})`);
  });
  return proc;
}

export interface HaproxyH2PairOptions {
  /** Where the certificates are (web.pem, api.pem, root.pem, as bench-mesh.ts writes them) and the config goes. */
  dir: string;
  /** The h2c listener the load generator speaks to (the client side's). */
  port: number;
  /** The mTLS listener between the two sides (the server side's). */
  inner: number;
  appPort: number;
  /** The server name the client side sends and checks the server side's certificate against. */
  sni: string;
  threads: number;
}

/**
 * HAProxy as the HTTP/2 pair, both sides in one process as the Isthmus pair is: `mode http`, h2c in
 * (`proto h2`), mTLS out with ALPN h2 (TLS 1.3, the peer's chain verified against root.pem), the
 * server side ending mTLS (client certificate required) and forwarding h2c to the app. `http-reuse
 * always` lets streams of different callers share a connection to the next hop, as the sidecars'
 * pooled h2 sessions do; with HAProxy's default (`safe`) the first request of every stream, which in
 * h2 is every request, may open a connection of its own.
 */
export function startHaproxyH2Pair(o: HaproxyH2PairOptions, name = 'haproxy-h2'): ChildProcess {
  const cfg = `global
  maxconn 8000
  nbthread ${o.threads}
  log stderr format short local0 err
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend client_side
  bind 127.0.0.1:${o.port} proto h2
  default_backend to_server_side
backend to_server_side
  http-reuse always
  server s1 127.0.0.1:${o.inner} ssl crt ${join(o.dir, 'web.pem')} ca-file ${join(o.dir, 'root.pem')} verify required ssl-min-ver TLSv1.3 sni str(${o.sni}) alpn h2
frontend server_side
  bind 127.0.0.1:${o.inner} ssl crt ${join(o.dir, 'api.pem')} ca-file ${join(o.dir, 'root.pem')} verify required ssl-min-ver TLSv1.3 alpn h2
  default_backend app
backend app
  http-reuse always
  server app 127.0.0.1:${o.appPort} proto h2
`;
  const file = join(o.dir, `${name}.cfg`);
  writeFileSync(file, cfg);
  const proc = spawn('haproxy', ['-db', '-f', file], { stdio: 'inherit' });
  proc.once('exit', (code, sig) => {
    if (code !== 0 && sig !== 'SIGTERM' && sig !== 'SIGKILL') console.error(`haproxy ${name} exited (${code ?? sig})`);
  });
  return proc;
}
