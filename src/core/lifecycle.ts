// Every server is a Component: started with an abort signal, stopped in reverse order by its owner.

export interface Component {
  readonly name: string;
  start(signal: AbortSignal): Promise<void>;
  stop(): Promise<void>;
  /** With several servers on one Redis, only the leader runs this component. */
  readonly leaderOnly?: boolean;
}

/** Starts components in order; stops the started ones in reverse order, also when a start fails. */
export class ComponentGroup {
  private readonly started: Component[] = [];
  private readonly controller = new AbortController();

  async start(components: Component[]): Promise<void> {
    for (const c of components) {
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
