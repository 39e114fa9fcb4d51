import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createRoot, inspect, newKeyPem, signCa, signLeaf } from './x509.js';

describe('x509 primitives', () => {
  it('builds root -> intermediate -> leaf that Node verifies, with the SPIFFE SAN', async () => {
    const td = '11111111-2222-3333-4444-555555555555.isthmus';
    const root = await createRoot({ trustDomain: td, commonName: 'Isthmus Root CA 1', ttlMs: 3600_000 });
    const interKey = await newKeyPem();
    const inter = await signCa({ signer: root, subjectKeyPem: interKey, commonName: 'Isthmus dc1 CA', trustDomain: td, ttlMs: 3600_000, pathLength: 0 });
    const leaf = await signLeaf({
      signer: { certPem: inter.certPem, keyPem: interKey },
      spiffeId: `spiffe://${td}/ns/default/dc/dc1/svc/web`,
      dnsNames: ['web.svc.default.dc1'],
      commonName: 'web',
      ttlMs: 600_000,
    });

    const r = new X509Certificate(root.certPem);
    const i = new X509Certificate(inter.certPem);
    const l = new X509Certificate(leaf.certPem);
    expect(i.verify(r.publicKey)).toBe(true);
    expect(l.verify(i.publicKey)).toBe(true);
    expect(l.verify(r.publicKey)).toBe(false);
    expect(l.checkPrivateKey(await import('node:crypto').then((c) => c.createPrivateKey(leaf.keyPem)))).toBe(true);
    const info = inspect(leaf.certPem);
    expect(info.uris).toEqual([`spiffe://${td}/ns/default/dc/dc1/svc/web`]);
    expect(info.dnsNames).toEqual(['web.svc.default.dc1']);
    expect(info.isCa).toBe(false);
    expect(inspect(inter.certPem).isCa).toBe(true);
    expect(info.notAfter.getTime() - Date.now()).toBeLessThanOrEqual(600_000);
    expect(info.notAfter.getTime() - Date.now()).toBeGreaterThan(590_000);
  });

  it('cross-signs a new root with the old one so either chain verifies', async () => {
    const td = 'x.isthmus';
    const oldRoot = await createRoot({ trustDomain: td, commonName: 'Root 1', ttlMs: 3600_000 });
    const newRoot = await createRoot({ trustDomain: td, commonName: 'Root 2', ttlMs: 3600_000 });
    const cross = await signCa({ signer: oldRoot, subjectKeyPem: newRoot.keyPem, commonName: 'Root 2', trustDomain: td, ttlMs: 3600_000 });
    const c = new X509Certificate(cross.certPem);
    expect(c.verify(new X509Certificate(oldRoot.certPem).publicKey)).toBe(true);
    expect(c.publicKey.export({ type: 'spki', format: 'der' })).toEqual(new X509Certificate(newRoot.certPem).publicKey.export({ type: 'spki', format: 'der' }));
  });
});
