// The root CA's life: the first root of the primary, a new root cross-signed by the old one, and
// retiring old roots from the trust bundle once their last leaf has expired.
import { ErrorCodes, IsthmusError } from '../core/errors.js';
import type { CaContext } from './ca-context.js';
import { CA_ROOTS, CA_SECRETS, type CaRoot } from './model.js';
import { createRoot, signCa } from './x509.js';

export async function firstRoot(ctx: CaContext): Promise<void> {
  const made = await makeRoot(ctx, undefined);
  try {
    await ctx.opts.store.commit([
      { op: 'put', table: CA_ROOTS, key: made.root.ID, value: made.root, ifIndex: 0 },
      { op: 'put', table: CA_SECRETS, key: `root/${made.root.ID}`, value: made.keyPem },
    ]);
    ctx.log.info('root CA created', { id: made.root.ID, trustDomain: made.root.TrustDomain });
  } catch (err) {
    if (!(err instanceof IsthmusError && err.code === ErrorCodes.CONFLICT)) throw err;
  }
}

export async function makeRoot(ctx: CaContext, previous: CaRoot | undefined): Promise<{ root: CaRoot; keyPem: string }> {
  const td = ctx.opts.trustDomain();
  const gen = ctx.roots().length + 1;
  const name = `Isthmus CA Primary Cert ${gen}`;
  const issued = await createRoot({ trustDomain: td, commonName: name, ttlMs: ctx.config().RootCertTTL });
  const cross: string[] = [];
  if (previous) {
    const prevKey = ctx.opts.store.get<string>(CA_SECRETS, `root/${previous.ID}`)?.value;
    if (prevKey) {
      const c = await signCa({
        signer: { certPem: previous.RootCert, keyPem: prevKey },
        subjectKeyPem: issued.keyPem,
        commonName: name,
        trustDomain: td,
        ttlMs: ctx.config().RootCertTTL,
      });
      cross.push(c.certPem);
    }
  }
  const id = formatKeyId(issued.keyId);
  return {
    keyPem: issued.keyPem,
    root: {
      ID: id,
      Name: name,
      SerialNumber: issued.serialNumber,
      SigningKeyID: id,
      NotBefore: issued.notBefore.toISOString(),
      NotAfter: issued.notAfter.toISOString(),
      RootCert: issued.certPem,
      IntermediateCerts: cross,
      Active: true,
      TrustDomain: td,
      PrivateKeyType: 'ec',
      PrivateKeyBits: 256,
    },
  };
}

export async function retireRoots(ctx: CaContext): Promise<void> {
  const now = ctx.now();
  for (const e of ctx.opts.store.list<CaRoot>(CA_ROOTS)) {
    const r = e.value;
    if (r.Active || !r.RetireAfter || Date.parse(r.RetireAfter) > now) continue;
    await ctx.opts.store.commit([
      { op: 'delete', table: CA_ROOTS, key: r.ID, ifIndex: e.modifyIndex },
      { op: 'delete', table: CA_SECRETS, key: `root/${r.ID}` },
    ]);
    ctx.log.info('old root retired from the trust bundle', { id: r.ID });
  }
}

function formatKeyId(hex: string): string {
  return hex.slice(0, 40).match(/../g)!.join(':');
}
