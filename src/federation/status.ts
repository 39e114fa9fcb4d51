// What federation says of itself: /v1/federation/status (every peer link's state, heartbeat age,
// acknowledged index and lag) and the same as Prometheus gauges.
import { Gauge, type Registry } from 'prom-client';
import type { FederationContext } from './context.js';
import type { Dialer } from './dialer.js';
import type { LinkRegistry } from './links.js';
import type { Membership } from './membership.js';
import type { ReceiptBook } from './receipts.js';
import type { Replication } from './replication.js';

export interface PeerStatus {
  Datacenter: string;
  State: 'up' | 'connecting' | 'down';
  Direction: 'in' | 'out' | '';
  ConnectedSince: string | null;
  HeartbeatAgeMs: number | null;
  /** Primary: the highest of its indexes this peer acknowledged. Secondary (its link to the primary): the primary index applied here. */
  LastAckedIndex: number;
  /** How far behind the replicated tables are on this link, in ms (0 when caught up). */
  ReplicationLagMs: number;
  ExportIndex: number;
  ExportAgeMs: number | null;
  LastError: string;
}

export interface FederationStatus {
  Datacenter: string;
  PrimaryDatacenter: string;
  Primary: boolean;
  /** Whether this server leads its DC (and so dials the other DCs); with one server, always. */
  Leader: boolean;
  /** The advertised address of the server that leads this DC, if known. */
  LeaderAddress: string;
  Index: number;
  /** The primary index this DC has applied (the primary's own index in the primary). */
  AppliedIndex: number;
  Address: string;
  Peers: PeerStatus[];
}

export interface StatusParts {
  ctx: FederationContext;
  members: Membership;
  links: LinkRegistry;
  dialer: Dialer;
  replication: Replication;
  receipts: ReceiptBook;
  address: () => string;
}

export function federationStatus(p: StatusParts): FederationStatus {
  const { ctx, members, links, dialer, replication, receipts } = p;
  const now = Date.now();
  const leader = ctx.store.isLeader();
  const peers: PeerStatus[] = [];
  for (const dc of members.datacenters()) {
    if (dc === ctx.dc) continue;
    const link = links.established(dc);
    const dialing = dialer.dialing(dc);
    const exp = members.peerExport(dc);
    let acked = 0;
    let lag = 0;
    if (ctx.isPrimary) {
      acked = receipts.ackedIndex(dc);
      lag = replication.lagOf(acked, now);
    } else if (dc === ctx.primaryDc) {
      acked = replication.appliedIndex();
      lag = replication.behindMs(now);
    }
    const idle = leader || ctx.isPrimary ? '' : `this server does not lead ${ctx.dc}; the leader (${ctx.store.leader() ?? 'unknown'}) holds the links it dials`;
    peers.push({
      Datacenter: dc,
      State: link ? 'up' : dialing ? 'connecting' : 'down',
      Direction: link ? link.direction : dialing ? 'out' : '',
      ConnectedSince: link ? new Date(link.openedAt).toISOString() : null,
      HeartbeatAgeMs: link?.lastHeartbeatAt ? now - link.lastHeartbeatAt : null,
      LastAckedIndex: acked,
      ReplicationLagMs: lag,
      ExportIndex: exp?.Index ?? 0,
      ExportAgeMs: exp ? now - Date.parse(exp.ReceivedAt) : null,
      LastError: link ? '' : (links.lastError(dc) ?? dialing?.lastError ?? idle),
    });
  }
  return {
    Datacenter: ctx.dc,
    PrimaryDatacenter: ctx.primaryDc,
    Primary: ctx.isPrimary,
    Leader: leader,
    LeaderAddress: ctx.store.leader() ?? '',
    Index: ctx.store.index(),
    AppliedIndex: replication.appliedIndex(),
    Address: p.address(),
    Peers: peers,
  };
}

/** The status as gauges per peer, computed when metrics are read. */
export function registerStatusGauges(registry: Registry, status: () => FederationStatus): void {
  const gauge = (name: string, help: string, pick: (p: PeerStatus) => number | null) =>
    new Gauge({
      name,
      help,
      labelNames: ['peer'],
      registers: [registry],
      collect: () => {
        const g = registry.getSingleMetric(name) as Gauge;
        g.reset();
        for (const p of status().Peers) {
          const v = pick(p);
          if (v !== null) g.labels(p.Datacenter).set(v);
        }
      },
    });
  gauge('isthmus_federation_link_up', '1 while the peer stream with this datacenter is up.', (p) => (p.State === 'up' ? 1 : 0));
  gauge('isthmus_federation_heartbeat_age_seconds', 'Seconds since the last heartbeat from this datacenter.', (p) =>
    p.HeartbeatAgeMs === null ? null : p.HeartbeatAgeMs / 1000,
  );
  gauge('isthmus_federation_replication_lag_seconds', 'How far the replicated tables on this link are behind, in seconds.', (p) => p.ReplicationLagMs / 1000);
  gauge('isthmus_federation_acked_index', 'The last index acknowledged on this link.', (p) => p.LastAckedIndex);
}
