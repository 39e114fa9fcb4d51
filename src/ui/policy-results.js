// @ts-check
// Policy from traffic, as the intentions editor shows it: the answer of a dry run (which observed
// calls a proposed intention would decide differently) and the intentions suggested from the
// allowed calls to a service. Plain builders over the API's answers; nothing here writes.
import { h } from './dom.js';
import { shortId } from './format.js';
import { dcChip } from './flow-cells.js';
/** @import { Child } from './dom.js' */
/** @import { DryRunAnswer, Federated, Permission, Rule, Suggestion, SuggestAnswer } from './shapes.js' */

const plural = (/** @type {number} */ n, /** @type {string} */ one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/**
 * "default/web" reads as "web"; other namespaces stay named.
 * @param {string | undefined} name
 */
export function plainName(name) {
  return name?.startsWith('default/') ? name.slice('default/'.length) : (name ?? '');
}

/**
 * An intention's rule in a few words: its action, or its L7 permissions counted.
 * @param {Rule | undefined} i
 */
export function ruleOf(i) {
  if (i?.Permissions?.length) return `L7, ${plural(i.Permissions.length, 'permission')}`;
  return i?.Action ?? 'allow';
}

/**
 * One line per L7 permission: "allow GET, POST /v1/orders".
 * @param {Permission[] | undefined} permissions
 */
export function permissionLines(permissions) {
  return (permissions ?? []).map((p) => {
    /** @type {NonNullable<Permission['HTTP']>} */
    const http = p.HTTP ?? {};
    const path = http.PathExact ?? (http.PathPrefix ? `${http.PathPrefix}*` : http.PathRegex ? `~${http.PathRegex}` : '(any path)');
    const methods = http.Methods?.length ? http.Methods.join(', ') : 'any method';
    const headers = http.Header?.length ? ` (+${plural(http.Header.length, 'header rule')})` : '';
    return `${p.Action} ${methods} ${path}${headers}`;
  });
}

/**
 * Where the answer came from, and which DCs did not answer (their calls are left out).
 * @param {Federated} answer
 */
function sources(answer) {
  const missing = answer.Missing ?? [];
  const answered = (answer.Datacenters ?? []).filter((dc) => !missing.includes(dc));
  return { answered, missing };
}

/**
 * @param {Federated} answer
 * @param {string} what
 */
function missingNote(answer, what) {
  const { missing } = sources(answer);
  if (missing.length === 0) return '';
  return h(
    'p',
    { class: 'warn', id: `${what}-missing` },
    missing.map((dc) => `Datacenter ${dc} did not answer (${answer.Errors?.[dc] ?? 'no reason given'}): its calls are not counted.`).join(' '),
  );
}

/** @param {string[]} dcs */
function dcList(dcs) {
  return dcs.length ? dcs.join(', ') : 'no datacenter';
}

/**
 * The dry run's answer. `nameOf(id)` names a deciding intention (an ID, "default" or "proposed");
 * `existing` is the intention of the same pair the proposal would replace, if any.
 * @param {DryRunAnswer} answer
 * @param {(id: string) => Child} nameOf
 * @param {(Rule & { ID: string }) | undefined} existing
 */
export function previewResult(answer, nameOf, existing) {
  const p = answer.Proposed;
  const { answered } = sources(answer);
  const changes = answer.Changes ?? [];
  const denied = changes.filter((c) => c.After === 'denied').reduce((n, c) => n + c.Count, 0);
  const allowed = changes.filter((c) => c.After === 'allowed').reduce((n, c) => n + c.Count, 0);
  return h(
    'div',
    { class: 'policy-panel', dataset: { examined: answer.Examined, changes: changes.length } },
    h(
      'h3',
      {},
      'Preview of ',
      h('span', { class: 'pair' }, `${p.SourceName} → ${p.DestinationName}`),
      ' ',
      h('span', { class: `badge ${p.Action === 'deny' ? 'denied' : p.Action === 'allow' ? 'allowed' : ''}` }, ruleOf(p)),
      h(
        'span',
        { class: 'sub' },
        existing ? ` replacing the ${ruleOf(existing)} intention ${shortId(existing.ID)} · nothing was written` : ' · nothing was written',
      ),
    ),
    h(
      'p',
      { id: 'preview-summary' },
      `Replayed against ${plural(answer.Examined, 'call')} of the last ${answer.Window} in ${dcList(answered)}`,
      answer.Examined ? ` (${plural(answer.Distinct, 'distinct call')})` : '',
      '.',
      changes.length
        ? [
            ' ',
            denied ? h('strong', { class: 'to-denied' }, `${plural(denied, 'call')} would be denied`) : '',
            denied && allowed ? ', ' : '',
            allowed ? h('strong', { class: 'to-allowed' }, `${plural(allowed, 'call')} would be allowed`) : '',
            ' that were not.',
          ]
        : '',
    ),
    missingNote(answer, 'preview'),
    answer.Truncated ? h('p', { class: 'warn' }, 'The window held more calls than one replay reads: only the newest were replayed.') : '',
    answer.HeaderRulesIgnored
      ? h('p', { class: 'warn' }, 'Flow records keep no headers: permissions that match on headers were judged as if the calls carried none.')
      : '',
    changes.length === 0
      ? h(
          'p',
          { class: 'empty', id: 'preview-none' },
          answer.Examined
            ? 'No observed call would be decided differently.'
            : `No observed call would be decided differently: no calls to ${p.DestinationName} were seen in the window.`,
        )
      : h(
          'table',
          { class: 'flows', id: 'preview-table' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['Calls', 'Source', 'Destination', 'Request', 'Verdict', 'Decided by', 'Seen in'].map((c) => h('th', {}, c)),
            ),
          ),
          h(
            'tbody',
            {},
            changes.map((c) => {
              const request = c.Method ? `${c.Method} ${c.Path}` : '';
              return h(
                'tr',
                {
                  class: `turns-${c.After}`,
                  dataset: {
                    source: plainName(c.Source),
                    destination: plainName(c.Destination),
                    request: request || 'connection',
                    before: c.Before,
                    after: c.After,
                    count: c.Count,
                  },
                },
                h('td', { class: 'num count' }, String(c.Count)),
                h('td', {}, plainName(c.Source)),
                h('td', {}, plainName(c.Destination)),
                h('td', { class: request ? 'mono' : 'muted' }, request || 'connection'),
                h(
                  'td',
                  { class: 'verdict-change' },
                  h('span', { class: 'was' }, c.Before),
                  ' → ',
                  h('strong', { class: `to-${c.After}` }, c.After.toUpperCase()),
                ),
                h('td', {}, nameOf(c.BeforeDecidedBy), ' → ', nameOf(c.AfterDecidedBy)),
                h(
                  'td',
                  {},
                  (c.Datacenters ?? []).map((dc) => dcChip(dc)),
                ),
              );
            }),
          ),
        ),
  );
}

/**
 * The suggestions for a service, each with a button that puts it in the editor.
 * @param {SuggestAnswer} answer
 * @param {(s: Suggestion, answer: SuggestAnswer) => void} use
 */
export function suggestionsResult(answer, use) {
  const { answered } = sources(answer);
  const list = answer.Suggestions ?? [];
  return h(
    'div',
    { class: 'policy-panel', dataset: { service: answer.Service } },
    h(
      'h3',
      {},
      'Suggested intentions for ',
      h('span', { class: 'pair' }, plainName(answer.Service)),
      h('span', { class: 'sub' }, ' · least privilege for the calls it allowed'),
    ),
    h(
      'p',
      { id: 'suggest-summary' },
      `From ${plural(answer.Examined, 'allowed call')} of the last ${answer.Window} in ${dcList(answered)}: ${plural(list.length, 'suggestion')}.`,
    ),
    missingNote(answer, 'suggest'),
    answer.Truncated ? h('p', { class: 'warn' }, 'The window held more calls than one query reads: only the newest were used.') : '',
    list.length === 0
      ? h('p', { class: 'empty', id: 'suggest-none' }, `No allowed calls to ${plainName(answer.Service)} were seen in the window: nothing to suggest.`)
      : h(
          'table',
          { class: 'flows', id: 'suggest-table' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['Source', '', 'Destination', 'Rule', 'Calls', 'Seen in', ''].map((c) => h('th', {}, c)),
            ),
          ),
          h(
            'tbody',
            {},
            list.map((s) =>
              h(
                'tr',
                { dataset: { source: s.SourceName, destination: s.DestinationName, calls: s.Calls, existing: s.Existing ?? '' } },
                h('td', {}, s.SourceName),
                h('td', { class: 'muted' }, '→'),
                h('td', {}, s.DestinationName),
                h(
                  'td',
                  {},
                  s.Permissions?.length
                    ? permissionLines(s.Permissions).map((l) => h('div', { class: 'mono' }, l))
                    : h('span', { class: 'badge allowed' }, s.Action ?? 'allow'),
                  s.Existing ? h('div', { class: 'sub' }, `replaces intention ${shortId(s.Existing)}`) : '',
                ),
                h('td', { class: 'num' }, String(s.Calls)),
                h(
                  'td',
                  {},
                  (s.Datacenters ?? []).map((dc) => dcChip(dc)),
                ),
                h('td', { class: 'actions' }, h('button', { type: 'button', class: 'use', onclick: () => use(s, answer) }, 'Use in editor')),
              ),
            ),
          ),
        ),
  );
}
