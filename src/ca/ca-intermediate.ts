// This DC's intermediate CA: kept signed by the active root and renewed at half its life (by the
// primary's root key, or through the primary for a secondary), and the primary signing another DC's.
import { ErrorCodes, IsthmusError } from '../core/errors.js';
import type { StoreOp } from '../store/index.js';
import type { CaContext } from './ca-context.js';
import { CA_INTERMEDIATES, CA_SECRETS, intermediateCommonName, type CaIntermediate } from './model.js';
import { inspect, newKeyPem, publicKeyPemOf, signCa } from './x509.js';

/** Keeps this DC's intermediate signed by the active root and renews it at half its life. */
export async function ensureIntermediate(ctx: CaContext, force: boolean): Promise<void> {
  const active = ctx.activeRoot();
  if (!active) return;
  const current = ctx.opts.store.get<CaIntermediate>(CA_INTERMEDIATES, ctx.opts.dc);
  if (current && !force) {
    const nb = Date.parse(current.value.NotBefore);
    const na = Date.parse(current.value.NotAfter);
    const halfLife = nb + (na - nb) / 2;
    if (current.value.RootID === active.ID && ctx.now() < halfLife) return;
  }
  const keyPem = await newKeyPem();
  let certPem: string;
  let rootId = active.ID;
  if (ctx.opts.primary) {
    const rootKey = ctx.opts.store.get<string>(CA_SECRETS, `root/${active.ID}`)?.value;
    if (!rootKey) throw new IsthmusError(ErrorCodes.UNAVAILABLE, 'the root CA key is missing');
    const signed = await signCa({
      signer: { certPem: active.RootCert, keyPem: rootKey },
      subjectKeyPem: keyPem,
      commonName: intermediateCommonName(ctx.opts.dc),
      trustDomain: ctx.opts.trustDomain(),
      ttlMs: ctx.config().IntermediateCertTTL,
      pathLength: 0,
    });
    certPem = signed.certPem;
  } else if (ctx.opts.signRemote) {
    // Only the public key leaves this DC; the primary signs it.
    const signed = await ctx.opts.signRemote(ctx.opts.dc, await publicKeyPemOf(keyPem));
    certPem = signed.certPem;
    rootId = signed.rootId;
  } else {
    return;
  }
  await ctx.opts.store.commit(intermediateOps(ctx, certPem, keyPem, rootId, current?.modifyIndex ?? 0));
  ctx.log.info('intermediate CA issued', { dc: ctx.opts.dc, root: rootId });
}

export function intermediateOps(ctx: CaContext, certPem: string, keyPem: string, rootId: string, ifIndex: number): StoreOp[] {
  const info = inspect(certPem);
  const keyRef = `intermediate/${ctx.opts.dc}/${info.serialNumber}`;
  const value: CaIntermediate = {
    DC: ctx.opts.dc,
    RootID: rootId,
    CertPEM: certPem,
    SerialNumber: info.serialNumber,
    NotBefore: info.notBefore.toISOString(),
    NotAfter: info.notAfter.toISOString(),
    KeyRef: keyRef,
  };
  return [
    { op: 'put', table: CA_SECRETS, key: keyRef, value: keyPem },
    { op: 'put', table: CA_INTERMEDIATES, key: ctx.opts.dc, value, ifIndex },
  ];
}

/** Signs another DC's intermediate (its public key) with the active root: the primary's part of a join or a renewal. */
export async function signIntermediateFor(ctx: CaContext, dc: string, publicKeyPem: string): Promise<{ certPem: string; rootId: string }> {
  if (!ctx.opts.primary) throw new IsthmusError(ErrorCodes.PRIMARY_UNREACHABLE, 'intermediates are signed in the primary datacenter');
  const active = ctx.activeRoot();
  if (!active) throw new IsthmusError(ErrorCodes.UNAVAILABLE, 'the primary has no root CA yet');
  const rootKey = ctx.opts.store.get<string>(CA_SECRETS, `root/${active.ID}`)?.value;
  if (!rootKey) throw new IsthmusError(ErrorCodes.UNAVAILABLE, 'the root CA key is missing');
  const signed = await signCa({
    signer: { certPem: active.RootCert, keyPem: rootKey },
    subjectPublicKeyPem: publicKeyPem,
    commonName: intermediateCommonName(dc),
    trustDomain: ctx.opts.trustDomain(),
    ttlMs: ctx.config().IntermediateCertTTL,
    pathLength: 0,
  });
  ctx.log.info('intermediate signed for another datacenter', { dc, root: active.ID });
  return { certPem: signed.certPem, rootId: active.ID };
}
