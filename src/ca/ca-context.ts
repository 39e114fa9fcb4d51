// What the parts of the CA share: its options, log and clock, and the reads of its configuration,
// roots and this DC's intermediate.
import type { Store } from '../store/index.js';
import type { Logger } from '../telemetry/index.js';
import type { CaConfig, CaIntermediate, CaRoot } from './model.js';

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

export interface CaContext {
  readonly opts: AuthorityOptions;
  readonly log: Logger;
  readonly now: () => number;
  config(): CaConfig;
  roots(): CaRoot[];
  activeRoot(): CaRoot | undefined;
  intermediate(): CaIntermediate | undefined;
}
