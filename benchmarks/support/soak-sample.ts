// Resource samples of one process from /proc: resident memory (VmRSS), open file descriptors
// (entries of /proc/<pid>/fd), CPU time, and what kinds of descriptors it holds.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

export interface ProcSample {
  /** Seconds since the load started. */
  t: number;
  rssKB: number;
  fds: number;
  /** utime + stime, in clock ticks (1/100 s). */
  cpuTicks: number;
}

/** Resident memory of one process in KB (VmRSS); throws when it is gone. */
export function rssKB(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
}

export function sampleProc(pid: number, t: number): ProcSample | undefined {
  try {
    const rss = rssKB(pid);
    const fds = readdirSync(`/proc/${pid}/fd`).length;
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { t: +t.toFixed(1), rssKB: rss, fds, cpuTicks: Number(f[11]) + Number(f[12]) };
  } catch {
    return undefined; // Gone.
  }
}

/** Open descriptors by kind: socket, pipe, anon_inode:[eventfd], file, ... */
export function fdKinds(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const kind = target.startsWith('socket:')
        ? 'socket'
        : target.startsWith('pipe:')
          ? 'pipe'
          : target.startsWith('anon_inode:')
            ? target
            : target.startsWith('/dev/')
              ? target
              : 'file';
      out[kind] = (out[kind] ?? 0) + 1;
    }
  } catch {
    // Gone.
  }
  return out;
}

/** Least-squares slope of y over t (per second). */
export function slope(points: { t: number; y: number }[]): number {
  const n = points.length;
  if (n < 2) return 0;
  const mt = points.reduce((a, p) => a + p.t, 0) / n;
  const my = points.reduce((a, p) => a + p.y, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.t - mt) * (p.y - my);
    den += (p.t - mt) ** 2;
  }
  return den === 0 ? 0 : num / den;
}
