// @ts-check
// The audit trail beside the flows: the last change of the intention that decided a flow (what was
// done, when, by which token and through which DC), from /v1/audit. An event names its intention by
// the ID in Before/After and by its pair, "src => dst" (the Subject).
import { get } from './api.js';
import { h } from './dom.js';
import { ago, dateTime, shortId } from './format.js';
import { dcChip } from './flow-cells.js';
/** @import { AuditEvent } from './shapes.js' */

/**
 * The intention events, oldest first; undefined when they cannot be read (they need operator:read).
 * @returns {Promise<AuditEvent[] | undefined>}
 */
export async function loadIntentionAudit() {
  try {
    return /** @type {AuditEvent[]} */ (await get('/v1/audit?kind=intention'));
  } catch {
    return undefined;
  }
}

/**
 * The latest change of each intention, by ID and by pair. `lastChange(id, subject)` looks the ID up
 * first (a pair deleted and made again is another intention), then the pair when no event names
 * that ID.
 * @param {AuditEvent[] | undefined} events
 */
export function auditIndex(events) {
  /** @type {Map<string, AuditEvent>} */
  const byId = new Map();
  /** @type {Map<string, AuditEvent>} */
  const bySubject = new Map();
  const ordered = [...(events ?? [])].sort((a, b) => (a.Index ?? 0) - (b.Index ?? 0));
  for (const e of ordered) {
    for (const side of [e.Before, e.After]) if (side && typeof side === 'object' && side.ID) byId.set(side.ID, e);
    if (e.Subject) bySubject.set(e.Subject, e);
  }
  return {
    readable: events !== undefined,
    /**
     * @param {string | undefined} id
     * @param {string | undefined} subject
     */
    lastChange(id, subject) {
      return (id && byId.get(id)) || (subject ? bySubject.get(subject) : undefined);
    },
  };
}

/** @typedef {ReturnType<typeof auditIndex>} AuditIndex */

/**
 * The pair a flow's reason names ("denied by intention web => db"), for events without IDs.
 * @param {string | undefined} reason
 */
export function subjectOf(reason) {
  return /by intention (\S+ => \S+?)(,|$)/.exec(reason ?? '')?.[1];
}

/** @param {AuditEvent} e */
export function actorName(e) {
  return e.Actor?.Description || shortId(e.Actor?.AccessorID) || 'anonymous';
}

/** @type {Record<string, string | undefined>} */
const VERBS = { create: 'created', update: 'changed', delete: 'deleted' };

/**
 * What an audit line shows, as a key: redraw when it would read differently.
 * @param {AuditEvent | undefined} e
 */
export function auditKey(e) {
  return e ? `${e.ID}/${ago(e.Time)}` : '';
}

/**
 * One line: "changed 3 min ago by <token> in dc2". With `decidedAt` (a flow's start, epoch ms), a
 * change or deletion made after it is flagged: the intention no longer reads as it did then.
 * @param {AuditEvent | undefined} e
 * @param {number} [decidedAt]
 */
export function auditLine(e, decidedAt) {
  if (!e) return '';
  const later = decidedAt !== undefined && e.Action !== 'create' && Date.parse(e.Time) > decidedAt;
  return h(
    'div',
    {
      class: `audit-line${later ? ' later' : ''}`,
      dataset: { action: e.Action, dc: e.DC ?? '', accessor: e.Actor?.AccessorID ?? '' },
      title: `${e.Action} of ${e.Subject} at ${dateTime(e.Time)}${e.Index ? `, index ${e.Index}` : ''}, by accessor ${e.Actor?.AccessorID ?? '?'} through ${e.DC ?? '?'}`,
    },
    `${VERBS[e.Action] ?? e.Action} ${ago(e.Time)} by `,
    h('span', { class: 'actor' }, actorName(e)),
    e.DC ? [' in ', dcChip(e.DC)] : '',
    later ? h('span', { class: 'after-call' }, ' · after this call') : '',
  );
}
