// A benchmark's helper process that announces itself with one JSON line on stdout (its ports, pid).
import { spawn, type ChildProcess } from 'node:child_process';

/** Starts `cmd args` (with `env` added to this process's), adds it to `children`, and resolves with the first JSON line it prints. */
export function jsonChild(
  children: ChildProcess[],
  cmd: string,
  args: string[],
  env?: Record<string, string>,
): Promise<{ proc: ChildProcess; info: Record<string, number> }> {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], env: env ? { ...process.env, ...env } : process.env });
  children.push(proc);
  return new Promise((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d) => {
      out += d;
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) resolve({ proc, info: JSON.parse(line) });
    });
    proc.once('exit', (c) => reject(new Error(`${cmd} ${args.join(' ')} exited ${c}`)));
  });
}
