// The proxies' end of the data-plane channel and its wire (messages, flow records), apart from the
// server in dataplane/: a sidecar or gateway process imports this and loads nothing of the server.
export { DataPlaneClient, toSidecarConfig } from './client.js';
export type { DataPlaneClientOptions } from './client.js';
export { GatewayClient, toGatewayRoutes } from './gateway-client.js';
export type { GatewayClientOptions } from './gateway-client.js';
export { refusal } from './channel-client.js';
export { dataPlaneService, MAX_FLOW_BATCH } from './proto.js';
export type {
  SidecarConfigMessage,
  SidecarMessage,
  WireUpstream,
  WireEndpoint,
  WireFlow,
  WireIdentity,
  GatewayConfigMessage,
  GatewayHelloMessage,
  GatewayMessage,
  WireGatewayService,
  WireGatewayEndpoint,
} from './proto.js';
export { toWire, fromWire } from './flow-wire.js';
