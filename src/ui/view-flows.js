// @ts-check
// The flow table: /v1/flows with the filters of `isthmus flows` (dc, from, to, service, verdict,
// trace, since, limit, and hop), kept in the address so a filtered view can be shared. Under the
// intention that decided a flow: its last change from the audit trail (who, when, which DC).
import { get, query } from './api.js';
import { auditIndex, auditKey, auditLine, loadIntentionAudit, subjectOf } from './audit.js';
import { changed, fill, h } from './dom.js';
import { clock, duration, shortId } from './format.js';
import { HOPS, VERDICTS } from './flow-model.js';
import { dcChip, identity, intention, missingNote } from './flow-cells.js';
/** @import { AuditEvent, Context, FlowRecord, FlowsAnswer, Route, View } from './shapes.js' */
/** @import { AuditIndex } from './audit.js' */

const FILTERS = ['dc', 'from', 'to', 'service', 'verdict', 'hop', 'trace', 'since', 'limit'];
/** @type {Record<string, string | undefined>} */
const DEFAULTS = { dc: 'all', limit: '200' };

/**
 * @param {Context} ctx
 * @returns {View}
 */
export function createFlowsView(ctx) {
  const dcSelect = h('select', { name: 'dc' }, h('option', { value: 'all' }, 'all'));
  const text = (/** @type {string} */ name, /** @type {string} */ placeholder, extra = {}) => h('input', { name, placeholder, autocomplete: 'off', ...extra });
  /** @type {Record<string, HTMLInputElement | HTMLSelectElement>} */
  const inputs = {
    dc: dcSelect,
    from: text('from', 'service', { list: 'flow-services' }),
    to: text('to', 'service', { list: 'flow-services' }),
    service: text('service', 'either side', { list: 'flow-services' }),
    verdict: h(
      'select',
      { name: 'verdict' },
      h('option', { value: '' }, 'any'),
      VERDICTS.map((v) => h('option', { value: v }, v)),
    ),
    hop: h(
      'select',
      { name: 'hop' },
      h('option', { value: '' }, 'any'),
      HOPS.map((v) => h('option', { value: v }, v)),
    ),
    trace: text('trace', '32 hex characters', { size: 34, pattern: '[0-9a-f]{32}' }),
    since: text('since', 'e.g. 5m', { size: 8 }),
    limit: h('input', { name: 'limit', type: 'number', min: 1, max: 10000, value: DEFAULTS.limit }),
  };
  const services = h('datalist', { id: 'flow-services' });
  const form = h(
    'form',
    { class: 'filters', id: 'flow-filters', onsubmit: (/** @type {SubmitEvent} */ ev) => (ev.preventDefault(), ctx.navigate(`#/flows${query(current())}`)) },
    FILTERS.map((f) => h('label', {}, h('span', {}, f), inputs[f])),
    h(
      'div',
      { class: 'buttons' },
      h('button', { type: 'submit', class: 'primary' }, 'Apply'),
      h('button', { type: 'button', onclick: () => ctx.navigate('#/flows') }, 'Clear'),
    ),
    services,
  );
  const summary = h('div', { class: 'notes' });
  const body = h('tbody');
  const table = h(
    'table',
    { class: 'flows', id: 'flow-table' },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ['Time', 'DC', 'Hop', 'Source', 'Destination', 'Verdict', 'Reason', 'Intention', 'Duration', 'Trace'].map((c) => h('th', {}, c)),
      ),
    ),
    body,
  );
  const el = h(
    'section',
    { class: 'view', 'aria-labelledby': 'flows-title' },
    h('div', { class: 'view-head' }, h('h1', { id: 'flows-title' }, 'Flows')),
    form,
    summary,
    h('div', { class: 'table-wrap' }, table),
  );

  // What the address asked for: polling keeps to it while the form is being edited.
  /** @type {Record<string, string>} */
  let applied = {};

  /** The filters as set in the form, defaults left out. */
  function current() {
    /** @type {Record<string, string>} */
    const out = {};
    for (const f of FILTERS) {
      const v = inputs[f].value.trim();
      if (v && v !== DEFAULTS[f]) out[f] = v;
    }
    return out;
  }

  /** @param {Route} route */
  function show(route) {
    applied = {};
    for (const f of FILTERS) {
      const asked = route.params.get(f);
      if (asked) applied[f] = asked;
      const v = route.params.get(f) ?? DEFAULTS[f] ?? '';
      if (f === 'dc' && ![...dcSelect.options].some((o) => o.value === v)) dcSelect.append(h('option', { value: v }, v));
      inputs[f].value = v;
    }
  }

  async function refresh() {
    const filters = { ...DEFAULTS, ...applied };
    const [datacenters, flows, events] = /** @type {[string[], FlowsAnswer, AuditEvent[] | undefined]} */ (
      await Promise.all([get('/v1/catalog/datacenters'), get(`/v1/flows${query(filters)}`), loadIntentionAudit()])
    );
    const audit = auditIndex(events);
    syncDcOptions(datacenters);
    const names = new Set();
    for (const r of flows.Records) for (const id of [r.source, r.destination]) if (id?.service) names.add(id.service);
    fill(
      services,
      [...names].sort().map((n) => h('option', { value: n })),
    );
    const changes = flows.Records.map((r) => lastChange(audit, r));
    if (changed(body, JSON.stringify([flows.Records, changes.map(auditKey)]))) {
      fill(
        body,
        flows.Records.length
          ? flows.Records.map((r, i) => row(r, changes[i]))
          : h('tr', {}, h('td', { colspan: 10, class: 'empty' }, 'No flow records match.')),
      );
    }
    const shown = Object.entries(applied)
      .filter(([k]) => k !== 'limit')
      .map(([k, v]) => `${k}=${v}`);
    fill(
      summary,
      h(
        'p',
        { id: 'flow-count' },
        `${flows.Records.length} record${flows.Records.length === 1 ? '' : 's'} from ${(flows.Datacenters ?? [flows.DC]).join(', ')}`,
        shown.length ? ` where ${shown.join(', ')}` : '',
        '.',
      ),
      missingNote(flows),
    );
  }

  /** @param {string[]} datacenters */
  function syncDcOptions(datacenters) {
    const want = ['all', ...datacenters];
    const have = [...dcSelect.options].map((o) => o.value);
    const selected = dcSelect.value;
    if (want.join() === have.join()) return;
    fill(
      dcSelect,
      [...new Set([...want, selected])].map((v) => h('option', { value: v }, v)),
    );
    dcSelect.value = selected;
  }

  return { el, show, refresh };
}

/**
 * The last change of the intention that decided a record, if the record names one.
 * @param {AuditIndex} audit
 * @param {FlowRecord} r
 */
function lastChange(audit, r) {
  if (!r.intentionId || r.intentionId === 'default') return undefined;
  return audit.lastChange(r.intentionId, subjectOf(r.reason));
}

/**
 * @param {FlowRecord} r
 * @param {AuditEvent | undefined} change
 */
function row(r, change) {
  const request = r.http ? h('div', { class: 'sub' }, `${r.http.method} ${r.http.path} → ${r.http.status}`) : '';
  return h(
    'tr',
    { dataset: { verdict: r.verdict, hop: r.hop, trace: r.traceId, id: r.id } },
    h('td', { class: 'mono', title: new Date(r.startTime).toISOString() }, clock(r.startTime)),
    h('td', {}, dcChip(r.dc)),
    h('td', {}, r.hop, r.requestIndex ? h('span', { class: 'sub' }, ` #${r.requestIndex}`) : '', h('div', { class: 'sub' }, r.reporter)),
    h('td', {}, identity(r.source)),
    h('td', {}, identity(r.destination), request),
    h('td', {}, h('span', { class: `badge ${r.verdict}` }, r.verdict)),
    h('td', { class: 'reason' }, r.reason),
    h('td', { class: 'intention' }, intention(r), auditLine(change, r.startTime)),
    h('td', { class: 'num' }, duration(r.durationMs)),
    h('td', { class: 'mono' }, r.traceId && !/^0+$/.test(r.traceId) ? h('a', { href: `#/trace/${r.traceId}`, title: r.traceId }, shortId(r.traceId, 12)) : '–'),
  );
}
