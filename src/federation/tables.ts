// The tables federation reads and writes, and which of them the primary replicates to every DC.

/** DCs of the federation as the primary knows them: `<dc>` -> Member. Written by the primary only. */
export const FED_MEMBERS = 'fed-members';
/** One-time join secrets (by SHA-256 of the secret) at the primary. Never replicated. */
export const FED_JOIN_TOKENS = 'fed-join-tokens';
/** This DC's own federation state: `join` (how it joined), `applied` (primary index applied here). */
export const FED_STATE = 'fed-state';
/** Other DCs' exported services, `<dc>/<ns>/<name>` -> ExportedService, as each DC sent them. */
export const FED_SERVICES = 'fed-services';
/** Other DCs' export headers, `<dc>` -> PeerExport (gateways, index, when). */
export const FED_PEERS = 'fed-peers';
/**
 * Primary: the replicated index each DC last acknowledged, `<dc>` -> AckState. Written by whichever
 * replica holds that DC's link, so that receipts read the same on every replica. Never replicated.
 */
export const FED_ACKS = 'fed-acks';

/**
 * Written at the primary, copied to every other DC by the peer stream, never written locally in a
 * secondary (a write there is forwarded to the primary). CA secrets and join secrets stay home.
 */
export const REPLICATED_TABLES: readonly string[] = [
  'intentions',
  'config-entries',
  'acl-policies',
  'acl-tokens',
  'acl-meta',
  'ca-roots',
  'ca-config',
  'audit',
  FED_MEMBERS,
];
export const REPLICATED = new Set(REPLICATED_TABLES);

export interface Member {
  Datacenter: string;
  JoinedAt: string;
  /** WAN addresses of its mesh gateways, as the primary last heard them. */
  Gateways: string[];
}

export interface JoinState {
  PrimaryDatacenter: string;
  TrustDomain: string;
  /** Where the join token said the primary can be reached (fallback when nothing newer is known). */
  Gateways: string[];
  Servers: string[];
  JoinedAt: string;
}

export interface AckState {
  /** The highest replicated index this DC acknowledged. */
  Index: number;
  /** When that acknowledgement arrived (ms since the epoch). */
  At: number;
}

export interface AppliedState {
  /** The primary's store index applied here. */
  Index: number;
  At: string;
}

export interface ExportedService {
  Name: string;
  Namespace: string;
  Instances: number;
  Healthy: number;
  ConnectHealthy: number;
  /**
   * Healthy sidecars by the chain's rule (proxy and instance checks together, warning healthy
   * unless OnlyPassing), per subset of the service's resolver, `""` for the service as a whole.
   * Absent from DCs that do not count them; ConnectHealthy stands in for `""` then.
   */
  SubsetHealthy?: Record<string, number>;
  Tags: string[];
  Meta: Record<string, string>;
}

export interface PeerExport {
  Datacenter: string;
  Gateways: string[];
  /** The exporting DC's store index of what is held here. */
  Index: number;
  /** When it was last received here (RFC 3339). */
  ReceivedAt: string;
}
