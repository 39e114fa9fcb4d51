export type { FlowRecord, FlowHop, FlowVerdict, FlowIdentity } from './flow-record.js';
export { MemoryFlowStore, matches as flowMatches } from './memory-flow-store.js';
export type { FlowStore, FlowQuery } from './memory-flow-store.js';
