// Builds the configured flow store: the memory ring by default, a Redis Stream with `--store redis`.
import type { Component } from '../core/lifecycle.js';
import type { FlowStore } from './flow-store.js';
import { MemoryFlowStore, type MemoryFlowStoreOptions } from './flow-store-memory.js';
import { RedisFlowStore, type RedisFlowStoreOptions } from './flow-store-redis.js';

export type CreateFlowStoreOptions = ({ backend: 'memory' } & MemoryFlowStoreOptions) | ({ backend: 'redis' } & RedisFlowStoreOptions);

export function createFlowStore(opts: CreateFlowStoreOptions): FlowStore & Component {
  return opts.backend === 'redis' ? new RedisFlowStore(opts) : new MemoryFlowStore(opts);
}
