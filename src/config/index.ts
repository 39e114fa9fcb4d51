export { loadRegionConfig, redactConfig, splitHostPort, CONFIG_FLAGS } from './region-config.js';
export type { RegionConfig, Mode, LoadOptions, ConfigFlags, ConfigKey } from './region-config.js';
