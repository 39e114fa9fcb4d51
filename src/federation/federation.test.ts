// Replication's edges without sockets: a secondary too far behind gets the whole state, and a
// snapshot applied in a secondary drops what the primary no longer has.
import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../store/index.js';
import { Catalog } from '../catalog/index.js';
import { CertificateAuthority } from '../ca/index.js';
import { Federation } from './federation.js';
import type { PeerLink } from './peer-link.js';
import type { PeerMessage } from './proto.js';

async function federation(dc: string, primaryDc: string, retainChanges?: number) {
  const store = new MemoryStore({ dc, advertiseAddr: 'test', retainChanges });
  await store.start();
  const catalog = new Catalog({ store, dc, nodeName: 'n1', nodeAddress: '127.0.0.1' });
  await catalog.start();
  const ca = new CertificateAuthority({ store, dc, primary: dc === primaryDc, trustDomain: () => 'td.isthmus' });
  const fed = new Federation({ store, catalog, ca, dc, primaryDc, trustDomain: () => 'td.isthmus', host: '127.0.0.1', port: 0, version: 'test' });
  return { store, fed };
}

function fakeLink(peerDc: string): PeerLink & { sent: PeerMessage[] } {
  const sent: PeerMessage[] = [];
  return { peerDc, sent, send: (m: PeerMessage) => sent.push(m), open: true } as unknown as PeerLink & { sent: PeerMessage[] };
}

const intention = (src: string) => ({
  op: 'put' as const,
  table: 'intentions',
  key: `default/${src}=>default/db`,
  value: { SourceName: src, DestinationName: 'db', Action: 'deny' },
});

describe('replication', () => {
  it('sends the changes after the asked index, then a snapshot once that index is older than what is kept', async () => {
    const { store, fed } = await federation('dc1', 'dc1', 3);
    const at: number[] = [];
    for (const s of ['a', 'b', 'c', 'd', 'e']) at.push((await store.commit([intention(s)])).index);
    const last = (await store.commit([{ op: 'put', table: 'services', key: 'n1/x', value: { Service: 'x' } }])).index; // not replicated

    const recent = fakeLink('dc2');
    const stop1 = fed.replicate(recent, at[3]);
    expect(recent.sent[0].changes).toMatchObject({ snapshot: false, index: last });
    expect(recent.sent[0].changes!.resources.map((r) => r.key)).toEqual(['default/e=>default/db']);
    stop1();

    const behind = fakeLink('dc3');
    const stop2 = fed.replicate(behind, at[0]);
    const snap = behind.sent[0].changes!;
    expect(snap.snapshot).toBe(true);
    expect(
      snap.resources
        .filter((r) => r.table === 'intentions')
        .map((r) => r.key)
        .sort(),
    ).toEqual(['a', 'b', 'c', 'd', 'e'].map((s) => `default/${s}=>default/db`));
    expect(snap.resources.some((r) => r.table === 'services')).toBe(false);
    // Live changes follow, only for replicated tables.
    await store.commit([intention('f')]);
    await store.commit([{ op: 'put', table: 'services', key: 'n1/y', value: { Service: 'y' } }]);
    expect(behind.sent.length).toBe(2);
    expect(behind.sent[1].changes!.resources.map((r) => r.key)).toEqual(['default/f=>default/db']);
    stop2();
  });

  it('applies a snapshot in a secondary: drops what the primary no longer has, keeps its own tables, and records the index', async () => {
    const { store, fed } = await federation('dc2', 'dc1');
    await store.commit([intention('old'), intention('kept'), { op: 'put', table: 'services', key: 'n1/local', value: { Service: 'local' } }]);
    const link = fakeLink('dc1');
    await fed.applyChanges(link, {
      snapshot: true,
      index: 40,
      committedAtMs: Date.now(),
      resources: [{ table: 'intentions', key: 'default/kept=>default/db', op: 'put', valueJson: JSON.stringify({ SourceName: 'kept' }), index: 39 }],
    });
    expect(store.list('intentions').map((e) => e.key)).toEqual(['default/kept=>default/db']);
    expect(store.get('services', 'n1/local')).toBeDefined();
    expect(fed.appliedIndex()).toBe(40);
    // An older batch that arrives late changes nothing; a table that is not replicated is refused.
    await fed.applyChanges(link, {
      snapshot: false,
      index: 30,
      committedAtMs: 0,
      resources: [{ table: 'intentions', key: 'x', op: 'put', valueJson: '{}', index: 30 }],
    });
    await fed.applyChanges(link, {
      snapshot: false,
      index: 41,
      committedAtMs: 0,
      resources: [{ table: 'ca-secrets', key: 'k', op: 'put', valueJson: '"secret"', index: 41 }],
    });
    expect(store.get('intentions', 'x')).toBeUndefined();
    expect(store.get('ca-secrets', 'k')).toBeUndefined();
    // Only the primary is an authority for the replicated tables.
    await fed.applyChanges(fakeLink('dc3'), { snapshot: true, index: 99, committedAtMs: 0, resources: [] });
    expect(store.list('intentions').length).toBe(1);
  });
});
