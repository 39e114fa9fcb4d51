export { loneView } from './view.js';
export type { FederationView, RemoteGateway } from './view.js';
export { Federation } from './federation.js';
export type { FederationOptions, FederationStatus, PeerStatus, Receipts, Receipt, ForwardHandler } from './federation.js';
export { joinedAs } from './join.js';
export { decodeJoinToken, encodeJoinToken } from './join-token.js';
export type { JoinToken } from './join-token.js';
export type { ExportedService, Member, PeerExport } from './tables.js';
