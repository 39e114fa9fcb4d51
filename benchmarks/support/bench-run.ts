// What a benchmark's main process shares: its options on the command line, the list of the helper
// processes it starts (killed when it exits), and a process's CPU time from /proc.
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** The value of option `--name` (`--name value` or `--name=value`) on the command line, or `dflt`. */
export function arg(name: string, dflt: string): string {
  const i = process.argv.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (i < 0) return dflt;
  return process.argv[i].includes('=') ? process.argv[i].split('=')[1] : process.argv[i + 1];
}

/** A list for the benchmark's helper processes; each in it is killed (SIGKILL) when the benchmark exits. */
export function childProcesses(): ChildProcess[] {
  const children: ChildProcess[] = [];
  process.on('exit', () => children.forEach((c) => c.kill('SIGKILL')));
  return children;
}

/** CPU time (user + system, all threads) a process has used so far, in microseconds (clock ticks of 10 ms). */
export function cpuMicros(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}
