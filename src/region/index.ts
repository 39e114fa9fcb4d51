export { startRegion } from './start-region.js';
export type { Region, StartRegionOptions } from './start-region.js';
export { ensureTrustDomain } from './trust-domain.js';
