// The DC's certificate authority: the root (made by the primary), this DC's intermediate, leaves,
// root rotation with cross-signing, intermediate renewal at half-life, and the trust bundle that
// sidecars and gateways subscribe to.
// This class is the CA's face: configuration, reads and the maintenance tick here; roots in
// ca-roots.ts, this DC's intermediate in ca-intermediate.ts, leaves in ca-leaf.ts.
import { ErrorCodes, IsthmusError, invalid } from '../core/errors.js';
import { auditOp, type Actor } from '../core/audit.js';
import type { Component } from '../core/lifecycle.js';
import { OwnedTables } from '../core/table-watch.js';
import type { StoreOp } from '../store/index.js';
import { silentLogger, type Logger } from '../telemetry/index.js';
import type { AuthorityOptions, CaContext } from './ca-context.js';
import { ensureIntermediate, intermediateOps, signIntermediateFor } from './ca-intermediate.js';
import { LeafSigner } from './ca-leaf.js';
import { firstRoot, makeRoot, retireRoots } from './ca-roots.js';
import {
  CA_CONFIG,
  CA_INTERMEDIATES,
  CA_ROOTS,
  CA_SECRETS,
  DEFAULT_CA_CONFIG,
  type CaConfig,
  type CaIntermediate,
  type CaRoot,
  type TrustBundle,
} from './model.js';
import type { IssuedCert } from './x509.js';

export type { AuthorityOptions } from './ca-context.js';

/** The parts of the CA's state a blocking read or a push can follow. */
export type CaPart = 'roots' | 'intermediates' | 'config';
const PART_TABLE: Record<CaPart, string> = { roots: CA_ROOTS, intermediates: CA_INTERMEDIATES, config: CA_CONFIG };

export class CertificateAuthority extends OwnedTables<CaPart> implements Component {
  readonly name = 'ca';
  private timer: NodeJS.Timeout | undefined;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly listeners = new Set<(bundle: TrustBundle) => void>();
  private unsubscribe: (() => void) | undefined;
  private readonly ctx: CaContext;
  private readonly leaves: LeafSigner;
  private ticking: Promise<void> | undefined;

  constructor(private readonly opts: AuthorityOptions) {
    super(opts.store, PART_TABLE);
    this.log = (opts.logger ?? silentLogger).child({ component: 'ca' });
    this.now = opts.now ?? Date.now;
    this.ctx = {
      opts,
      log: this.log,
      now: this.now,
      config: () => this.config(),
      roots: () => this.roots(),
      activeRoot: () => this.activeRoot(),
      intermediate: () => this.intermediate(),
    };
    this.leaves = new LeafSigner(this.ctx);
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
      throw new IsthmusError(
        ErrorCodes.PRIMARY_UNREACHABLE,
        `CA configuration is written in the primary datacenter, not in ${this.opts.dc}; nothing was changed`,
      );
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
  issueLeaf(service: string, namespace = 'default', dc = this.opts.dc): Promise<IssuedCert & { spiffeId: string; chain: string[] }> {
    return this.leaves.issueLeaf(service, namespace, dc);
  }

  /** Makes a new root, cross-signed by the old one; the old root stays trusted until its last leaf expires. */
  async rotate(actor: Actor): Promise<CaRoot> {
    if (!this.opts.primary) {
      throw new IsthmusError(ErrorCodes.PRIMARY_UNREACHABLE, 'root rotation is done in the primary datacenter');
    }
    const old = this.activeRoot();
    const root = await makeRoot(this.ctx, old);
    const ops: StoreOp[] = [];
    if (old) {
      const entry = this.opts.store.get<CaRoot>(CA_ROOTS, old.ID)!;
      const retireAfter = new Date(this.now() + this.config().LeafCertTTL + 2 * 60_000).toISOString();
      ops.push({ op: 'put', table: CA_ROOTS, key: old.ID, value: { ...old, Active: false, RetireAfter: retireAfter }, ifIndex: entry.modifyIndex });
    }
    ops.push({ op: 'put', table: CA_ROOTS, key: root.root.ID, value: root.root, ifIndex: 0 });
    ops.push({ op: 'put', table: CA_SECRETS, key: `root/${root.root.ID}`, value: root.keyPem });
    ops.push(
      auditOp(actor, {
        Kind: 'ca-root',
        Action: 'create',
        Subject: `root ${root.root.ID}`,
        Before: old ? { ID: old.ID } : undefined,
        After: { ID: root.root.ID },
      }),
    );
    await this.opts.store.commit(ops);
    this.log.info('root rotated', { old: old?.ID, new: root.root.ID });
    await ensureIntermediate(this.ctx, true);
    return root.root;
  }

  /** The leader's periodic work: a root at first start, intermediate renewal, retiring old roots. */
  async tick(): Promise<void> {
    if (this.ticking) return this.ticking;
    this.ticking = (async () => {
      try {
        if (!this.opts.store.isLeader()) return;
        if (this.opts.primary && !this.activeRoot()) await firstRoot(this.ctx);
        await ensureIntermediate(this.ctx, false);
        // Roots leave a secondary's bundle when the primary's retirement replicates, never by a local write.
        if (this.opts.primary) await retireRoots(this.ctx);
      } catch (err) {
        this.log.warn('CA maintenance failed; will retry', { error: err });
      } finally {
        this.ticking = undefined;
      }
    })();
    return this.ticking;
  }

  /**
   * A secondary joining: the roots the primary sent and the intermediate it signed for this DC's
   * key, installed in one commit (with whatever else the joiner commits beside them).
   */
  joinOps(roots: CaRoot[], intermediateCertPem: string, keyPem: string, rootId: string): StoreOp[] {
    const current = this.opts.store.get<CaIntermediate>(CA_INTERMEDIATES, this.opts.dc);
    return [
      ...roots.map((r) => ({ op: 'put' as const, table: CA_ROOTS, key: r.ID, value: r })),
      ...intermediateOps(this.ctx, intermediateCertPem, keyPem, rootId, current?.modifyIndex ?? 0),
    ];
  }

  /** Signs another DC's intermediate (its public key) with the active root: the primary's part of a join or a renewal. */
  signIntermediateFor(dc: string, publicKeyPem: string): Promise<{ certPem: string; rootId: string }> {
    return signIntermediateFor(this.ctx, dc, publicKeyPem);
  }

  /** This DC's server identity (spiffe://<td>/agent/server/dc/<dc>), for federation mTLS. */
  issueServerCert(): Promise<{ certPem: string; keyPem: string; chain: string[]; notBefore: Date; notAfter: Date }> {
    return this.leaves.issueServerCert();
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
