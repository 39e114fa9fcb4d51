import { X509Certificate } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../store/index.js';
import { isIsthmusError } from '../core/errors.js';
import { CertificateAuthority } from './authority.js';
import { LeafCache } from './leaf-cache.js';
import { inspect } from './x509.js';

const actor = { accessorId: 'a', description: 'test', dc: 'dc1' };
const TD = 'aaaa.isthmus';
const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (stops.length) await stops.pop()!();
});

async function setup(now = () => Date.now()) {
  const store = new MemoryStore({ dc: 'dc1', advertiseAddr: 'x' });
  await store.start();
  const ca = new CertificateAuthority({ store, dc: 'dc1', primary: true, trustDomain: () => TD, now, tickMs: 60_000 });
  await ca.start();
  stops.push(
    () => ca.stop(),
    () => store.stop(),
  );
  return { store, ca };
}

function verifiesUnder(leafPem: string, chain: string[], roots: string[]): boolean {
  // Walk leaf -> chain certs -> some root, by signature.
  let current = new X509Certificate(leafPem);
  const pool = chain.map((c) => new X509Certificate(c));
  for (let depth = 0; depth < 5; depth++) {
    for (const r of roots.map((p) => new X509Certificate(p))) if (current.verify(r.publicKey)) return true;
    const next = pool.find((c) => current.checkIssued(c) && current.verify(c.publicKey));
    if (!next) return false;
    current = next;
  }
  return false;
}

describe('CertificateAuthority', () => {
  it('makes a root and an intermediate at first start and signs SPIFFE leaves under them', async () => {
    const { ca, store } = await setup();
    const root = ca.activeRoot()!;
    expect(root.TrustDomain).toBe(TD);
    expect(ca.intermediate()!.RootID).toBe(root.ID);
    const leaf = await ca.issueLeaf('web');
    expect(inspect(leaf.certPem).uris).toEqual([`spiffe://${TD}/ns/default/dc/dc1/svc/web`]);
    const b = ca.bundle();
    expect(verifiesUnder(leaf.certPem, b.chain, b.roots)).toBe(true);
    // Keys are kept apart from what the roots table (and so the API) shows.
    expect(JSON.stringify(store.list('ca-roots'))).not.toContain('PRIVATE KEY');
  });

  it('rotates the root: old and new leaves both verify against the bundle, and old-root-only peers accept new leaves via the cross-sign', async () => {
    const { ca } = await setup();
    const oldRoot = ca.activeRoot()!;
    const oldLeaf = await ca.issueLeaf('web');
    const oldChain = ca.bundle().chain;
    const seen: number[] = [];
    ca.onBundle((b) => seen.push(b.roots.length));
    const newRoot = await ca.rotate(actor);
    expect(newRoot.ID).not.toBe(oldRoot.ID);
    expect(ca.activeRoot()!.ID).toBe(newRoot.ID);
    expect(ca.intermediate()!.RootID).toBe(newRoot.ID);
    const newLeaf = await ca.issueLeaf('api');
    const b = ca.bundle();
    expect(b.roots).toHaveLength(2);
    expect(seen.length).toBeGreaterThan(0);
    // A leaf from before the rotation, presented with its own chain, still verifies against the bundle.
    expect(verifiesUnder(oldLeaf.certPem, oldChain, b.roots)).toBe(true);
    expect(verifiesUnder(newLeaf.certPem, b.chain, b.roots)).toBe(true);
    // A peer that still trusts only the old root accepts the new leaf through the cross-signed cert.
    expect(verifiesUnder(newLeaf.certPem, b.chain, [oldRoot.RootCert])).toBe(true);
    expect(verifiesUnder(newLeaf.certPem, [b.chain[0]], [oldRoot.RootCert])).toBe(false);
  });

  it('retires the old root only after the leaf TTL has passed', async () => {
    let t = Date.now();
    const { ca } = await setup(() => t);
    await ca.setConfig({ LeafCertTTL: 3_600_000 }, actor);
    const oldId = ca.activeRoot()!.ID;
    await ca.rotate(actor);
    await ca.tick();
    expect(ca.roots().map((r) => r.ID)).toContain(oldId);
    t += 3_600_000 + 3 * 60_000;
    await ca.tick();
    expect(ca.roots().map((r) => r.ID)).not.toContain(oldId);
  });

  it('renews the intermediate at half its life without a root rotation', async () => {
    let t = Date.now();
    const { ca } = await setup(() => t);
    const first = ca.intermediate()!;
    const life = Date.parse(first.NotAfter) - Date.parse(first.NotBefore);
    t += life / 2 - 3_600_000;
    await ca.tick();
    expect(ca.intermediate()!.SerialNumber).toBe(first.SerialNumber);
    t += 2 * 3_600_000;
    await ca.tick();
    expect(ca.intermediate()!.SerialNumber).not.toBe(first.SerialNumber);
    expect(ca.intermediate()!.RootID).toBe(first.RootID);
  });

  it('bounds leaf signings per second with a clear rate-limit error', async () => {
    const t = Date.now();
    const { ca } = await setup(() => t);
    await ca.setConfig({ CsrMaxPerSecond: 3 }, actor);
    const results = await Promise.allSettled([1, 2, 3, 4, 5].map(() => ca.issueLeaf('web')));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(3);
    const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(isIsthmusError(rejected.reason, 'ISTHMUS_ERR_RATE_LIMITED')).toBe(true);
  });

  it('refuses a leaf TTL below a minute and one longer than half the intermediate TTL, changing nothing', async () => {
    const { ca } = await setup();
    const before = ca.config();
    await expect(ca.setConfig({ LeafCertTTL: 1000 }, actor)).rejects.toMatchObject({ code: 'ISTHMUS_ERR_INVALID' });
    await expect(ca.setConfig({ LeafCertTTL: before.IntermediateCertTTL }, actor)).rejects.toMatchObject({ code: 'ISTHMUS_ERR_INVALID' });
    expect(ca.config()).toEqual(before);
  });
});

describe('LeafCache', () => {
  it('reuses a leaf until half-life, then renews with a higher index; a blocking wait returns at renewal', async () => {
    let t = Date.now();
    const { ca } = await setup(() => t);
    await ca.setConfig({ LeafCertTTL: 120_000 }, actor);
    const cache = new LeafCache(ca, () => t);
    const a = await cache.get('web');
    expect((await cache.get('web')).SerialNumber).toBe(a.SerialNumber);
    t += 61_000;
    const b = await cache.get('web');
    expect(b.SerialNumber).not.toBe(a.SerialNumber);
    expect(b.ModifyIndex).toBeGreaterThan(a.ModifyIndex);
  });

  it('a blocking wait returns a new leaf right after a root rotation', async () => {
    const { ca } = await setup();
    const cache = new LeafCache(ca);
    const a = await cache.get('web');
    const waiting = cache.wait('web', 'default', a.ModifyIndex, 10_000);
    await new Promise((r) => setTimeout(r, 50));
    await ca.rotate(actor);
    const b = await waiting;
    expect(b.ModifyIndex).toBeGreaterThan(a.ModifyIndex);
    expect(b.SerialNumber).not.toBe(a.SerialNumber);
  });

  it('lists roots and the configuration with their indexes; a roots watch does not move on a configuration change', async () => {
    const { ca } = await setup();
    expect(ca.configIndexes()).toEqual({ CreateIndex: 0, ModifyIndex: 0 });
    const roots = ca.watch('roots');
    const [root] = ca.indexedRoots();
    expect(root.ID).toBe(ca.activeRoot()!.ID);
    expect(root.ModifyIndex).toBe(roots.index());
    let changes = 0;
    ca.onChange(() => void changes++);
    const before = roots.index();
    const waiting = ca.waitForChange(ca.index(), 5000);
    await ca.setConfig({ LeafCertTTL: 3_600_000 }, actor);
    const cfg = ca.configIndexes();
    expect(cfg.ModifyIndex).toBeGreaterThan(before);
    expect([await waiting, ca.index(), ca.watch('config').index(), roots.index(), changes]).toEqual([
      cfg.ModifyIndex,
      cfg.ModifyIndex,
      cfg.ModifyIndex,
      before,
      1,
    ]);
  });
});
