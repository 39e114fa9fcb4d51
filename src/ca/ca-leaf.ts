// Leaves signed with this DC's intermediate: service identities (rate limited as CsrMaxPerSecond
// says) and this DC's server identity for federation mTLS.
import { ErrorCodes, IsthmusError } from '../core/errors.js';
import { serverSni, serverSpiffeId, serviceDnsName, serviceSpiffeId } from '../core/names.js';
import type { CaContext } from './ca-context.js';
import { CA_SECRETS } from './model.js';
import { signLeaf, type IssuedCert } from './x509.js';

export class LeafSigner {
  private tokens = 0;
  private lastRefill = 0;

  constructor(private readonly ctx: CaContext) {}

  /** Signs a leaf for a service identity with this DC's intermediate. */
  async issueLeaf(service: string, namespace = 'default', dc = this.ctx.opts.dc): Promise<IssuedCert & { spiffeId: string; chain: string[] }> {
    this.takeToken();
    const inter = this.ctx.intermediate();
    // The chain is read with the intermediate that signs, so a leaf never travels with another's chain.
    const chain = [...(inter ? [inter.CertPEM] : []), ...(this.ctx.activeRoot()?.IntermediateCerts ?? [])];
    if (!inter) throw new IsthmusError(ErrorCodes.UNAVAILABLE, `datacenter ${this.ctx.opts.dc} has no intermediate CA yet`);
    const keyPem = this.ctx.opts.store.get<string>(CA_SECRETS, inter.KeyRef)?.value;
    if (!keyPem) throw new IsthmusError(ErrorCodes.UNAVAILABLE, 'the intermediate CA key is missing');
    const td = this.ctx.opts.trustDomain();
    const id = { trustDomain: td, namespace, dc, service };
    const spiffeId = serviceSpiffeId(id);
    const leaf = await signLeaf({
      signer: { certPem: inter.CertPEM, keyPem },
      spiffeId,
      dnsNames: [serviceDnsName(id)],
      commonName: service,
      ttlMs: this.ctx.config().LeafCertTTL,
      now: this.ctx.now(),
    });
    return { ...leaf, spiffeId, chain };
  }

  /** This DC's server identity (spiffe://<td>/agent/server/dc/<dc>), for federation mTLS. */
  async issueServerCert(): Promise<{ certPem: string; keyPem: string; chain: string[]; notBefore: Date; notAfter: Date }> {
    const inter = this.ctx.intermediate();
    if (!inter) throw new IsthmusError(ErrorCodes.UNAVAILABLE, `datacenter ${this.ctx.opts.dc} has no intermediate CA yet`);
    const keyPem = this.ctx.opts.store.get<string>(CA_SECRETS, inter.KeyRef)?.value;
    if (!keyPem) throw new IsthmusError(ErrorCodes.UNAVAILABLE, 'the intermediate CA key is missing');
    const td = this.ctx.opts.trustDomain();
    const chain = [inter.CertPEM, ...(this.ctx.activeRoot()?.IntermediateCerts ?? [])];
    const leaf = await signLeaf({
      signer: { certPem: inter.CertPEM, keyPem },
      spiffeId: serverSpiffeId({ trustDomain: td, dc: this.ctx.opts.dc }),
      dnsNames: [serverSni({ dc: this.ctx.opts.dc, trustDomain: td })],
      commonName: `server.${this.ctx.opts.dc}`,
      ttlMs: Math.min(this.ctx.config().LeafCertTTL, 72 * 3_600_000),
      now: this.ctx.now(),
    });
    return { certPem: leaf.certPem, keyPem: leaf.keyPem, chain, notBefore: leaf.notBefore, notAfter: leaf.notAfter };
  }

  private takeToken(): void {
    const rate = this.ctx.config().CsrMaxPerSecond;
    if (rate <= 0) return;
    const now = this.ctx.now();
    this.tokens = Math.min(rate, this.tokens + ((now - this.lastRefill) / 1000) * rate);
    if (this.lastRefill === 0) this.tokens = rate;
    this.lastRefill = now;
    if (this.tokens < 1) throw new IsthmusError(ErrorCodes.RATE_LIMITED, `leaf signing is limited to ${rate} per second in this datacenter; retry shortly`);
    this.tokens -= 1;
  }
}
