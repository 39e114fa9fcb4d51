import { describe, it } from 'vitest';
import { runDataPathSuite } from './data-path.case.test.js';
import { plainPath } from './plain-path.js';
import { selfTest } from './self-test.js';

describe('plain path', () => {
  it('passes the self-test the fast path is held to', async () => {
    await selfTest(plainPath);
  });
});

runDataPathSuite('plain', plainPath);
