// The DC's certificate authority: the root (made by the primary), this DC's intermediate, leaves,
// root rotation with cross-signing, intermediate renewal at half-life, and the trust bundle that
// sidecars and gateways subscribe to.
import { ErrorCodes, IsthmusError, invalid } from '../core/errors.js';
import { auditOp, type Actor } from '../core/audit.js';
import type { Component } from '../core/lifecycle.js';
import { serverSni, serverSpiffeId, serviceDnsName, serviceSpiffeId } from '../core/names.js';
import { TableWatch } from '../core/table-watch.js';
import type { Store, StoreOp } from '../store/index.js';
import { silentLogger, type Logger } from '../telemetry/index.js';
import {
  CA_CONFIG,
  CA_INTERMEDIATES,
  CA_ROOTS,
  CA_SECRETS,
  DEFAULT_CA_CONFIG,
  intermediateCommonName,
  type CaConfig,
  type CaIntermediate,
  type CaRoot,
  type TrustBundle,
} from './model.js';
import { createRoot, inspect, newKeyPem, publicKeyPemOf, signCa, signLeaf, type IssuedCert } from './x509.js';

export interface AuthorityOptions {
  store: Store;
  dc: string;
  /** The primary makes and rotates the root; a secondary gets its intermediate signed by the primary. */
  primary: boolean;
  trustDomain: () => string;
  logger?: Logger;
  now?: () => number;
  /** How often the leader checks for renewals and retirements. */
  tickMs?: number;
  /**
   * Signs this DC's intermediate key when the root is elsewhere (a secondary, through federation).
   * Without it a secondary waits for one.
   */
  signRemote?: (dc: string, publicKeyPem: string) => Promise<{ certPem: string; rootId: string }>;
}

/** The parts of the CA's state a blocking read or a push can follow. */
export type CaPart = 'roots' | 'intermediates' | 'config';
const PART_TABLE: Record<CaPart, string> = { roots: CA_ROOTS, intermediates: CA_INTERMEDIATES, config: CA_CONFIG };

export class CertificateAuthority implements Component {
  readonly name = 'ca';
  private timer: NodeJS.Timeout | undefined;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly listeners = new Set<(bundle: TrustBundle) => void>();
  private unsubscribe: (() => void) | undefined;
  private tokens = 0;
  private lastRefill = 0;
  private ticking: Promise<void> | undefined;
  private readonly whole: TableWatch;

  constructor(private readonly opts: AuthorityOptions) {
    this.whole = new TableWatch(opts.store, Object.values(PART_TABLE));
    this.log = (opts.logger ?? silentLogger).child({ component: 'ca' });
    this.now = opts.now ?? Date.now;
  }

  async start(): Promise<void> {
    this.unsubscribe = this.opts.store.subscribe((changes) => {
      if (changes.some((c) => c.table === CA_ROOTS || c.table === CA_INTERMEDIATES)) this.emit();
    });
    await this.tick();
    this.timer = setInterval(() => void this.tick(), this.opts.tickMs ?? 10_000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.unsubscribe?.();
    await this.ticking;
  }

  config(): CaConfig {
    return { ...DEFAULT_CA_CONFIG, ...(this.opts.store.get<CaConfig>(CA_CONFIG, 'config')?.value ?? {}) };
  }

  async setConfig(patch: Partial<CaConfig>, actor: Actor): Promise<CaConfig> {
    // The configuration replicates from the primary; a local write here would be overwritten there
    // and differ until then. The API forwards such writes; anything else that gets here is refused.
    if (!this.opts.primary) {
      throw new IsthmusError(ErrorCodes.PRIMARY_UNREACHABLE, `CA configuration is written in the primary datacenter, not in ${this.opts.dc}; nothing was changed`);
    }
    const violations = [];
    const min = (f: keyof CaConfig, v: number | undefined, least: number, what: string) => {
      if (v !== undefined && (!Number.isFinite(v) || v < least)) violations.push({ Field: f, Message: `must be at least ${what}` });
    };
    min('LeafCertTTL', patch.LeafCertTTL, 60_000, '1m');
    min('IntermediateCertTTL', patch.IntermediateCertTTL, 3_600_000, '1h');
    min('RootCertTTL', patch.RootCertTTL, 3_600_000, '1h');
    min('CsrMaxPerSecond', patch.CsrMaxPerSecond, 0, '0');
    const next = { ...this.config(), ...patch };
    if (next.LeafCertTTL * 2 > next.IntermediateCertTTL) violations.push({ Field: 'LeafCertTTL', Message: 'must be at most half of IntermediateCertTTL' });
    if (violations.length) throw invalid(violations);
    const before = this.opts.store.get<CaConfig>(CA_CONFIG, 'config');
    await this.opts.store.commit([
      { op: 'put', table: CA_CONFIG, key: 'config', value: next, ifIndex: before?.modifyIndex ?? 0 },
      auditOp(actor, { Kind: 'ca-config', Action: before ? 'update' : 'create', Subject: 'ca configuration', Before: before?.value, After: next }),
    ]);
    return next;
  }

  /** The indexes of the configuration's last write (0 while it is the default). */
  configIndexes(): { CreateIndex: number; ModifyIndex: number } {
    const e = this.opts.store.get<CaConfig>(CA_CONFIG, 'config');
    return { CreateIndex: e?.createIndex ?? 0, ModifyIndex: e?.modifyIndex ?? 0 };
  }

  roots(): CaRoot[] {
    return this.opts.store.list<CaRoot>(CA_ROOTS).map((e) => e.value);
  }

  /** The roots with the indexes of their last write, as Consul lists them. */
  indexedRoots(): (CaRoot & { CreateIndex: number; ModifyIndex: number })[] {
    return this.opts.store.list<CaRoot>(CA_ROOTS).map((e) => ({ ...e.value, CreateIndex: e.createIndex, ModifyIndex: e.modifyIndex }));
  }

  activeRoot(): CaRoot | undefined {
    return this.roots().find((r) => r.Active);
  }

  intermediate(): CaIntermediate | undefined {
    return this.opts.store.get<CaIntermediate>(CA_INTERMEDIATES, this.opts.dc)?.value;
  }

  /** Index that moves whenever the trust bundle, this DC's chain or the configuration changes. */
  index(): number {
    return this.whole.index();
  }

  /** Blocks until roots, intermediates or configuration change past `afterIndex` (or the timeout, or the signal); resolves with index(). */
  waitForChange(afterIndex: number, timeoutMs: number, signal?: AbortSignal): Promise<number> {
    return this.whole.waitForChange(afterIndex, timeoutMs, signal);
  }

  /** Called after every batch of changes to roots, intermediates or configuration; returns the unsubscribe. */
  onChange(listener: () => void): () => void {
    return this.whole.onChange(listener);
  }

  /** Some parts only: a blocking read of the roots does not wake on a configuration change. */
  watch(...parts: CaPart[]): TableWatch {
    return new TableWatch(this.opts.store, parts.map((p) => PART_TABLE[p]));
  }

  bundle(): TrustBundle {
    const roots = this.roots();
    const active = roots.find((r) => r.Active);
    const inter = this.intermediate();
    return {
      trustDomain: this.opts.trustDomain(),
      activeRootId: active?.ID ?? '',
      roots: roots.map((r) => r.RootCert),
      chain: [...(inter ? [inter.CertPEM] : []), ...(active?.IntermediateCerts ?? [])],
      index: this.index(),
    };
  }

  /** Subscribe to trust bundle changes (rotation, renewal); returns the unsubscribe function. */
  onBundle(listener: (bundle: TrustBundle) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Signs a leaf for a service identity with this DC's intermediate. */
  async issueLeaf(service: string, namespace = 'default', dc = this.opts.dc): Promise<IssuedCert & { spiffeId: string; chain: string[] }> {
    this.takeToken();
    const inter = this.intermediate();
    // The chain is read with the intermediate that signs, so a leaf never travels with another's chain.
    const chain = [...(inter ? [inter.CertPEM] : []), ...(this.activeRoot()?.IntermediateCerts ?? [])];
    if (!inter) throw new IsthmusError(ErrorCodes.UNAVAILABLE, `datacenter ${this.opts.dc} has no intermediate CA yet`);
    const keyPem = this.opts.store.get<string>(CA_SECRETS, inter.KeyRef)?.value;
    if (!keyPem) throw new IsthmusError(ErrorCodes.UNAVAILABLE, 'the intermediate CA key is missing');
    const td = this.opts.trustDomain();
    const id = { trustDomain: td, namespace, dc, service };
    const spiffeId = serviceSpiffeId(id);
    const leaf = await signLeaf({
      signer: { certPem: inter.CertPEM, keyPem },
      spiffeId,
      dnsNames: [serviceDnsName(id)],
      commonName: service,
      ttlMs: this.config().LeafCertTTL,
      now: this.now(),
    });
    return { ...leaf, spiffeId, chain };
  }

  /** Makes a new root, cross-signed by the old one; the old root stays trusted until its last leaf expires. */
  async rotate(actor: Actor): Promise<CaRoot> {
    if (!this.opts.primary) {
      throw new IsthmusError(ErrorCodes.PRIMARY_UNREACHABLE, 'root rotation is done in the primary datacenter');
    }
    const old = this.activeRoot();
    const root = await this.makeRoot(old);
    const ops: StoreOp[] = [];
    if (old) {
      const entry = this.opts.store.get<CaRoot>(CA_ROOTS, old.ID)!;
      const retireAfter = new Date(this.now() + this.config().LeafCertTTL + 2 * 60_000).toISOString();
      ops.push({ op: 'put', table: CA_ROOTS, key: old.ID, value: { ...old, Active: false, RetireAfter: retireAfter }, ifIndex: entry.modifyIndex });
    }
    ops.push({ op: 'put', table: CA_ROOTS, key: root.root.ID, value: root.root, ifIndex: 0 });
    ops.push({ op: 'put', table: CA_SECRETS, key: `root/${root.root.ID}`, value: root.keyPem });
    ops.push(auditOp(actor, { Kind: 'ca-root', Action: 'create', Subject: `root ${root.root.ID}`, Before: old ? { ID: old.ID } : undefined, After: { ID: root.root.ID } }));
    await this.opts.store.commit(ops);
    this.log.info('root rotated', { old: old?.ID, new: root.root.ID });
    await this.ensureIntermediate(true);
    return root.root;
  }

  /** The leader's periodic work: a root at first start, intermediate renewal, retiring old roots. */
  async tick(): Promise<void> {
    if (this.ticking) return this.ticking;
    this.ticking = (async () => {
      try {
        if (!this.opts.store.isLeader()) return;
        if (this.opts.primary && !this.activeRoot()) await this.firstRoot();
        await this.ensureIntermediate(false);
        // Roots leave a secondary's bundle when the primary's retirement replicates, never by a local write.
        if (this.opts.primary) await this.retireRoots();
      } catch (err) {
        this.log.warn('CA maintenance failed; will retry', { error: err });
      } finally {
        this.ticking = undefined;
      }
    })();
    return this.ticking;
  }

  private async firstRoot(): Promise<void> {
    const made = await this.makeRoot(undefined);
    try {
      await this.opts.store.commit([
        { op: 'put', table: CA_ROOTS, key: made.root.ID, value: made.root, ifIndex: 0 },
        { op: 'put', table: CA_SECRETS, key: `root/${made.root.ID}`, value: made.keyPem },
      ]);
      this.log.info('root CA created', { id: made.root.ID, trustDomain: made.root.TrustDomain });
    } catch (err) {
      if (!(err instanceof IsthmusError && err.code === ErrorCodes.CONFLICT)) throw err;
    }
  }

  private async makeRoot(previous: CaRoot | undefined): Promise<{ root: CaRoot; keyPem: string }> {
    const td = this.opts.trustDomain();
    const gen = this.roots().length + 1;
    const name = `Isthmus CA Primary Cert ${gen}`;
    const issued = await createRoot({ trustDomain: td, commonName: name, ttlMs: this.config().RootCertTTL });
    const cross: string[] = [];
    if (previous) {
      const prevKey = this.opts.store.get<string>(CA_SECRETS, `root/${previous.ID}`)?.value;
      if (prevKey) {
        const c = await signCa({ signer: { certPem: previous.RootCert, keyPem: prevKey }, subjectKeyPem: issued.keyPem, commonName: name, trustDomain: td, ttlMs: this.config().RootCertTTL });
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

  /** Keeps this DC's intermediate signed by the active root and renews it at half its life. */
  private async ensureIntermediate(force: boolean): Promise<void> {
    const active = this.activeRoot();
    if (!active) return;
    const current = this.opts.store.get<CaIntermediate>(CA_INTERMEDIATES, this.opts.dc);
    if (current && !force) {
      const nb = Date.parse(current.value.NotBefore);
      const na = Date.parse(current.value.NotAfter);
      const halfLife = nb + (na - nb) / 2;
      if (current.value.RootID === active.ID && this.now() < halfLife) return;
    }
    const keyPem = await newKeyPem();
    let certPem: string;
    let rootId = active.ID;
    if (this.opts.primary) {
      const rootKey = this.opts.store.get<string>(CA_SECRETS, `root/${active.ID}`)?.value;
      if (!rootKey) throw new IsthmusError(ErrorCodes.UNAVAILABLE, 'the root CA key is missing');
      const signed = await signCa({
        signer: { certPem: active.RootCert, keyPem: rootKey },
        subjectKeyPem: keyPem,
        commonName: intermediateCommonName(this.opts.dc),
        trustDomain: this.opts.trustDomain(),
        ttlMs: this.config().IntermediateCertTTL,
        pathLength: 0,
      });
      certPem = signed.certPem;
    } else if (this.opts.signRemote) {
      // Only the public key leaves this DC; the primary signs it.
      const signed = await this.opts.signRemote(this.opts.dc, await publicKeyPemOf(keyPem));
      certPem = signed.certPem;
      rootId = signed.rootId;
    } else {
      return;
    }
    await this.opts.store.commit(this.intermediateOps(certPem, keyPem, rootId, current?.modifyIndex ?? 0));
    this.log.info('intermediate CA issued', { dc: this.opts.dc, root: rootId });
  }

  private intermediateOps(certPem: string, keyPem: string, rootId: string, ifIndex: number): StoreOp[] {
    const info = inspect(certPem);
    const keyRef = `intermediate/${this.opts.dc}/${info.serialNumber}`;
    const value: CaIntermediate = {
      DC: this.opts.dc,
      RootID: rootId,
      CertPEM: certPem,
      SerialNumber: info.serialNumber,
      NotBefore: info.notBefore.toISOString(),
      NotAfter: info.notAfter.toISOString(),
      KeyRef: keyRef,
    };
    return [
      { op: 'put', table: CA_SECRETS, key: keyRef, value: keyPem },
      { op: 'put', table: CA_INTERMEDIATES, key: this.opts.dc, value, ifIndex },
    ];
  }

  /**
   * A secondary joining: the roots the primary sent and the intermediate it signed for this DC's
   * key, installed in one commit (with whatever else the joiner commits beside them).
   */
  joinOps(roots: CaRoot[], intermediateCertPem: string, keyPem: string, rootId: string): StoreOp[] {
    const current = this.opts.store.get<CaIntermediate>(CA_INTERMEDIATES, this.opts.dc);
    return [
      ...roots.map((r) => ({ op: 'put' as const, table: CA_ROOTS, key: r.ID, value: r })),
      ...this.intermediateOps(intermediateCertPem, keyPem, rootId, current?.modifyIndex ?? 0),
    ];
  }

  /** Signs another DC's intermediate (its public key) with the active root: the primary's part of a join or a renewal. */
  async signIntermediateFor(dc: string, publicKeyPem: string): Promise<{ certPem: string; rootId: string }> {
    if (!this.opts.primary) throw new IsthmusError(ErrorCodes.PRIMARY_UNREACHABLE, 'intermediates are signed in the primary datacenter');
    const active = this.activeRoot();
    if (!active) throw new IsthmusError(ErrorCodes.UNAVAILABLE, 'the primary has no root CA yet');
    const rootKey = this.opts.store.get<string>(CA_SECRETS, `root/${active.ID}`)?.value;
    if (!rootKey) throw new IsthmusError(ErrorCodes.UNAVAILABLE, 'the root CA key is missing');
    const signed = await signCa({
      signer: { certPem: active.RootCert, keyPem: rootKey },
      subjectPublicKeyPem: publicKeyPem,
      commonName: intermediateCommonName(dc),
      trustDomain: this.opts.trustDomain(),
      ttlMs: this.config().IntermediateCertTTL,
      pathLength: 0,
    });
    this.log.info('intermediate signed for another datacenter', { dc, root: active.ID });
    return { certPem: signed.certPem, rootId: active.ID };
  }

  /** This DC's server identity (spiffe://<td>/agent/server/dc/<dc>), for federation mTLS. */
  async issueServerCert(): Promise<{ certPem: string; keyPem: string; chain: string[]; notBefore: Date; notAfter: Date }> {
    const inter = this.intermediate();
    if (!inter) throw new IsthmusError(ErrorCodes.UNAVAILABLE, `datacenter ${this.opts.dc} has no intermediate CA yet`);
    const keyPem = this.opts.store.get<string>(CA_SECRETS, inter.KeyRef)?.value;
    if (!keyPem) throw new IsthmusError(ErrorCodes.UNAVAILABLE, 'the intermediate CA key is missing');
    const td = this.opts.trustDomain();
    const chain = [inter.CertPEM, ...(this.activeRoot()?.IntermediateCerts ?? [])];
    const leaf = await signLeaf({
      signer: { certPem: inter.CertPEM, keyPem },
      spiffeId: serverSpiffeId({ trustDomain: td, dc: this.opts.dc }),
      dnsNames: [serverSni({ dc: this.opts.dc, trustDomain: td })],
      commonName: `server.${this.opts.dc}`,
      ttlMs: Math.min(this.config().LeafCertTTL, 72 * 3_600_000),
      now: this.now(),
    });
    return { certPem: leaf.certPem, keyPem: leaf.keyPem, chain, notBefore: leaf.notBefore, notAfter: leaf.notAfter };
  }

  private async retireRoots(): Promise<void> {
    const now = this.now();
    for (const e of this.opts.store.list<CaRoot>(CA_ROOTS)) {
      const r = e.value;
      if (r.Active || !r.RetireAfter || Date.parse(r.RetireAfter) > now) continue;
      await this.opts.store.commit([
        { op: 'delete', table: CA_ROOTS, key: r.ID, ifIndex: e.modifyIndex },
        { op: 'delete', table: CA_SECRETS, key: `root/${r.ID}` },
      ]);
      this.log.info('old root retired from the trust bundle', { id: r.ID });
    }
  }

  private takeToken(): void {
    const rate = this.config().CsrMaxPerSecond;
    if (rate <= 0) return;
    const now = this.now();
    this.tokens = Math.min(rate, this.tokens + ((now - this.lastRefill) / 1000) * rate);
    if (this.lastRefill === 0) this.tokens = rate;
    this.lastRefill = now;
    if (this.tokens < 1) throw new IsthmusError(ErrorCodes.RATE_LIMITED, `leaf signing is limited to ${rate} per second in this datacenter; retry shortly`);
    this.tokens -= 1;
  }

  private emit(): void {
    if (this.listeners.size === 0) return;
    const b = this.bundle();
    for (const l of this.listeners) {
      try {
        l(b);
      } catch (err) {
        this.log.warn('trust bundle listener failed', { error: err });
      }
    }
  }
}

function formatKeyId(hex: string): string {
  return hex.slice(0, 40).match(/../g)!.join(':');
}
