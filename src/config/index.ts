// Every process's config loader. A process's own start-up imports its loader's file instead of this
// index: a sidecar or gateway must not load the server's loader (its join tokens are federation's).
export { loadRegionConfig, redactConfig, splitHostPort } from './region-config.js';
export type { RegionConfig, Mode, LoadOptions } from './region-config.js';
export { loadGatewayConfig, redactGatewayConfig } from './gateway-config.js';
export type { GatewayConfig, GatewayLoadOptions } from './gateway-config.js';
export { loadProxyConfig, redactProxyConfig } from './proxy-config.js';
export type { ProxyConfig, ProxyLoadOptions } from './proxy-config.js';
export { CONFIG_FLAGS, GATEWAY_FLAGS, PROXY_FLAGS } from './settings.js';
export type { ConfigFlags, ConfigKey, GatewayFlags, ProxyFlags } from './settings.js';
export type { HostPort } from '../core/names.js';
