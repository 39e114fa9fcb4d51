// @ts-check
// Intentions: the list, create (or replace) and delete with the page's token, and the audit history
// of every change (who, when, through which DC). Each intention shows its last change and the flows
// it decided in the last hour. The editor previews an intention against the observed calls before
// anything is written (a dry run), and suggests intentions for a service from its allowed calls.
import { api, describeError, get, query } from './api.js';
import { auditIndex, auditKey, auditLine } from './audit.js';
import { changed, fill, h } from './dom.js';
import { dateTime, shortId } from './format.js';
import { dcChip } from './flow-cells.js';
import { previewResult, ruleOf, suggestionsResult } from './policy-results.js';
/** @import { AuditEvent, Context, DryRunAnswer, FlowsAnswer, Intention, Route, Rule, Suggestion, SuggestAnswer, View } from './shapes.js' */

/**
 * A read that may fail without failing the view: its answer, or what it failed with.
 * @typedef {{ failed: unknown }} Failed
 * @typedef {{ allowed: number, denied: number, other: number }} DecidedCount
 * @typedef {{ counts: Map<string, DecidedCount>, missing: string[], truncated: boolean, error: unknown }} Decided
 */

const WINDOWS = ['15m', '1h', '24h'];
const SUGGEST_WINDOW = '24h';
// The flows each intention decided are counted over this much of the recent past.
const DECIDED_SINCE = '1h';
const DECIDED_LIMIT = 10_000;

/**
 * @param {Context} ctx
 * @returns {View}
 */
export function createIntentionsView(ctx) {
  let highlight = '';
  let subject = '';
  let pendingDelete = '';
  /** @type {Intention[]} */
  let intentions = [];
  let audit = auditIndex(undefined);
  /** @type {Decided} */
  let decided = { counts: new Map(), missing: [], truncated: false, error: undefined };

  const field = (/** @type {string} */ name, /** @type {string} */ label, /** @type {HTMLElement} */ input) => h('label', {}, h('span', {}, label), input);
  const source = h('input', { name: 'source', required: true, placeholder: 'web or *', autocomplete: 'off' });
  const destination = h('input', { name: 'destination', required: true, placeholder: 'db or *', autocomplete: 'off' });
  const action = h(
    'select',
    { name: 'action', onchange: () => showPermissions() },
    h('option', { value: 'allow' }, 'allow'),
    h('option', { value: 'deny' }, 'deny'),
    h('option', { value: 'l7' }, 'L7 permissions'),
  );
  const description = h('input', { name: 'description', placeholder: 'why (optional)', size: 30, autocomplete: 'off' });
  const replace = h('input', { name: 'replace', type: 'checkbox' });
  const windowSelect = h(
    'select',
    { name: 'window', title: 'how far back Preview replays the observed calls' },
    WINDOWS.map((w) => h('option', { value: w }, `last ${w}`)),
  );
  windowSelect.value = '1h';
  const permissions = h('textarea', {
    name: 'permissions',
    rows: 6,
    spellcheck: 'false',
    placeholder: '[{"Action": "allow", "HTTP": {"PathPrefix": "/v1/", "Methods": ["GET"]}}]',
  });
  const permissionsField = h('label', { class: 'wide', hidden: true }, h('span', {}, "permissions (JSON, the API's Permissions list)"), permissions);
  const previewButton = h(
    'button',
    { type: 'button', name: 'preview', title: 'replay this intention against the observed calls: nothing is written', onclick: () => preview() },
    'Preview',
  );
  const suggestButton = h(
    'button',
    {
      type: 'button',
      name: 'suggest',
      title: `suggest intentions for the destination from its allowed calls of the last ${SUGGEST_WINDOW}`,
      onclick: () => suggestFor(destination.value.trim()),
    },
    'Suggest',
  );
  const message = h('p', { class: 'message', role: 'status', id: 'intention-message' });
  const form = h(
    'form',
    { class: 'filters', id: 'intention-form', onsubmit: (/** @type {SubmitEvent} */ ev) => (ev.preventDefault(), create()) },
    field('source', 'source', source),
    field('destination', 'destination', destination),
    field('action', 'action', action),
    field('description', 'description', description),
    h('label', { class: 'check' }, replace, ' replace if it exists'),
    field('window', 'preview against', windowSelect),
    h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'primary' }, 'Create'), previewButton, suggestButton),
    permissionsField,
  );
  const previewBox = h('div', { id: 'preview', class: 'policy-box', 'aria-live': 'polite' });
  const suggestBox = h('div', { id: 'suggestions', class: 'policy-box', 'aria-live': 'polite' });
  const decidedNote = h('div', { class: 'notes', id: 'decided-note' });
  const list = h('tbody');
  const table = h(
    'table',
    { class: 'flows', id: 'intention-table' },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ['Source', '', 'Destination', 'Action', 'Precedence', 'Description', 'Updated', `Decided (last ${DECIDED_SINCE})`, 'ID', ''].map((c) => h('th', {}, c)),
      ),
    ),
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
    previewBox,
    suggestBox,
    h('div', { class: 'table-wrap' }, table),
    decidedNote,
    auditTitle,
    auditBody,
  );

  /** @param {string} text */
  function say(text, kind = 'ok') {
    message.className = `message ${kind}`;
    message.textContent = text;
  }

  function showPermissions() {
    permissionsField.hidden = action.value !== 'l7';
  }

  const existingOf = (/** @type {string} */ src, /** @type {string} */ dst) => intentions.find((i) => i.SourceName === src && i.DestinationName === dst);

  /**
   * The intention being edited: its pair and its rule (an Action, or L7 Permissions).
   * @returns {{ pair: { source: string, destination: string }, rule: Rule }}
   */
  function edited() {
    const pair = { source: source.value.trim(), destination: destination.value.trim() };
    if (!pair.source || !pair.destination) throw new Error('a source and a destination are needed');
    if (action.value !== 'l7') return { pair, rule: { Action: action.value } };
    let list;
    try {
      list = JSON.parse(permissions.value);
    } catch (err) {
      throw new Error(`the permissions are not JSON (${/** @type {Error} */ (err).message})`, { cause: err });
    }
    if (!Array.isArray(list) || list.length === 0) throw new Error('the permissions are a JSON list of at least one permission');
    return { pair, rule: { Permissions: list } };
  }

  async function create() {
    let intention;
    try {
      intention = edited();
    } catch (err) {
      say(`Not saved: ${/** @type {Error} */ (err).message}`, 'error');
      return;
    }
    const { pair, rule } = intention;
    const existing = existingOf(pair.source, pair.destination);
    if (existing && !replace.checked) {
      say(`${pair.source} → ${pair.destination} already exists (${existing.Action ?? 'L7 permissions'}): tick "replace if it exists" to change it.`, 'error');
      return;
    }
    try {
      await api('PUT', `/v1/connect/intentions/exact${query(pair)}`, { ...rule, Description: description.value.trim() });
      say(`${existing ? 'Replaced' : 'Created'}: ${pair.source} → ${pair.destination} (${ruleOf(rule)})`);
      source.value = '';
      destination.value = '';
      description.value = '';
      permissions.value = '';
      action.value = 'allow';
      showPermissions();
      replace.checked = false;
      fill(previewBox);
    } catch (err) {
      say(`Not saved: ${describeError(err)}`, 'error');
    }
    await ctx.refresh();
  }

  /** @param {Intention} i */
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

  /**
   * Who decided, in the words of the preview: the default policy, the proposal, or an intention's pair.
   * @param {string} id
   */
  function nameOf(id) {
    if (!id || id === 'default') return h('span', { class: 'muted' }, 'default policy');
    if (id === 'proposed') return h('strong', {}, 'the proposal');
    const i = intentions.find((x) => x.ID === id);
    return i ? h('span', { title: id }, `${i.SourceName} → ${i.DestinationName} (${ruleOf(i)})`) : h('span', { class: 'mono', title: id }, shortId(id));
  }

  /** A dry run of the edited intention: which observed calls it would decide differently. */
  async function preview() {
    let intention;
    try {
      intention = edited();
    } catch (err) {
      say(`Cannot preview: ${/** @type {Error} */ (err).message}`, 'error');
      return;
    }
    const { pair, rule } = intention;
    const window = windowSelect.value;
    say('');
    previewButton.disabled = true;
    fill(previewBox, h('p', { class: 'sub' }, `Replaying ${pair.source} → ${pair.destination} (${ruleOf(rule)}) against the calls of the last ${window}…`));
    try {
      const answer = /** @type {DryRunAnswer} */ (
        await api('POST', `/v1/policy/dry-run${query({ window })}`, { SourceName: pair.source, DestinationName: pair.destination, ...rule })
      );
      fill(previewBox, closable(previewBox, previewResult(answer, nameOf, existingOf(pair.source, pair.destination))));
    } catch (err) {
      fill(previewBox, closable(previewBox, h('p', { class: 'warn', id: 'preview-error' }, `Preview failed: ${describeError(err)}`)));
    } finally {
      previewButton.disabled = false;
    }
  }

  /**
   * Intentions for `service` (a destination) from the calls it allowed.
   * @param {string} service
   */
  async function suggestFor(service) {
    if (!service || service === '*') {
      say('Suggest works for one destination service: type its name in the destination field.', 'error');
      return;
    }
    say('');
    suggestButton.disabled = true;
    fill(suggestBox, h('p', { class: 'sub' }, `Reading the allowed calls to ${service} of the last ${SUGGEST_WINDOW}…`));
    try {
      const answer = /** @type {SuggestAnswer} */ (await get(`/v1/policy/suggest${query({ service, window: SUGGEST_WINDOW })}`));
      fill(suggestBox, closable(suggestBox, suggestionsResult(answer, use)));
    } catch (err) {
      fill(suggestBox, closable(suggestBox, h('p', { class: 'warn', id: 'suggest-error' }, `Suggest failed: ${describeError(err)}`)));
    } finally {
      suggestButton.disabled = false;
    }
  }

  /**
   * Puts a suggestion in the editor, to preview and then create.
   * @param {Suggestion} s
   * @param {SuggestAnswer} answer
   */
  function use(s, answer) {
    source.value = s.SourceName;
    destination.value = s.DestinationName;
    if (s.Permissions?.length) {
      action.value = 'l7';
      permissions.value = JSON.stringify(s.Permissions, null, 2);
    } else {
      action.value = s.Action ?? 'allow';
      permissions.value = '';
    }
    showPermissions();
    description.value = `least privilege for the ${s.Calls} call${s.Calls === 1 ? '' : 's'} seen in the last ${answer.Window}`;
    replace.checked = Boolean(s.Existing);
    fill(previewBox);
    say(
      `In the editor: ${s.SourceName} → ${s.DestinationName} (${ruleOf(s)})${s.Existing ? ', replacing the intention there is' : ''}. Preview it, then create it.`,
    );
    source.focus();
  }

  /** @param {Route} route */
  function show(route) {
    highlight = route.params.get('id') ?? '';
    subject = route.params.get('subject') ?? '';
  }

  async function refresh() {
    const [current, events, flows] = /** @type {[Intention[], AuditEvent[] | Failed, FlowsAnswer | Failed]} */ (
      await Promise.all([
        get('/v1/connect/intentions'),
        get('/v1/audit?kind=intention').catch((err) => ({ failed: err })),
        get(`/v1/flows${query({ dc: 'all', hop: 'server-sidecar', since: DECIDED_SINCE, limit: DECIDED_LIMIT })}`).catch((err) => ({ failed: err })),
      ])
    );
    intentions = current;
    intentions.sort((a, b) => b.Precedence - a.Precedence || a.SourceName.localeCompare(b.SourceName) || a.DestinationName.localeCompare(b.DestinationName));
    audit = auditIndex(Array.isArray(events) ? events : undefined);
    decided = countDecided(flows);
    renderList();
    renderDecidedNote();
    renderAudit(events);
  }

  function renderDecidedNote() {
    const notes = [];
    if (decided.error) notes.push(`The flows each intention decided could not be read: ${describeError(decided.error)}.`);
    for (const dc of decided.missing) notes.push(`Datacenter ${dc} did not answer: the flows it decided are not counted.`);
    if (decided.truncated) notes.push(`More than ${DECIDED_LIMIT} flows in the last ${DECIDED_SINCE}: only the newest are counted.`);
    if (changed(decidedNote, JSON.stringify(notes))) fill(decidedNote, notes.length ? h('p', { class: 'warn' }, notes.join(' ')) : '');
  }

  /**
   * The decided-flows cell of an intention: allowed and denied, and the rest (errors) if any.
   * @param {Intention} i
   */
  function decidedCell(i) {
    if (decided.error) return h('td', { class: 'decided muted', title: describeError(decided.error) }, '?');
    const c = decided.counts.get(i.ID) ?? { allowed: 0, denied: 0, other: 0 };
    const total = c.allowed + c.denied + c.other;
    const exact = i.SourceName !== '*' && i.DestinationName !== '*';
    const text =
      total === 0
        ? h('span', { class: 'muted' }, 'none')
        : [
            h('span', { class: c.allowed ? 'n-allowed' : 'muted' }, `${c.allowed} allowed`),
            ' · ',
            h('span', { class: c.denied ? 'n-denied' : 'muted' }, `${c.denied} denied`),
            c.other ? h('span', { class: 'sub' }, ` · ${c.other} other`) : '',
          ];
    return h(
      'td',
      {
        class: 'decided',
        dataset: { allowed: c.allowed, denied: c.denied, other: c.other },
        title: `flows decided by this intention at a destination's sidecar in the last ${DECIDED_SINCE}`,
      },
      total && exact
        ? h('a', { href: `#/flows${query({ from: i.SourceName, to: i.DestinationName, hop: 'server-sidecar', since: DECIDED_SINCE })}` }, text)
        : text,
    );
  }

  function renderList() {
    const changes = intentions.map((i) => audit.lastChange(i.ID, `${i.SourceName} => ${i.DestinationName}`));
    const counts = intentions.map((i) => decided.counts.get(i.ID));
    if (
      !changed(list, JSON.stringify([intentions, pendingDelete, highlight, changes.map(auditKey), counts, decided.error ? describeError(decided.error) : '']))
    )
      return;
    if (intentions.length === 0) {
      fill(list, h('tr', {}, h('td', { colspan: 10, class: 'empty' }, 'No intentions: the default policy decides every connection.')));
      return;
    }
    fill(
      list,
      intentions.map((i, n) => {
        const key = `${i.SourceName} => ${i.DestinationName}`;
        const confirming = pendingDelete === i.ID;
        return h(
          'tr',
          {
            class: i.ID === highlight ? 'highlight' : '',
            dataset: { id: i.ID, source: i.SourceName, destination: i.DestinationName, action: i.Action ?? 'l7' },
          },
          h('td', {}, i.SourceName),
          h('td', { class: 'muted' }, '→'),
          h('td', {}, i.DestinationName),
          h(
            'td',
            {},
            i.Action
              ? h('span', { class: `badge ${i.Action === 'allow' ? 'allowed' : 'denied'}` }, i.Action)
              : h('span', { class: 'badge' }, `L7 (${i.Permissions?.length ?? 0} permissions)`),
          ),
          h('td', { class: 'num' }, String(i.Precedence)),
          h('td', {}, i.Description || h('span', { class: 'muted' }, '–')),
          h('td', { class: 'updated' }, h('span', { class: 'mono' }, dateTime(i.UpdatedAt)), auditLine(changes[n])),
          decidedCell(i),
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

  /** @param {AuditEvent[] | Failed} events */
  function renderAudit(events) {
    if (changed(auditTitle, subject))
      fill(
        auditTitle,
        subject ? [`Audit history of ${subject.replace(' => ', ' → ')} `, h('a', { href: '#/intentions', class: 'small' }, 'show all')] : 'Audit history',
      );
    if (!Array.isArray(events)) {
      const err = describeError(events.failed);
      if (changed(auditBody, err)) fill(auditBody, h('p', { class: 'warn' }, `The audit history needs a token with operator:read (${err}).`));
      return;
    }
    const shown = events
      .filter((e) => !subject || e.Subject === subject)
      .reverse()
      .slice(0, 200);
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
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            ['Time', 'Change', 'Intention', 'Action', 'By', 'Through', 'Index'].map((c) => h('th', {}, c)),
          ),
        ),
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

/**
 * A result panel with a button that clears it.
 * @param {HTMLElement} box
 * @param {HTMLElement} content
 */
function closable(box, content) {
  return [h('button', { type: 'button', class: 'close', title: 'close', 'aria-label': 'close', onclick: () => fill(box) }, '×'), content];
}

/**
 * Per intention ID, how many flows it decided by verdict, from the sidecars' records.
 * @param {FlowsAnswer | Failed} flows
 * @returns {Decided}
 */
function countDecided(flows) {
  if ('failed' in flows) return { counts: new Map(), missing: [], truncated: false, error: flows.failed };
  /** @type {Map<string, DecidedCount>} */
  const counts = new Map();
  for (const r of flows.Records ?? []) {
    if (!r.intentionId || r.intentionId === 'default') continue;
    let c = counts.get(r.intentionId);
    if (!c) counts.set(r.intentionId, (c = { allowed: 0, denied: 0, other: 0 }));
    if (r.verdict === 'allowed') c.allowed++;
    else if (r.verdict === 'denied') c.denied++;
    else c.other++;
  }
  return { counts, missing: flows.Missing ?? [], truncated: (flows.Records ?? []).length >= DECIDED_LIMIT, error: undefined };
}

/**
 * What an audit event changed, in a few words.
 * @param {AuditEvent} e
 */
function change(e) {
  const act = (/** @type {Rule | undefined} */ i) => i?.Action ?? (i?.Permissions ? 'L7 permissions' : '?');
  if (e.Action === 'create') return act(e.After);
  if (e.Action === 'delete') return `was ${act(e.Before)}`;
  const before = act(e.Before);
  const after = act(e.After);
  return before === after ? `${after} (description or permissions)` : `${before} → ${after}`;
}
