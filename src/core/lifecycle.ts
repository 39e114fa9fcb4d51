// Every server is a Component: started with an abort signal, stopped in reverse order by its owner.
// A component marked leaderOnly runs behind a LeaderGate: with several servers of one DC on one
// Redis, only while this replica leads (exactly one of them dials the other DCs, and so on).

export interface Component {
  readonly name: string;
  start(signal: AbortSignal): Promise<void>;
  stop(): Promise<void>;
  /** With several servers on one Redis, only the leader runs this component. */
  readonly leaderOnly?: boolean;
}

/**
 * Starts components in order; stops the started ones in reverse order, also when a start fails.
 * With a leadership, the leaderOnly components of each start() go behind one LeaderGate, started
 * after the others of that call.
 */
export class ComponentGroup {
  private readonly started: Component[] = [];
  private readonly controller = new AbortController();

  private leadership: Leadership | undefined;
  private log: LeaderGateLog | undefined;

  /** From now on, leaderOnly components run only while `leadership` says this replica leads. */
  leadBy(leadership: Leadership, log?: LeaderGateLog): void {
    this.leadership = leadership;
    this.log = log;
  }

  async start(components: Component[]): Promise<void> {
    const leaderOnly = this.leadership ? components.filter((c) => c.leaderOnly) : [];
    const now = components.filter((c) => !leaderOnly.includes(c));
    if (leaderOnly.length) now.push(new LeaderGate(this.leadership!, leaderOnly, this.log));
    for (const c of now) {
      try {
        await c.start(this.controller.signal);
      } catch (err) {
        await this.stop();
        throw err;
      }
      this.started.push(c);
    }
  }

  async stop(): Promise<void> {
    this.controller.abort();
    while (this.started.length > 0) {
      const c = this.started.pop()!;
      try {
        await c.stop();
      } catch {
        // Keep stopping the rest; a failing stop must not leave ports bound.
      }
    }
  }
}

/** Who leads among the replicas of one DC (the Store answers it). */
export interface Leadership {
  isLeader(): boolean;
  onLeaderChange(listener: (leader: boolean) => void): () => void;
}

export interface LeaderGateLog {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

export class LeaderGate implements Component {
  readonly name = 'leader-gate';
  private running: Component[] = [];
  private unsubscribe: (() => void) | undefined;
  /** Starts and stops run one at a time, in the order leadership changed. */
  private queue: Promise<void> = Promise.resolve();
  private controller = new AbortController();
  private stopped = false;

  constructor(
    private readonly leadership: Leadership,
    private readonly components: Component[],
    private readonly log?: LeaderGateLog,
  ) {}

  /** True while this replica's leader-only components run. */
  get active(): boolean {
    return this.running.length > 0;
  }

  async start(): Promise<void> {
    this.stopped = false;
    this.unsubscribe = this.leadership.onLeaderChange((leader) => this.enqueue(leader));
    // The first decision is taken now, not at the next change: a lone replica leads from the start.
    this.enqueue(this.leadership.isLeader());
    await this.queue;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    this.enqueue(false);
    await this.queue;
  }

  private enqueue(leader: boolean): void {
    this.queue = this.queue.then(() => (leader && !this.stopped ? this.lead() : this.follow()));
  }

  private async lead(): Promise<void> {
    if (this.running.length || !this.leadership.isLeader()) return;
    this.controller = new AbortController();
    for (const c of this.components) {
      try {
        await c.start(this.controller.signal);
        this.running.push(c);
      } catch (err) {
        this.log?.warn('a leader-only component failed to start', { component: c.name, error: err });
      }
    }
    this.log?.info('leading this datacenter', { components: this.running.map((c) => c.name) });
  }

  private async follow(): Promise<void> {
    if (!this.running.length) return;
    this.controller.abort();
    const names = this.running.map((c) => c.name);
    while (this.running.length) {
      const c = this.running.pop()!;
      try {
        await c.stop();
      } catch (err) {
        this.log?.warn('a leader-only component failed to stop', { component: c.name, error: err });
      }
    }
    if (!this.stopped) this.log?.warn('no longer the leader of this datacenter; leader-only work stopped', { components: names });
  }
}
