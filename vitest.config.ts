import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    exclude: ['**/node_modules/**', '**/*.case.test.ts'],
    allowOnly: false,
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // At least two files at a time. Vitest's default in a run is one worker fewer than the cores,
    // which on a two-core machine is one: the files ran one after the other. Most of a file's time
    // is spent waiting (on the processes, sockets and timers it starts), so a second worker fills
    // that wait; each file still gets its own process (isolate), as before.
    maxWorkers: Math.max(2, availableParallelism() - 1),
    reporters: ['default'],
    projects: [
      { extends: true, test: { name: 'default', include: ['src/**/*.test.ts', 'test/**/*.test.ts'] } },
      // The gateway's own tests once more with its bytes moved on its TypeScript data path (the
      // default, ISTHMUS_PUMP unset, is the native byte pump where it loads; see docs/decisions.md),
      // so both paths are tested on every run.
      {
        extends: true,
        test: {
          name: 'gateway-ts',
          include: ['src/gateway/gateway.test.ts', 'src/gateway/gateway-cluster.test.ts'],
          env: { ISTHMUS_PUMP: 'off' },
        },
      },
    ],
  },
});
