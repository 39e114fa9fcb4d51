// Which worker of a GatewayCluster on the shared listener keeps a connection it has just accepted
// (where Node has server.listen({ reusePort }), each worker listens on a socket of its own and the
// kernel spreads the connections: none of this is used, see reuse-port.ts). The workers accept from
// one shared listening socket, and the kernel hands a burst of connections to whichever worker is
// waiting in epoll at that moment: 32 connections opened at once were seen split 28 to 3, and a
// worker that is busy (or stopped) for a moment sees every connection of that moment go to the
// others. The connections a mesh gateway carries live long (sidecar to sidecar, kept alive), so
// they stay where they landed: on a machine with cores to spare, one worker's core does most of the
// work while another's idles. (Node 20 has no SO_REUSEPORT listener that would let the kernel spread
// them by hash, and accepting everything in the primary, cluster's SCHED_RR, costs a descriptor
// message per connection: 0.61x HAProxy's new connections a second against 0.82x.) So a worker that
// holds clearly more connections than another passes a fresh one, before reading a byte of it, to
// the least loaded worker through the primary (never to one that has stopped reporting: a stuck
// worker looks least loaded). Only while its connections live long: where they come
// and go by the thousand a second, the race to accept spreads them well enough, and a pass would only
// add its delay to a short connection (passing one in ten cost about 9 % of the new connections a
// second).

/**
 * A worker passes a connection on only when it holds at least this many more than the other... (A
 * looser bound, 8 and a quarter, left wrk's 32 kept-alive connections split 19 to 13: the first
 * worker's core saturated, 70 % of the two workers' CPU time, the other's partly idle, and the pair
 * at 0.78-0.84x HAProxy's requests a second; split 16/16 or 17/15 they measured 0.90x.)
 */
const MIN_EXCESS = 2;
/** ...and an eighth more than the other: the counts are up to a report interval old. */
const EXCESS_FRACTION = 8;
/** Closes counted as recent halve every this many ms... */
const CLOSE_HALF_LIFE_MS = 100;
/** ...and a worker that closed more than this share of what it holds keeps what it accepts. */
const CHURN_SHARE = 0.25;

export class AcceptBalance {
  /** Other workers' open connections (by process ID), as last reported. */
  private loads = new Map<number, number>();
  /** Connections passed to each since that report: not counted there yet. */
  private readonly passed = new Map<number, number>();
  /** Connections closed here lately (decaying), and the total and time when last counted. */
  private recentCloses = 0;
  private closedBefore = 0;
  private countedAt = 0;

  constructor(private readonly self: number) {}

  /** Every worker's open connections, as the primary last broadcast them (this worker's included). */
  reported(loads: readonly (readonly [pid: number, open: number])[]): void {
    this.loads = new Map(loads.filter(([pid]) => pid !== this.self));
    this.passed.clear();
  }

  /** What a worker that passed a connection here held when it did: newer than its last report. */
  heard(pid: number, open: number): void {
    if (pid !== this.self) this.loads.set(pid, open);
  }

  /**
   * The worker to pass a just-accepted connection to when this one holds `open` connections and has
   * closed `closed` in all (at `now`, in ms), or undefined to keep it. A connection passed on is
   * counted against that worker until the next report.
   */
  passTo(open: number, closed: number, now: number): number | undefined {
    this.recentCloses = this.recentCloses * 2 ** (-(now - this.countedAt) / CLOSE_HALF_LIFE_MS) + (closed - this.closedBefore);
    this.closedBefore = closed;
    this.countedAt = now;
    if (this.recentCloses > CHURN_SHARE * open) return undefined;
    let best: number | undefined;
    let least = Infinity;
    for (const [pid, load] of this.loads) {
      const estimate = load + (this.passed.get(pid) ?? 0);
      if (estimate < least) {
        least = estimate;
        best = pid;
      }
    }
    if (best === undefined || open < least + Math.max(MIN_EXCESS, Math.ceil(least / EXCESS_FRACTION))) return undefined;
    this.passed.set(best, (this.passed.get(best) ?? 0) + 1);
    return best;
  }
}
