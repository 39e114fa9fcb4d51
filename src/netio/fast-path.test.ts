import { describe, expect, it } from 'vitest';
import { runDataPathSuite } from './data-path.case.test.js';
import { fastPath, fastPathMissing } from './fast-path.js';
import { selfTest } from './self-test.js';

// On the Node this project supports the fast path must be there and behave: were a Node upgrade to
// break it, the gateway would still work (on the plain path) but slower, and this says so.
describe('fast path on this Node', () => {
  it('has the internals it needs and passes its self-test in a few milliseconds', async () => {
    expect(fastPathMissing).toBeUndefined();
    const t0 = performance.now();
    await selfTest(fastPath);
    expect(performance.now() - t0).toBeLessThan(500);
  });
});

runDataPathSuite('fast', fastPath);
