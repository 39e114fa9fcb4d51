export { MemoryStore } from './memory-store.js';
export { Tables } from './tables.js';
export { checkOps, freezeValue } from './validate-ops.js';
export { TablesView } from './tables-view.js';
