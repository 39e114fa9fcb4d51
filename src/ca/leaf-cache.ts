// Leaves per service, reused until half their life (or a CA change), with blocking reads that
// return when the leaf is renewed — what /v1/agent/connect/ca/leaf/:service serves.
import type { CertificateAuthority } from './authority.js';
import type { LeafCert } from './model.js';

interface Entry {
  leaf: LeafCert;
  renewAt: number;
  caIndex: number;
  pending?: Promise<LeafCert>;
}

export class LeafCache {
  private readonly entries = new Map<string, Entry>();
  private counter = 0;

  constructor(
    private readonly ca: CertificateAuthority,
    private readonly now: () => number = Date.now,
  ) {}

  /** The current leaf for a service, issuing one if none is valid (or it passed half-life, or the CA changed). */
  async get(service: string, namespace = 'default'): Promise<LeafCert> {
    const key = `${namespace}/${service}`;
    const e = this.entries.get(key);
    if (e && !this.stale(e)) return e.leaf;
    if (e?.pending) return e.pending;
    const pending = this.issue(service, namespace);
    if (e) e.pending = pending;
    try {
      return await pending;
    } finally {
      if (e) e.pending = undefined;
    }
  }

  /**
   * Blocks while the leaf's ModifyIndex is still `index`: until its renewal point, a CA change, the
   * timeout or an abort; then answers the current leaf.
   */
  async wait(service: string, namespace: string, index: number, timeoutMs: number, signal?: AbortSignal): Promise<LeafCert> {
    const deadline = this.now() + timeoutMs;
    let leaf = await this.get(service, namespace);
    while (leaf.ModifyIndex <= index && this.now() < deadline && !signal?.aborted) {
      const e = this.entries.get(`${namespace}/${service}`)!;
      const until = Math.min(deadline, e.renewAt) - this.now();
      // Wake on a CA change (rotation, new intermediate) or at the renewal point.
      await Promise.race([
        new Promise((r) => setTimeout(r, Math.max(0, until)).unref()),
        new Promise<void>((r) => {
          const off = this.ca.onBundle(() => {
            off();
            r();
          });
          setTimeout(
            () => {
              off();
              r();
            },
            Math.max(0, until),
          ).unref();
        }),
        new Promise<void>((r) => signal?.addEventListener('abort', () => r(), { once: true })),
      ]);
      leaf = await this.get(service, namespace);
    }
    return leaf;
  }

  private stale(e: Entry): boolean {
    return this.now() >= e.renewAt || this.ca.index() !== e.caIndex;
  }

  private async issue(service: string, namespace: string): Promise<LeafCert> {
    const caIndex = this.ca.index();
    const issued = await this.ca.issueLeaf(service, namespace);
    const index = Math.max(++this.counter, caIndex);
    this.counter = index;
    const leaf: LeafCert = {
      SerialNumber: issued.serialNumber,
      CertPEM: issued.certPem,
      PrivateKeyPEM: issued.keyPem,
      Service: service,
      ServiceURI: issued.spiffeId,
      ValidAfter: issued.notBefore.toISOString(),
      ValidBefore: issued.notAfter.toISOString(),
      CreateIndex: index,
      ModifyIndex: index,
      Chain: issued.chain,
    };
    const nb = this.now();
    const na = issued.notAfter.getTime();
    this.entries.set(`${namespace}/${service}`, { leaf, caIndex, renewAt: nb + (na - nb) / 2 });
    return leaf;
  }
}
