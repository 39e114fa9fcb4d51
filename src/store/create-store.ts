// Builds the configured Store backend.
import type { MemoryStoreOptions, RedisStoreOptions, Store } from './store.js';
import { MemoryStore } from './memory/index.js';
import { RedisStore } from './redis/index.js';

export type CreateStoreOptions = ({ backend: 'memory' } & MemoryStoreOptions) | ({ backend: 'redis' } & RedisStoreOptions);

export function createStore(opts: CreateStoreOptions): Store {
  return opts.backend === 'redis' ? new RedisStore(opts) : new MemoryStore(opts);
}
