// @ts-check
// The shapes of the API answers the page reads, and of the page's own parts, as JSDoc types for the
// type check (tsconfig.ui.json). Only the fields the page uses; the page never loads this file.

/**
 * @typedef {{ spiffeId?: string, service: string, namespace?: string, dc: string }} FlowIdentity
 * @typedef {'client-sidecar' | 'gateway-egress' | 'gateway-ingress' | 'server-sidecar'} FlowHop
 * @typedef {'allowed' | 'denied' | 'no_route' | 'error'} FlowVerdict
 * @typedef {{
 *   id: string,
 *   traceId: string,
 *   requestIndex: number,
 *   hop: FlowHop,
 *   dc: string,
 *   reporter: string,
 *   source: FlowIdentity,
 *   destination: FlowIdentity,
 *   verdict: FlowVerdict,
 *   reason: string,
 *   intentionId: string,
 *   intentionDc: string,
 *   intentionIndex: number,
 *   startTime: number,
 *   durationMs: number,
 *   http?: { method: string, path: string, status: number },
 *   routing?: { target: string, route: string, split: string, retries: number, failover: string },
 * }} FlowRecord
 */

/**
 * What a federated read adds: the DCs asked, and those that did not answer with why.
 * @typedef {{ Datacenters?: string[], Missing?: string[], Errors?: Record<string, string> }} Federated
 * @typedef {Federated & { DC: string, Records: FlowRecord[] }} FlowsAnswer
 */

/**
 * @typedef {{
 *   Action: 'allow' | 'deny',
 *   HTTP?: { PathExact?: string, PathPrefix?: string, PathRegex?: string, Methods?: string[], Header?: unknown[] },
 * }} Permission
 * @typedef {{ Action?: string, Permissions?: Permission[] }} Rule
 * @typedef {Rule & {
 *   ID: string,
 *   SourceName: string,
 *   DestinationName: string,
 *   Precedence: number,
 *   Description: string,
 *   UpdatedAt: string,
 * }} Intention
 */

/**
 * An audit event; Before and After are the intention (or token, policy) as it was and became.
 * @typedef {{
 *   ID: string,
 *   Time: string,
 *   Kind: string,
 *   Action: 'create' | 'update' | 'delete',
 *   Subject: string,
 *   Actor?: { AccessorID?: string, Description?: string },
 *   DC: string,
 *   Before?: { ID?: string } & Rule,
 *   After?: { ID?: string } & Rule,
 *   Index?: number,
 * }} AuditEvent
 */

/**
 * @typedef {{
 *   Datacenter: string,
 *   State: 'up' | 'connecting' | 'down',
 *   Direction: 'in' | 'out' | '',
 *   ConnectedSince: string | null,
 *   HeartbeatAgeMs: number | null,
 *   LastAckedIndex: number,
 *   ReplicationLagMs: number,
 *   ExportAgeMs: number | null,
 *   LastError: string,
 * }} PeerStatus
 * @typedef {{
 *   Datacenter: string,
 *   PrimaryDatacenter: string,
 *   Primary: boolean,
 *   Index: number,
 *   AppliedIndex: number,
 *   Peers: PeerStatus[],
 * }} FederationStatus
 */

/**
 * The answers of /v1/policy/dry-run and /v1/policy/suggest.
 * @typedef {{
 *   Source: string,
 *   Destination: string,
 *   Method?: string,
 *   Path?: string,
 *   Before: 'allowed' | 'denied',
 *   After: 'allowed' | 'denied',
 *   BeforeDecidedBy: string,
 *   AfterDecidedBy: string,
 *   Count: number,
 *   Datacenters?: string[],
 * }} ReplayChange
 * @typedef {Federated & {
 *   Proposed: Rule & { SourceName: string, DestinationName: string },
 *   Window: string,
 *   Truncated?: boolean,
 *   Examined: number,
 *   Distinct: number,
 *   Changes?: ReplayChange[],
 *   HeaderRulesIgnored?: boolean,
 * }} DryRunAnswer
 * @typedef {Rule & {
 *   SourceName: string,
 *   DestinationName: string,
 *   Calls: number,
 *   Datacenters?: string[],
 *   Existing?: string,
 * }} Suggestion
 * @typedef {Federated & {
 *   Service: string,
 *   Window: string,
 *   Truncated?: boolean,
 *   Examined: number,
 *   Suggestions?: Suggestion[],
 * }} SuggestAnswer
 */

/**
 * The page's parts: the address a view is shown for, what the views share, and a view.
 * @typedef {{ name: string, arg: string, params: URLSearchParams }} Route
 * @typedef {{
 *   home: { dc: string, primary: string | undefined } | undefined,
 *   navigate(hash: string): void,
 *   refresh(): Promise<void>,
 * }} Context
 * @typedef {{ el: HTMLElement, show(route: Route): void, refresh(): Promise<void> }} View
 */

export {};
