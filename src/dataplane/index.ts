export { DataPlaneServer } from './server.js';
export type { DataPlaneServerOptions } from './server.js';
export { MESH_GATEWAY } from './upstreams.js';
