export type { Store, StoreEntry, StoreOp, Change, ChangesSince, CommitResult, StoreOptions, MemoryStoreOptions, RedisStoreOptions } from './store.js';
export { MemoryStore } from './memory/index.js';
export { RedisStore } from './redis/index.js';
export { createStore } from './create-store.js';
