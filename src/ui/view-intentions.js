// Intentions: the list, create (or replace) and delete with the page's token, and the audit history
// of every change (who, when, through which DC).
import { api, describeError, get, query } from './api.js';
import { changed, fill, h } from './dom.js';
import { dateTime, shortId } from './format.js';
import { dcChip } from './flow-cells.js';

export function createIntentionsView(ctx) {
  let highlight = '';
  let subject = '';
  let pendingDelete = '';
  let intentions = [];

  const field = (name, label, input) => h('label', {}, h('span', {}, label), input);
  const source = h('input', { name: 'source', required: true, placeholder: 'web or *', autocomplete: 'off' });
  const destination = h('input', { name: 'destination', required: true, placeholder: 'db or *', autocomplete: 'off' });
  const action = h('select', { name: 'action' }, h('option', { value: 'allow' }, 'allow'), h('option', { value: 'deny' }, 'deny'));
  const description = h('input', { name: 'description', placeholder: 'why (optional)', size: 30, autocomplete: 'off' });
  const replace = h('input', { name: 'replace', type: 'checkbox' });
  const message = h('p', { class: 'message', role: 'status', id: 'intention-message' });
  const form = h(
    'form',
    { class: 'filters', id: 'intention-form', onsubmit: (ev) => (ev.preventDefault(), create()) },
    field('source', 'source', source),
    field('destination', 'destination', destination),
    field('action', 'action', action),
    field('description', 'description', description),
    h('label', { class: 'check' }, replace, ' replace if it exists'),
    h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'primary' }, 'Create')),
  );
  const list = h('tbody');
  const table = h(
    'table',
    { class: 'flows', id: 'intention-table' },
    h('thead', {}, h('tr', {}, ['Source', '', 'Destination', 'Action', 'Precedence', 'Description', 'Updated', 'ID', ''].map((c) => h('th', {}, c)))),
    list,
  );
  const auditTitle = h('h2', {}, 'Audit history');
  const auditBody = h('div', { id: 'audit' });
  const el = h(
    'section',
    { class: 'view', 'aria-labelledby': 'intentions-title' },
    h('div', { class: 'view-head' }, h('h1', { id: 'intentions-title' }, 'Intentions')),
    form,
    message,
    h('div', { class: 'table-wrap' }, table),
    auditTitle,
    auditBody,
  );

  function say(text, kind = 'ok') {
    message.className = `message ${kind}`;
    message.textContent = text;
  }

  async function create() {
    const pair = { source: source.value.trim(), destination: destination.value.trim() };
    const existing = intentions.find((i) => i.SourceName === pair.source && i.DestinationName === pair.destination);
    if (existing && !replace.checked) {
      say(`${pair.source} → ${pair.destination} already exists (${existing.Action ?? 'L7 permissions'}): tick "replace if it exists" to change it.`, 'error');
      return;
    }
    try {
      await api('PUT', `/v1/connect/intentions/exact${query(pair)}`, { Action: action.value, Description: description.value.trim() });
      say(`${existing ? 'Replaced' : 'Created'}: ${pair.source} → ${pair.destination} (${action.value})`);
      source.value = '';
      destination.value = '';
      description.value = '';
      replace.checked = false;
    } catch (err) {
      say(`Not saved: ${describeError(err)}`, 'error');
    }
    await ctx.refresh();
  }

  async function remove(i) {
    pendingDelete = '';
    try {
      await api('DELETE', `/v1/connect/intentions/exact${query({ source: i.SourceName, destination: i.DestinationName })}`);
      say(`Deleted: ${i.SourceName} → ${i.DestinationName}`);
    } catch (err) {
      say(`Not deleted: ${describeError(err)}`, 'error');
    }
    await ctx.refresh();
  }

  function show(route) {
    highlight = route.params.get('id') ?? '';
    subject = route.params.get('subject') ?? '';
  }

  async function refresh() {
    intentions = await get('/v1/connect/intentions');
    intentions.sort((a, b) => b.Precedence - a.Precedence || a.SourceName.localeCompare(b.SourceName) || a.DestinationName.localeCompare(b.DestinationName));
    renderList();
    await renderAudit();
  }

  function renderList() {
    if (!changed(list, JSON.stringify([intentions, pendingDelete, highlight]))) return;
    if (intentions.length === 0) {
      fill(list, h('tr', {}, h('td', { colspan: 9, class: 'empty' }, 'No intentions: the default policy decides every connection.')));
      return;
    }
    fill(
      list,
      intentions.map((i) => {
        const key = `${i.SourceName} => ${i.DestinationName}`;
        const confirming = pendingDelete === i.ID;
        return h(
          'tr',
          { class: i.ID === highlight ? 'highlight' : '', dataset: { id: i.ID, source: i.SourceName, destination: i.DestinationName, action: i.Action ?? 'l7' } },
          h('td', {}, i.SourceName),
          h('td', { class: 'muted' }, '→'),
          h('td', {}, i.DestinationName),
          h('td', {}, i.Action ? h('span', { class: `badge ${i.Action === 'allow' ? 'allowed' : 'denied'}` }, i.Action) : h('span', { class: 'badge' }, `L7 (${i.Permissions?.length ?? 0} permissions)`)),
          h('td', { class: 'num' }, String(i.Precedence)),
          h('td', {}, i.Description || h('span', { class: 'muted' }, '–')),
          h('td', { class: 'mono' }, dateTime(i.UpdatedAt)),
          h('td', { class: 'mono', title: i.ID }, shortId(i.ID)),
          h(
            'td',
            { class: 'actions' },
            h('button', { type: 'button', onclick: () => ctx.navigate(`#/intentions${query({ subject: key })}`) }, 'History'),
            confirming
              ? [
                  h('button', { type: 'button', class: 'danger', onclick: () => remove(i) }, 'Confirm delete'),
                  h('button', { type: 'button', onclick: () => ((pendingDelete = ''), renderList()) }, 'Cancel'),
                ]
              : h('button', { type: 'button', class: 'danger-outline', onclick: () => ((pendingDelete = i.ID), renderList()) }, 'Delete'),
          ),
        );
      }),
    );
    if (highlight) list.querySelector('tr.highlight')?.scrollIntoView({ block: 'nearest' });
  }

  async function renderAudit() {
    if (changed(auditTitle, subject)) fill(auditTitle, subject ? [`Audit history of ${subject.replace(' => ', ' → ')} `, h('a', { href: '#/intentions', class: 'small' }, 'show all')] : 'Audit history');
    let events;
    try {
      events = await get('/v1/audit?kind=intention');
    } catch (err) {
      if (changed(auditBody, describeError(err))) fill(auditBody, h('p', { class: 'warn' }, `The audit history needs a token with operator:read (${describeError(err)}).`));
      return;
    }
    const shown = events.filter((e) => !subject || e.Subject === subject).reverse().slice(0, 200);
    if (!changed(auditBody, JSON.stringify(shown))) return;
    if (shown.length === 0) {
      fill(auditBody, h('p', { class: 'empty' }, 'No changes recorded.'));
      return;
    }
    fill(
      auditBody,
      h(
        'table',
        { class: 'flows', id: 'audit-table' },
        h('thead', {}, h('tr', {}, ['Time', 'Change', 'Intention', 'Action', 'By', 'Through', 'Index'].map((c) => h('th', {}, c)))),
        h(
          'tbody',
          {},
          shown.map((e) =>
            h(
              'tr',
              { dataset: { action: e.Action, subject: e.Subject } },
              h('td', { class: 'mono' }, dateTime(e.Time)),
              h('td', {}, h('span', { class: `badge change-${e.Action}` }, e.Action)),
              h('td', {}, e.Subject.replace(' => ', ' → ')),
              h('td', {}, change(e)),
              h('td', { title: e.Actor?.AccessorID ?? '' }, e.Actor?.Description || shortId(e.Actor?.AccessorID) || 'anonymous'),
              h('td', {}, dcChip(e.DC)),
              h('td', { class: 'num' }, String(e.Index ?? '')),
            ),
          ),
        ),
      ),
    );
  }

  return { el, show, refresh };
}

/** What an audit event changed, in a few words. */
function change(e) {
  const act = (i) => i?.Action ?? (i?.Permissions ? 'L7 permissions' : '?');
  if (e.Action === 'create') return act(e.After);
  if (e.Action === 'delete') return `was ${act(e.Before)}`;
  const before = act(e.Before);
  const after = act(e.After);
  return before === after ? `${after} (description or permissions)` : `${before} → ${after}`;
}
