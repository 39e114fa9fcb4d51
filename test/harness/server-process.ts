// Starts `isthmus dev|server` as a real child process from the built CLI and learns its HTTP address
// from the banner; kills it (gently or with SIGKILL) and runs client commands.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = join(ROOT, 'bin', 'isthmus.js');

export interface ServerProcess {
  child: ChildProcess;
  /** host:port of the HTTP API. */
  addr: string;
  url: string;
  output(): string;
  stop(): Promise<number | null>;
  kill9(): Promise<void>;
}

export function tempDir(prefix = 'isthmus-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export async function startServer(mode: 'dev' | 'server', args: string[], env: NodeJS.ProcessEnv = {}): Promise<ServerProcess> {
  // Any free port for federation unless the test names one: its default (the gRPC port + 1) may be taken here.
  const tls = args.includes('--grpc-tls-addr') ? [] : ['--grpc-tls-addr', '127.0.0.1:0'];
  const child = spawn(process.execPath, [BIN, mode, '--http-addr', '127.0.0.1:0', '--grpc-addr', '127.0.0.1:0', ...tls, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const addr = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start in 20 s:\n${out}`)), 20_000);
    const onData = () => {
      const m = /HTTP API: http:\/\/(\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before starting:\n${out}`));
    });
  });
  const exited = new Promise<number | null>((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });
  return {
    child,
    addr,
    url: `http://${addr}`,
    output: () => out,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
    kill9: async () => {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      env: { ...process.env, ISTHMUS_HTTP_TOKEN: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

export async function api(base: string, method: string, path: string, body?: unknown, token?: string) {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers['X-Consul-Token'] = token;
  const res = await fetch(base + path, { method, headers, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = text;
  }
  return { status: res.status, headers: res.headers, body: json as any };
}

/**
 * A port free right now on `host` (bound and released). It is drawn from below Linux's ephemeral
 * range (32768 and up), where the source ports of outgoing connections would otherwise take it
 * between this check and the bind of whatever the test starts on it; no port is handed out twice.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const net = await import('node:net');
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 24_000 + Math.floor(Math.random() * 8_000);
    if (handedOut.has(port)) continue;
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, host, () => s.close(() => resolve(true)));
    });
    if (ok) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`no free port found on ${host}`);
}
const handedOut = new Set<number>();

/** Starts a long-running CLI command and resolves once its output matches `ready`. */
export async function startCli(
  args: string[],
  ready: RegExp,
  env: NodeJS.ProcessEnv = {},
): Promise<{ child: ChildProcess; output(): string; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not ready in 20 s:\n${out}`)), 20_000);
    const check = () => {
      if (ready.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', check);
    child.stderr!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code}:\n${out}`));
    });
  });
  const exited = new Promise<void>((r) => (child.exitCode !== null ? r() : child.once('exit', () => r())));
  return {
    child,
    output: () => out,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
