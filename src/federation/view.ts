// What the data plane (sidecar upstreams, gateway routes) needs to know of the other datacenters:
// their mesh gateways, the healthy counts in their exported catalogs, and where this DC's servers
// take federation traffic. The federation component keeps it current; consumers subscribe.

export interface RemoteGateway {
  /** host:port a gateway of another DC takes WAN traffic on. */
  address: string;
}

export interface FederationView {
  /** This DC's name. */
  readonly dc: string;
  /** The DC where intentions and ACL are written (this one when it stands alone). */
  readonly primaryDc: string;
  /** Every federated DC this server knows of (this one included), sorted. */
  datacenters(): string[];
  /** WAN addresses of another DC's mesh gateways, in the order to try them; [] when unknown. */
  gateways(dc: string): string[];
  /**
   * Healthy connect-capable instances of `service` in another DC by its exported catalog;
   * undefined when that DC (or that service) is not known here.
   */
  remoteHealthy(dc: string, namespace: string, service: string): number | undefined;
  /**
   * Healthy sidecars of one subset (`""`: the whole service) in another DC by its exported catalog,
   * counted there by the discovery chain's health rule; undefined when not known here.
   */
  remoteSubsetHealthy(dc: string, namespace: string, service: string, subset: string): number | undefined;
  /** How old what is held of `dc` is, in ms (0 for this DC); undefined when nothing was ever heard from it. */
  stalenessMs(dc: string): number | undefined;
  /** host:port of this DC's servers' federation (gRPC over mTLS) listeners: the target of SNI server.<dc>.<trust-domain>. */
  serverAddresses(): string[];
  /** Called whenever any of the above may have changed; returns the unsubscribe function. */
  onChange(listener: () => void): () => void;
}

/** A view for a DC that is not federated (dev, a lone server): no other DCs. */
export function loneView(dc: string, serverAddresses: () => string[] = () => []): FederationView {
  return {
    dc,
    primaryDc: dc,
    datacenters: () => [dc],
    gateways: () => [],
    remoteHealthy: () => undefined,
    remoteSubsetHealthy: () => undefined,
    stalenessMs: (d) => (d === dc ? 0 : undefined),
    serverAddresses,
    onChange: () => () => {},
  };
}
