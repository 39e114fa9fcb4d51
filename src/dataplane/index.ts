export { DataPlaneServer } from './server.js';
export type { DataPlaneServerOptions } from './server.js';
export { DataPlaneClient } from './client.js';
export type { DataPlaneClientOptions } from './client.js';
export type { SidecarConfigMessage, WireUpstream, WireEndpoint } from './proto.js';
export { toWire, fromWire } from './flow-wire.js';
