export { Catalog, aggregate } from './catalog.js';
export type { CatalogOptions, CatalogPart, HealthEntry } from './catalog.js';
export { CheckRunner } from './check-runner.js';
export type { CheckRunnerOptions } from './check-runner.js';
export { serviceSchema, checkSchema, catalogRegisterSchema, catalogDeregisterSchema, NAME_RE as SERVICE_NAME_RE } from './model.js';
export type { ServiceRecord, CheckRecord, NodeRecord, HealthStatus, ServiceInput, CheckInput, Upstream, ProxyConfig } from './model.js';
export { normalizeKeys } from './normalize.js';
export { parseServiceDefinition } from './definition.js';
