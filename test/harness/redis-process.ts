// A redis-server of the test's own (never the shared one on 6379): on a free port, data in a temp
// dir, appended to an AOF so that acknowledged writes outlive a kill -9, restartable on the same port.
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import net from 'node:net';
import { tempDir } from './server-process.js';
import { until } from './until.js';

export const REDIS_SERVER = '/usr/bin/redis-server';

export interface RedisProc {
  url: string;
  host: string;
  port: number;
  pid(): number;
  /** SIGKILL, no chance to flush or say goodbye; resolves once the process is gone. */
  kill9(): Promise<void>;
  /** Starts it again on the same port and dir (after kill9); resolves once it accepts connections. */
  restart(): Promise<void>;
  /** SIGSTOP: connections stay open and nothing answers, as with a hung server. */
  freeze(): void;
  /** SIGCONT: it carries on with whatever was sent meanwhile. */
  thaw(): void;
  stop(): Promise<void>;
}

function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => {
      s.write('PING\r\n');
    });
    s.once('data', (d) => {
      s.destroy();
      // A server still loading its AOF answers -LOADING.
      resolve(d.toString().startsWith('+PONG'));
    });
    s.once('error', () => resolve(false));
  });
}

export async function startRedis(host: string, port: number): Promise<RedisProc> {
  const dir = tempDir('isthmus-redis-');
  let child: ChildProcess | undefined;
  let out = '';
  const launch = async () => {
    // always: with everysec, Redis postpones its AOF write() by up to 2 s while an fsync is slow (a busy
    // disk, as under a full test run) and still answers meanwhile, so a kill -9 then loses writes it
    // acknowledged. Isthmus promises only what the store it is given keeps.
    const c = spawn(
      REDIS_SERVER,
      [
        '--bind',
        host,
        '--port',
        String(port),
        '--dir',
        dir,
        '--save',
        '',
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--protected-mode',
        'no',
        '--loglevel',
        'warning',
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    c.stdout!.on('data', (d) => (out += d));
    c.stderr!.on('data', (d) => (out += d));
    child = c;
    const exited = new Promise<never>((_, reject) => c.once('exit', (code) => reject(new Error(`redis-server exited with ${code}:\n${out}`))));
    exited.catch(() => undefined);
    await Promise.race([until(`redis-server on ${host}:${port}`, () => accepts(host, port), 10_000, 50), exited]);
  };
  const kill9 = async () => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGKILL');
    await gone;
  };
  await launch();
  return {
    url: `redis://${host}:${port}`,
    host,
    port,
    pid: () => child?.pid ?? 0,
    kill9,
    restart: launch,
    freeze: () => child?.kill('SIGSTOP'),
    thaw: () => child?.kill('SIGCONT'),
    stop: async () => {
      await kill9();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
