// Exponential backoff with full jitter, for reconnect loops.

export interface BackoffOptions {
  initialMs?: number;
  maxMs?: number;
  factor?: number;
}

export class Backoff {
  private attempt = 0;
  constructor(private readonly opts: BackoffOptions = {}) {}

  next(): number {
    const initial = this.opts.initialMs ?? 100;
    const max = this.opts.maxMs ?? 10_000;
    const factor = this.opts.factor ?? 2;
    const ceiling = Math.min(max, initial * factor ** this.attempt);
    this.attempt++;
    return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
  }

  reset(): void {
    this.attempt = 0;
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
