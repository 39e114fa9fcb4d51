// @ts-check
// Keeps the page current. It polls every 2 s; when the server offers /v1/flows/stream (server-sent
// events) it refreshes as soon as records arrive instead, and polls only now and then for what the
// stream may not carry (other DCs' records, federation state).
import { authHeaders } from './api.js';

const POLL_MS = 2000;
const POLL_WITH_STREAM_MS = 10_000;
const STREAM_RETRY_MS = 5000;
// Records come in bursts (one per hop): one refresh for a burst.
const BURST_MS = 250;

/** @typedef {'stream' | 'poll'} Mode */

export class Live {
  /**
   * `onTick()` refreshes the page (it may return a promise); `onMode(mode)` gets 'stream' or 'poll'.
   * @param {() => unknown} onTick
   * @param {(mode: Mode) => void} onMode
   */
  constructor(onTick, onMode) {
    this.onTick = onTick;
    this.onMode = onMode;
    /** @type {Mode} */
    this.mode = 'poll';
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.timer = undefined;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.burst = undefined;
    /** @type {AbortController | undefined} */
    this.abort = undefined;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.retry = undefined;
  }

  start() {
    this.schedule();
    this.connect();
  }

  /** Reconnects the stream (after the token changed, say) and refreshes now. */
  restart() {
    this.abort?.abort();
    clearTimeout(this.retry);
    this.connect();
    this.tick();
  }

  tick() {
    if (!document.hidden) this.onTick();
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(
      () => {
        this.tick();
        this.schedule();
      },
      this.mode === 'stream' ? POLL_WITH_STREAM_MS : POLL_MS,
    );
  }

  /** @param {Mode} mode */
  setMode(mode) {
    if (mode === this.mode) return;
    this.mode = mode;
    this.onMode(mode);
    this.schedule();
  }

  async connect() {
    const abort = new AbortController();
    this.abort = abort;
    // A restart() meanwhile replaces this attempt: it then leaves the mode to the new one.
    const current = () => this.abort === abort;
    let res;
    try {
      res = await fetch('/v1/flows/stream?dc=all', { headers: { ...authHeaders(), Accept: 'text/event-stream' }, signal: abort.signal });
    } catch {
      if (current()) this.setMode('poll');
      return;
    }
    // No stream on this server (or not for this token): polling it is, until the token changes.
    if (res.status !== 200 || !(res.headers.get('content-type') ?? '').startsWith('text/event-stream') || !res.body || !current()) {
      abort.abort();
      if (current()) this.setMode('poll');
      return;
    }
    this.setMode('stream');
    try {
      await readEvents(res.body, () => this.onRecords());
    } catch {
      // aborted or dropped: either way, polling until it is back
    }
    if (!current()) return;
    this.setMode('poll');
    this.retry = setTimeout(() => this.connect(), STREAM_RETRY_MS);
  }

  onRecords() {
    if (this.burst) return;
    this.burst = setTimeout(() => {
      this.burst = undefined;
      this.tick();
    }, BURST_MS);
  }
}

/**
 * Calls `onEvent` for each event with data in a text/event-stream body, until it ends.
 * @param {ReadableStream<Uint8Array<ArrayBuffer>>} body
 * @param {() => void} onEvent
 */
async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const events = buffer.split(/\r?\n\r?\n/);
    buffer = events.pop() ?? '';
    // Comment lines (": keep-alive") carry no data and need no refresh.
    for (const e of events) if (e.split(/\r?\n/).some((line) => line.startsWith('data:'))) onEvent();
  }
}
