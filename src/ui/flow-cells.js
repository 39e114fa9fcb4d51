// @ts-check
// How the parts of a flow record are shown wherever records appear: identities, DCs (one colour
// each), the deciding intention, and the DCs that did not answer a federated query.
import { h } from './dom.js';
import { service, shortId } from './format.js';
/** @import { Federated, FlowIdentity, FlowRecord } from './shapes.js' */

const DC_COLOURS = 6;

/** @param {FlowIdentity | undefined} id */
export function identity(id) {
  if (!id?.service) return h('span', { class: 'muted' }, '(unknown)');
  return [service(id), id.dc ? h('span', { class: 'sub' }, ` ${id.dc}`) : ''];
}

/** @param {FlowRecord} r */
export function intention(r) {
  if (!r.intentionId) return h('span', { class: 'muted' }, '–');
  if (r.intentionId === 'default') return h('span', { title: 'no intention matched: the default policy decided' }, 'default');
  return h(
    'span',
    { title: `intention ${r.intentionId}, written in ${r.intentionDc || '?'}, decided at index ${r.intentionIndex}` },
    h('a', { href: `#/intentions?id=${encodeURIComponent(r.intentionId)}`, class: 'mono' }, shortId(r.intentionId)),
    r.intentionDc ? h('span', { class: 'sub' }, ` @${r.intentionDc}`) : '',
  );
}

/** @param {Federated} flows */
export function missingNote(flows) {
  const missing = flows.Missing ?? [];
  if (missing.length === 0) return '';
  return h(
    'p',
    { class: 'warn' },
    missing.map((dc) => `Datacenter ${dc} did not answer (${flows.Errors?.[dc] ?? 'no reason given'}); its flows are not shown.`).join(' '),
  );
}

/** @param {string} dc */
export function dcChip(dc) {
  return h('span', { class: `chip dc dc-${dcColour(dc)}`, dataset: { dc } }, dc);
}

/**
 * A stable colour per DC name, the same on every trace.
 * @param {string} dc
 */
export function dcColour(dc) {
  let n = 0;
  for (const ch of dc) n = (n * 31 + ch.charCodeAt(0)) >>> 0;
  return n % DC_COLOURS;
}
