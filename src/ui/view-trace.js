// @ts-check
// A trace: the records of one traceId from every DC, each hop a bar on one time axis, with its DC,
// verdict, reason and the intention that decided (and the DC it was written in), with that
// intention's last change from the audit trail.
import { get, query } from './api.js';
import { auditIndex, auditKey, auditLine, loadIntentionAudit, subjectOf } from './audit.js';
import { changed, fill, h } from './dom.js';
import { clock, duration, service, shortId } from './format.js';
import { orderTrace, traces } from './flow-model.js';
import { dcChip, dcColour, missingNote } from './flow-cells.js';
/** @import { AuditEvent, Context, FlowRecord, FlowsAnswer, Intention, Route, View } from './shapes.js' */

const TRACE_RE = /^[0-9a-f]{32}$/;

/**
 * @param {Context} ctx
 * @returns {View}
 */
export function createTraceView(ctx) {
  let traceId = '';
  const input = h('input', { name: 'trace', placeholder: 'trace ID (32 hex characters)', size: 36, autocomplete: 'off', pattern: '[0-9a-f]{32}' });
  const form = h(
    'form',
    { class: 'filters', onsubmit: (/** @type {SubmitEvent} */ ev) => (ev.preventDefault(), ctx.navigate(`#/trace/${input.value.trim().toLowerCase()}`)) },
    h('label', {}, h('span', {}, 'trace'), input),
    h(
      'div',
      { class: 'buttons' },
      h('button', { type: 'submit', class: 'primary' }, 'Show'),
      h('button', { type: 'button', onclick: () => ctx.navigate('#/trace') }, 'Recent traces'),
    ),
  );
  const content = h('div', { id: 'trace' });
  const el = h(
    'section',
    { class: 'view', 'aria-labelledby': 'trace-title' },
    h('div', { class: 'view-head' }, h('h1', { id: 'trace-title' }, 'Trace')),
    form,
    content,
  );

  /** @param {Route} route */
  function show(route) {
    traceId = route.arg.toLowerCase();
    input.value = traceId;
  }

  async function refresh() {
    if (!traceId) return recent();
    if (!TRACE_RE.test(traceId)) {
      if (changed(content, `bad ${traceId}`))
        fill(
          content,
          h('p', { class: 'warn' }, `"${traceId}" is not a trace ID: it is 32 hex characters, the head of the connection's TLS ClientHello random.`),
        );
      return;
    }
    const [flows, intentions, events] = /** @type {[FlowsAnswer, Intention[], AuditEvent[] | undefined]} */ (
      await Promise.all([
        get(`/v1/flows${query({ dc: 'all', trace: traceId, limit: 1000 })}`),
        get('/v1/connect/intentions').catch(() => []),
        loadIntentionAudit(),
      ])
    );
    const byId = new Map(intentions.map((i) => [i.ID, i]));
    const audit = auditIndex(events);
    /** @type {Map<string, AuditEvent | undefined>} */
    const changes = new Map();
    for (const r of flows.Records) {
      if (!r.intentionId || r.intentionId === 'default' || changes.has(r.intentionId)) continue;
      const i = byId.get(r.intentionId);
      changes.set(r.intentionId, audit.lastChange(r.intentionId, i ? `${i.SourceName} => ${i.DestinationName}` : subjectOf(r.reason)));
    }
    if (flows.Records.length === 0) {
      if (changed(content, JSON.stringify(flows)))
        fill(content, h('p', { class: 'empty' }, `No records of trace ${traceId} in ${(flows.Datacenters ?? [flows.DC]).join(', ')}.`), missingNote(flows));
      return;
    }
    if (changed(content, JSON.stringify([flows, intentions, [...changes.values()].map(auditKey)])))
      fill(content, timeline(orderTrace(flows.Records), byId, changes), missingNote(flows));
  }

  async function recent() {
    const flows = /** @type {FlowsAnswer} */ (await get(`/v1/flows${query({ dc: 'all', limit: 1000 })}`));
    const list = traces(flows.Records).slice(0, 50);
    if (!changed(content, JSON.stringify([list, flows.Missing]))) return;
    fill(
      content,
      h('h2', {}, 'Recent traces'),
      list.length === 0
        ? h('p', { class: 'empty' }, 'No traces yet.')
        : h(
            'table',
            { class: 'flows', id: 'trace-list' },
            h(
              'thead',
              {},
              h(
                'tr',
                {},
                ['Started', 'Trace', 'Source', 'Destination', 'Hops', 'DCs', 'Verdict'].map((c) => h('th', {}, c)),
              ),
            ),
            h(
              'tbody',
              {},
              list.map((t) =>
                h(
                  'tr',
                  { dataset: { trace: t.traceId } },
                  h('td', { class: 'mono' }, clock(t.startTime)),
                  h('td', { class: 'mono' }, h('a', { href: `#/trace/${t.traceId}`, title: t.traceId }, shortId(t.traceId, 16))),
                  h('td', {}, service(t.source)),
                  h('td', {}, service(t.destination)),
                  h('td', { class: 'num' }, String(t.hops)),
                  h(
                    'td',
                    {},
                    t.datacenters.map((dc) => dcChip(dc)),
                  ),
                  h('td', {}, h('span', { class: `badge ${t.verdict}` }, t.verdict)),
                ),
              ),
            ),
          ),
      missingNote(flows),
    );
  }

  return { el, show, refresh };
}

/**
 * @param {FlowRecord[]} rows
 * @param {Map<string, Intention>} intentions
 * @param {Map<string, AuditEvent | undefined>} changes
 */
function timeline(rows, intentions, changes) {
  const t0 = Math.min(...rows.map((r) => r.startTime));
  const t1 = Math.max(...rows.map((r) => r.startTime + r.durationMs));
  const span = Math.max(1, t1 - t0);
  const pct = (/** @type {number} */ ms) => `${((ms / span) * 100).toFixed(3)}%`;
  const first = rows.find((r) => r.source?.service && r.destination?.service) ?? rows[0];
  const dcs = [...new Set(rows.map((r) => r.dc))];

  const axis = h('div', { class: 'tl-track tl-ticks' });
  for (const t of ticks(span)) {
    const tick = h('span', { class: 'tl-tick' }, `+${duration(t)}`);
    tick.style.left = pct(t);
    axis.append(tick);
  }

  const out = [];
  let prevDc;
  for (const r of rows) {
    if (prevDc && r.dc !== prevDc) out.push(h('div', { class: 'tl-crossing' }, h('span', {}, `${prevDc} → ${r.dc}`)));
    prevDc = r.dc;
    const bar = h(
      'div',
      { class: `tl-bar ${r.verdict}`, title: `${r.hop} in ${r.dc}: ${duration(r.durationMs)} from +${duration(r.startTime - t0)}` },
      h('span', {}, duration(r.durationMs)),
    );
    bar.style.left = pct(r.startTime - t0);
    bar.style.width = `max(3px, ${pct(r.durationMs)})`;
    out.push(
      h(
        'div',
        { class: `tl-row dc-edge-${dcColour(r.dc)}`, dataset: { hop: r.hop, dc: r.dc, verdict: r.verdict, requestIndex: r.requestIndex } },
        h(
          'div',
          { class: 'tl-label' },
          h('strong', {}, r.hop),
          r.requestIndex ? ` #${r.requestIndex}` : '',
          ' ',
          dcChip(r.dc),
          h('div', { class: 'sub' }, r.reporter),
        ),
        h('div', { class: 'tl-track' }, bar),
        h(
          'div',
          { class: 'tl-detail' },
          h('span', { class: `badge ${r.verdict}` }, r.verdict),
          h('span', { class: 'reason' }, r.reason),
          decidedBy(r, intentions),
          auditLine(changes.get(r.intentionId), r.startTime),
          r.http ? h('span', { class: 'sub' }, `${r.http.method} ${r.http.path} → ${r.http.status}`) : '',
          r.routing ? h('span', { class: 'sub routing' }, routingText(r.routing)) : '',
        ),
      ),
    );
  }

  return h(
    'div',
    { class: 'trace' },
    h(
      'div',
      { class: 'trace-summary' },
      h(
        'h2',
        {},
        `${service(first.source)} `,
        h('span', { class: 'sub' }, first.source?.dc ?? ''),
        ' → ',
        `${service(first.destination)} `,
        h('span', { class: 'sub' }, first.destination?.dc ?? ''),
      ),
      h(
        'p',
        {},
        `${rows.length} hop${rows.length === 1 ? '' : 's'} across `,
        dcs.map((dc) => dcChip(dc)),
        ` · ${duration(span)} · started ${clock(t0)} · trace `,
        h('span', { class: 'mono' }, rows[0].traceId),
      ),
    ),
    h('div', { class: 'timeline', id: 'timeline' }, h('div', { class: 'tl-axis' }, h('div', { class: 'tl-label' }, 'hop'), axis), out),
  );
}

/**
 * The deciding intention of a hop, named by its pair when it still exists.
 * @param {FlowRecord} r
 * @param {Map<string, Intention>} intentions
 */
function decidedBy(r, intentions) {
  if (!r.intentionId)
    return h('span', { class: 'decided muted' }, r.hop.startsWith('gateway-') ? 'routed by SNI (gateways do not authorize)' : 'no authorization at this hop');
  if (r.intentionId === 'default') return h('span', { class: 'decided' }, `decided by the default policy in ${r.dc}`);
  const i = intentions.get(r.intentionId);
  return h(
    'span',
    { class: 'decided', title: r.intentionId },
    'decided by intention ',
    h('a', { href: `#/intentions?id=${encodeURIComponent(r.intentionId)}`, class: 'mono' }, shortId(r.intentionId)),
    i ? ` (${i.SourceName} → ${i.DestinationName}, ${i.Action ?? 'L7 permissions'})` : ' (since deleted)',
    `, written in ${r.intentionDc || 'an unknown DC'}`,
    r.intentionIndex ? `, at index ${r.intentionIndex}` : '',
  );
}

/**
 * Tick positions (ms from the start) at a round step, at most about eight of them.
 * @param {number} span
 */
function ticks(span) {
  const steps = [1, 2, 5];
  let step = 1;
  for (let mag = 1; ; mag *= 10) {
    const s = steps.map((x) => x * mag).find((x) => span / x <= 8);
    if (s) {
      step = s;
      break;
    }
  }
  const out = [];
  for (let t = 0; t <= span; t += step) out.push(t);
  return out;
}

/**
 * Where a client sidecar sent a call along the discovery chain, and why.
 * @param {{ target: string, route: string, split: string, retries: number, failover: string }} g
 */
function routingText(g) {
  const by = [g.route, g.split].filter(Boolean).join(' ');
  const retries = g.retries ? `, ${g.retries} ${g.retries === 1 ? 'retry' : 'retries'}` : '';
  return `to ${g.target}${by ? ` by ${by}` : ''}${retries}${g.failover ? `, failed over: ${g.failover}` : ''}`;
}
