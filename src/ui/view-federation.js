// @ts-check
// Federation status: this DC, the primary, and every peer link with its state, heartbeat age, last
// acknowledged index and replication lag, as /v1/federation/status reports them.
import { get } from './api.js';
import { fill, h } from './dom.js';
import { dateTime, duration } from './format.js';
import { dcChip } from './flow-cells.js';
/** @import { FederationStatus, View } from './shapes.js' */

/** @returns {View} */
export function createFederationView() {
  const summary = h('div', { class: 'cards', id: 'federation-summary' });
  const peers = h('div', { id: 'federation-peers' });
  const el = h(
    'section',
    { class: 'view', 'aria-labelledby': 'federation-title' },
    h('div', { class: 'view-head' }, h('h1', { id: 'federation-title' }, 'Federation')),
    summary,
    h('h2', {}, 'Peers'),
    peers,
  );

  async function refresh() {
    const [status, datacenters] = /** @type {[FederationStatus, string[]]} */ (
      await Promise.all([get('/v1/federation/status'), get('/v1/catalog/datacenters')])
    );
    const card = (/** @type {string} */ label, /** @type {string} */ value, /** @type {string} */ note) =>
      h(
        'div',
        { class: 'card' },
        h('div', { class: 'card-label' }, label),
        h('div', { class: 'card-value' }, value),
        note ? h('div', { class: 'sub' }, note) : '',
      );
    const up = status.Peers.filter((p) => p.State === 'up').length;
    fill(
      summary,
      card('This datacenter', status.Datacenter, status.Primary ? 'the primary' : 'a secondary'),
      card('Primary', status.PrimaryDatacenter, status.Primary ? 'holds the root CA, intentions and ACL' : 'writes of intentions and ACL go there'),
      card('Datacenters', datacenters.join(', '), `${up} of ${status.Peers.length} peer links up`),
      card('Index', String(status.Index), status.Primary ? 'replicated from here' : `primary index applied here: ${status.AppliedIndex}`),
    );
    if (status.Peers.length === 0) {
      fill(peers, h('p', { class: 'empty' }, 'No peers: this datacenter stands alone.'));
      return;
    }
    fill(
      peers,
      h(
        'table',
        { class: 'flows', id: 'peer-table' },
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            ['Datacenter', 'State', 'Direction', 'Connected since', 'Heartbeat age', 'Last acked index', 'Replication lag', 'Export age', 'Last error'].map(
              (c) => h('th', {}, c),
            ),
          ),
        ),
        h(
          'tbody',
          {},
          status.Peers.map((p) =>
            h(
              'tr',
              { dataset: { dc: p.Datacenter, state: p.State } },
              h('td', {}, dcChip(p.Datacenter), p.Datacenter === status.PrimaryDatacenter ? h('span', { class: 'sub' }, ' primary') : ''),
              h('td', {}, h('span', { class: `badge state-${p.State}` }, p.State)),
              h('td', {}, p.Direction === 'in' ? 'they dialled us' : p.Direction === 'out' ? 'we dialled them' : '–'),
              h('td', { class: 'mono' }, p.ConnectedSince ? dateTime(p.ConnectedSince) : '–'),
              h('td', { class: 'num' }, p.HeartbeatAgeMs === null ? '–' : duration(p.HeartbeatAgeMs)),
              h('td', { class: 'num' }, String(p.LastAckedIndex)),
              h('td', { class: `num${p.ReplicationLagMs > 0 ? ' lagging' : ''}` }, p.ReplicationLagMs > 0 ? duration(p.ReplicationLagMs) : 'caught up'),
              h('td', { class: 'num' }, p.ExportAgeMs === null ? '–' : duration(p.ExportAgeMs)),
              h('td', { class: 'reason' }, p.LastError || h('span', { class: 'muted' }, '–')),
            ),
          ),
        ),
      ),
    );
  }

  return { el, show: () => {}, refresh };
}
