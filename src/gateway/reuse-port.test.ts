import { describe, expect, it } from 'vitest';
import { reusePortAvailable } from './reuse-port.js';

describe('reusePortAvailable', () => {
  it('holds from Node 22.12 and 23.1 on, on Linux only', () => {
    for (const v of ['22.12.0', 'v22.19.1', '23.1.0', '24.22.3', '25.0.0', '100.0.0']) expect(reusePortAvailable(v, 'linux'), v).toBe(true);
    for (const v of ['20.20.2', 'v22.11.0', '22.2.0', '23.0.0', '21.7.3', '8.12.0', 'not a version']) expect(reusePortAvailable(v, 'linux'), v).toBe(false);
    for (const p of ['darwin', 'win32'] as const) expect(reusePortAvailable('24.22.3', p), p).toBe(false);
  });
});
