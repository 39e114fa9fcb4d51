export { startRegion } from './start-region.js';
export type { Region, StartRegionOptions } from './start-region.js';
export { ensureTrustDomain } from './trust-domain.js';
export { startDemo } from './demo.js';
export type { Demo, DemoOptions } from './demo.js';
