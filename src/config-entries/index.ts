export { ConfigEntries, CONFIG_ENTRIES_TABLE } from './config-entries.js';
export type { ConfigEntriesOptions, StoredConfigEntry, WriteOptions } from './config-entries.js';
export {
  CONFIG_KINDS,
  CONFIG_SCHEMAS,
  PROTOCOLS,
  PROXY_DEFAULTS_NAME,
  isConfigKind,
  parseConfigEntry,
  protocolOf,
  protocolSourceOf,
  protocolRefusal,
  proxyDefaultsSchema,
  serviceDefaultsSchema,
  serviceResolverSchema,
  serviceRouterSchema,
  serviceSplitterSchema,
} from './model.js';
export type {
  ConfigEntry,
  ConfigEntryByKind,
  ConfigKind,
  Protocol,
  ProxyDefaults,
  ServiceDefaults,
  ServiceResolver,
  ServiceRouter,
  ServiceSplitter,
} from './model.js';
export type { ChainNode, ChainResolverNode, ChainRoute, ChainRouterNode, ChainSplit, ChainSplitterNode, ChainTarget, CompiledChain } from './chain-model.js';
export {
  ChainCompileError,
  DEFAULT_CONNECT_TIMEOUT,
  chainEntries,
  compileDiscoveryChain,
  defaultResolver,
  problemField,
  reachableTargets,
  targetId,
} from './chain.js';
export type { ChainEntries, ChainProblem, CompileOptions } from './chain.js';
export { FilterSyntaxError, checkSubsetFilters, filterProblem, parseFilter } from './filter.js';
export type { Filter, FilterSubject } from './filter.js';
export { connectMembers, isHealthy, subsetHealthCounts, subsetMembers, subsetSelector } from './subset-members.js';
export type { ConnectMember, SubsetSpec } from './subset-members.js';
