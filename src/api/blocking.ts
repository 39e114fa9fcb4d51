// Consul blocking queries: `?index=N&wait=5m`. The answer waits until what the read covers changes
// past N (or the wait passes) and carries X-Consul-Index, X-Consul-KnownLeader, X-Consul-LastContact.
import type { Context } from 'hono';
import type { Watchable } from '../core/table-watch.js';
import type { Store } from '../store/index.js';
import { invalid } from '../core/errors.js';
import { parseDuration } from '../core/duration.js';

const DEFAULT_WAIT_MS = 5 * 60_000;
const MAX_WAIT_MS = 10 * 60_000;

export interface BlockingParams {
  index: number;
  waitMs: number;
}

export function parseBlocking(c: Context): BlockingParams | undefined {
  const rawIndex = c.req.query('index');
  if (rawIndex === undefined || rawIndex === '') return undefined;
  if (!/^\d+$/.test(rawIndex)) throw invalid([{ Field: 'index', Message: 'must be a non-negative integer' }]);
  const index = Number(rawIndex);
  const rawWait = c.req.query('wait');
  let waitMs = DEFAULT_WAIT_MS;
  if (rawWait !== undefined && rawWait !== '') waitMs = parseDuration(rawWait, 'wait');
  waitMs = Math.min(waitMs, MAX_WAIT_MS);
  // Consul adds up to wait/16 of jitter so that many watchers do not wake at once.
  waitMs += Math.floor(Math.random() * (waitMs / 16));
  return { index, waitMs };
}

/** Sets the Consul index headers. The index is never 0: clients treat 0 as "reset". */
export function setIndexHeaders(c: Context, store: Store, index: number): void {
  c.header('X-Consul-Index', String(Math.max(1, index)));
  c.header('X-Consul-KnownLeader', store.leader() !== undefined ? 'true' : 'false');
  c.header('X-Consul-LastContact', '0');
}

/**
 * Runs a read as a blocking query over what `watched` covers (a domain's state, or part of it):
 * waits if `?index=` asks to, then sets the index headers from its current index and returns what
 * `read` produces.
 */
export async function blockingRead<T>(c: Context, store: Store, watched: Watchable, read: () => T): Promise<T> {
  const params = parseBlocking(c);
  let index = watched.index();
  if (params && params.index > 0 && index <= params.index) {
    const signal = c.req.raw.signal;
    index = await watched.waitForChange(params.index, params.waitMs, signal);
  }
  const result = read();
  setIndexHeaders(c, store, index);
  return result;
}
