// The dialing side of the peer links (leader only: with several servers of one DC on one Redis,
// exactly one dials). A secondary dials the primary; between secondaries the one whose name sorts
// first dials. One loop per DC to dial, with backoff, over that DC's addresses in turn; the set of
// loops follows the member list.
import { Backoff, sleep } from '../core/backoff.js';
import type { Component } from '../core/lifecycle.js';
import type { FederationContext } from './context.js';
import type { ServerIdentity } from './identity.js';
import type { LinkRegistry } from './links.js';
import type { Membership } from './membership.js';
import { PeerLink, type PeerLinkHost } from './peer-link.js';
import type { FederationClient } from './proto.js';

interface DialLoop {
  peer: string;
  abort: AbortController;
  client?: FederationClient;
  lastError: string;
  done: Promise<void>;
}

/** Reconciles the dial loops with the member list this often, besides on every member change. */
const RECONCILE_MS = 2000;

export class Dialer implements Component {
  readonly name = 'federation-dialer';
  readonly leaderOnly = true;
  private readonly loops = new Map<string, DialLoop>();
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(
    private readonly ctx: FederationContext,
    private readonly host: PeerLinkHost,
    private readonly members: Membership,
    private readonly links: LinkRegistry,
    private readonly identity: ServerIdentity,
  ) {}

  /** True while this server dials (it leads its DC). */
  get active(): boolean {
    return this.running;
  }

  async start(): Promise<void> {
    this.running = true;
    this.reconcile();
    this.timer = setInterval(() => this.reconcile(), RECONCILE_MS);
    this.timer.unref();
    this.ctx.log.info('dialing the other datacenters', { peers: [...this.loops.keys()] });
  }

  async stop(): Promise<void> {
    this.running = false;
    clearInterval(this.timer);
    const loops = [...this.loops.values()];
    this.loops.clear();
    for (const d of loops) d.abort.abort();
    await Promise.all(loops.map((d) => d.done));
  }

  /** The client of the live link this server dialed to `dc`, if there is one. */
  liveClient(dc: string): FederationClient | undefined {
    const d = this.loops.get(dc);
    return d?.client && this.links.established(dc) ? d.client : undefined;
  }

  /** Whether a dial loop runs for `dc`, and why its last attempt failed. */
  dialing(dc: string): { lastError: string } | undefined {
    const d = this.loops.get(dc);
    return d ? { lastError: d.lastError } : undefined;
  }

  /** Follows the member list: a loop for each DC this side dials, none for the others. */
  reconcile(): void {
    if (!this.running || this.ctx.stopped) return;
    const current = new Set(this.members.datacenters());
    for (const [dc, d] of this.loops) {
      if (current.has(dc)) continue;
      d.abort.abort();
      this.loops.delete(dc);
    }
    this.links.prune(current);
    for (const dc of current) {
      if (!this.shouldDial(dc) || this.loops.has(dc)) continue;
      const d: DialLoop = { peer: dc, abort: new AbortController(), lastError: '', done: Promise.resolve() };
      d.done = this.loop(d);
      this.loops.set(dc, d);
    }
  }

  private shouldDial(peer: string): boolean {
    if (peer === this.ctx.dc || this.ctx.isPrimary) return false;
    if (peer === this.ctx.primaryDc) return true;
    return this.ctx.dc < peer;
  }

  private async loop(d: DialLoop): Promise<void> {
    const backoff = new Backoff({ initialMs: 200, maxMs: 3000 });
    let attempt = 0;
    while (!d.abort.signal.aborted && !this.ctx.stopped) {
      const addrs = this.members.dialAddresses(d.peer);
      if (addrs.length === 0) {
        d.lastError = `no address known for datacenter ${d.peer}`;
        await sleep(1000, d.abort.signal);
        continue;
      }
      const addr = addrs[attempt++ % addrs.length];
      const client = this.identity.client(addr, d.peer);
      d.client = client;
      const link = new PeerLink(this.host, client.peerStream(), d.peer, 'out');
      const closed = this.links.add(link);
      const onAbort = () => link.close('server stopping');
      d.abort.signal.addEventListener('abort', onAbort, { once: true });
      const opened = Date.now();
      const why = await closed;
      d.abort.signal.removeEventListener('abort', onAbort);
      d.lastError = `${addr}: ${why}`;
      d.client = undefined;
      client.close();
      if (Date.now() - opened > 10_000) backoff.reset();
      if (!d.abort.signal.aborted) await sleep(backoff.next(), d.abort.signal);
    }
  }
}
