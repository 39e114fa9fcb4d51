export { DataPlaneServer } from './server.js';
export type { DataPlaneServerOptions } from './server.js';
export { DataPlaneClient } from './client.js';
export type { DataPlaneClientOptions } from './client.js';
export { GatewayClient, toGatewayRoutes } from './gateway-client.js';
export type { GatewayClientOptions } from './gateway-client.js';
export type { SidecarConfigMessage, WireUpstream, WireEndpoint, GatewayConfigMessage, WireGatewayService, WireGatewayEndpoint } from './proto.js';
export { toWire, fromWire } from './flow-wire.js';
export { MESH_GATEWAY } from './upstreams.js';
