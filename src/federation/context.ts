// What every part of federation shares: this DC's place in the federation, the store and domains it
// works through, its log, and whether the server is stopping.
import type { Registry } from 'prom-client';
import type { Catalog } from '../catalog/index.js';
import type { ConfigEntries } from '../config-entries/index.js';
import type { CertificateAuthority } from '../ca/index.js';
import type { Store } from '../store/index.js';
import { silentLogger, type Logger } from '../telemetry/index.js';
import type { JoinToken } from './join-token.js';

export interface FederationOptions {
  store: Store;
  catalog: Catalog;
  ca: CertificateAuthority;
  dc: string;
  primaryDc: string;
  trustDomain: () => string;
  /** Where the federation listener binds (port 0: any). */
  host: string;
  port: number;
  /** The join token a secondary starts with (ignored once it has joined). */
  joinToken?: JoinToken;
  version: string;
  logger?: Logger;
  registry?: Registry;
  /** Heartbeat period on every link; a link silent for three of them is dropped and redialed. */
  heartbeatMs?: number;
  /** The replicated config entries: the resolvers whose subsets the export counts healthy instances of. */
  configEntries?: ConfigEntries;
}

export class FederationContext {
  readonly store: Store;
  readonly catalog: Catalog;
  readonly ca: CertificateAuthority;
  readonly dc: string;
  readonly primaryDc: string;
  readonly isPrimary: boolean;
  readonly version: string;
  readonly log: Logger;
  readonly joinToken: JoinToken | undefined;
  heartbeatMs: number;
  /** Set once the server stops: loops end, waiters return. */
  stopped = false;

  constructor(readonly opts: FederationOptions) {
    this.store = opts.store;
    this.catalog = opts.catalog;
    this.ca = opts.ca;
    this.dc = opts.dc;
    this.primaryDc = opts.primaryDc;
    this.isPrimary = opts.dc === opts.primaryDc;
    this.version = opts.version;
    this.joinToken = opts.joinToken;
    this.log = (opts.logger ?? silentLogger).child({ component: 'federation' });
    this.heartbeatMs = opts.heartbeatMs ?? 5000;
  }

  trustDomain(): string {
    return this.opts.trustDomain();
  }
}
