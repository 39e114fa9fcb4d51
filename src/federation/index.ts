export { loneView } from './view.js';
export type { FederationView, RemoteGateway } from './view.js';
