export { startGateway } from './start-gateway.js';
export type { GatewayProcess, StartGatewayOptions } from './start-gateway.js';
