// @ts-check
// How times, durations and identifiers are shown across the page.

/** @param {number | null | undefined} ms */
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '–';
  if (ms === 0) return '0 ms';
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  return `${Math.floor(ms / 60_000)} m ${Math.round((ms % 60_000) / 1000)} s`;
}

/**
 * Local wall-clock time with milliseconds: hops of one connection are milliseconds apart.
 * @param {number} epochMs
 */
export function clock(epochMs) {
  const d = new Date(epochMs);
  const pad = (/** @type {number} */ n, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** @param {string} iso */
export function dateTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso ?? '';
  return `${d.toLocaleDateString()} ${clock(d.getTime())}`;
}

/**
 * The head of a long ID, enough to tell IDs apart on screen (the full one is in the title).
 * @param {string | undefined} id
 */
export function shortId(id, n = 8) {
  if (!id) return '';
  return id.length > n + 1 ? `${id.slice(0, n)}…` : id;
}

/** @param {{ service?: string } | undefined} identity */
export function service(identity) {
  return identity?.service || '(unknown)';
}

/**
 * How long ago a time was (epoch ms or RFC 3339), in the words a person would use.
 * @param {number | string} time
 */
export function ago(time, now = Date.now()) {
  const t = typeof time === 'number' ? time : Date.parse(time);
  if (Number.isNaN(t)) return '';
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 10) return 'just now';
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours} h ago`;
  return `${Math.floor(hours / 24)} d ago`;
}
