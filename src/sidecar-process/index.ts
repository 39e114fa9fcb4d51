export { startSidecarProxy } from './start-sidecar-proxy.js';
export type { SidecarProcess, StartSidecarProxyOptions } from './start-sidecar-proxy.js';
