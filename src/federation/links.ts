// The live peer links of this server, one per other DC whichever side dialed: a new link to a DC
// replaces the old one; a closed link leaves its reason behind for the status.
import type { FederationContext } from './context.js';
import type { PeerLink } from './peer-link.js';

export class LinkRegistry {
  private readonly links = new Map<string, PeerLink>();
  private readonly lastErrors = new Map<string, string>();
  private readonly closeWaiters = new Map<PeerLink, (reason: string) => void>();

  constructor(
    private readonly ctx: FederationContext,
    /** Called when a link comes or goes. */
    private readonly changed: () => void,
  ) {}

  get(dc: string): PeerLink | undefined {
    return this.links.get(dc);
  }

  /** The link to `dc` once its hello arrived. */
  established(dc: string): PeerLink | undefined {
    const l = this.links.get(dc);
    return l?.established ? l : undefined;
  }

  /** Makes `link` the link to its DC, closing the one it replaces; resolves with the reason once it closes. */
  add(link: PeerLink): Promise<string> {
    // A link whose first write failed is closed before it could be added.
    if (!link.open) return Promise.resolve('closed as it opened');
    const closed = new Promise<string>((resolve) => this.closeWaiters.set(link, resolve));
    const old = this.links.get(link.peerDc);
    this.links.set(link.peerDc, link);
    old?.close('replaced by a new link');
    this.changed();
    return closed;
  }

  /** A link closed (PeerLinkHost.closed). */
  closed(link: PeerLink, reason: string): void {
    this.closeWaiters.get(link)?.(reason);
    this.closeWaiters.delete(link);
    if (this.links.get(link.peerDc) !== link) return;
    this.links.delete(link.peerDc);
    this.lastErrors.set(link.peerDc, reason);
    if (!this.ctx.stopped) this.ctx.log.warn('peer link closed', { peer: link.peerDc, reason });
    this.changed();
  }

  /** Why the last link to `dc` closed, if one did. */
  lastError(dc: string): string | undefined {
    return this.lastErrors.get(dc);
  }

  /** Closes the links to DCs that are no longer members. */
  prune(members: Set<string>): void {
    for (const [dc, link] of this.links) if (!members.has(dc)) link.close(`${dc} is no longer a member of the federation`);
  }

  closeAll(reason: string): void {
    for (const l of [...this.links.values()]) l.close(reason);
  }
}
