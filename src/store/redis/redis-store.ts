// Placeholder until the Redis backend lands.
import { MemoryStore } from '../memory/index.js';
import type { RedisStoreOptions } from '../store.js';
export class RedisStore extends MemoryStore {
  constructor(opts: RedisStoreOptions) {
    super(opts);
  }
}
