import { describe, expect, it } from 'vitest';
import { chooseDataPath, logDataPath, tryDataPath } from './choose.js';
import type { DataPath, TcpConn } from './data-path.js';
import { fastPath } from './fast-path.js';
import { selfTest } from './self-test.js';

/** `conn` with `write` replaced. */
function withWrite(conn: TcpConn, write: TcpConn['write']): TcpConn {
  return new Proxy(conn, {
    get(target, key) {
      if (key === 'write') return write;
      const v = Reflect.get(target, key, target) as unknown;
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

describe('choosing the data path', () => {
  it('takes the fast path where it passes its self-test, testing it once per process', async () => {
    const first = await chooseDataPath({ env: {} });
    expect(first).toEqual({ path: fastPath, selfTest: 'passed' });
    expect(await chooseDataPath({ env: {} })).toBe(first);
  });

  it('takes the plain path, without a self-test, when ISTHMUS_FAST_PATH=off, and says so', async () => {
    const c = await chooseDataPath({ env: { ISTHMUS_FAST_PATH: 'off' } });
    expect(c.path.name).toBe('plain');
    expect(c).toMatchObject({ selfTest: 'skipped', reason: 'ISTHMUS_FAST_PATH=off' });
    expect((await chooseDataPath({ env: { ISTHMUS_FAST_PATH: 'OFF' } })).path.name).toBe('plain');
    expect((await chooseDataPath({ env: { ISTHMUS_FAST_PATH: 'on' } })).path.name).toBe('fast');
  });

  it('follows the option over the environment', async () => {
    expect(await chooseDataPath({ fastPath: false, env: {} })).toMatchObject({
      path: { name: 'plain' },
      selfTest: 'skipped',
      reason: expect.stringContaining('--fast-path off'),
    });
    expect((await chooseDataPath({ fastPath: true, env: { ISTHMUS_FAST_PATH: 'off' } })).path.name).toBe('fast');
  });

  it('falls back to the plain path when the candidate misbehaves, and says what went wrong', async () => {
    // Bytes changed on the way.
    const garbling: DataPath = {
      ...fastPath,
      connect: (host, port, ev) => {
        const conn = fastPath.connect(host, port, ev);
        return withWrite(conn, (data, after) => conn.write(Buffer.from(data.toString('latin1').toUpperCase()), after));
      },
    };
    const c = await tryDataPath(garbling);
    expect(c.path.name).toBe('plain');
    expect(c).toMatchObject({ selfTest: 'failed', reason: 'self-test failed: server read "PING FROM THE CLIENT", not "ping from the client"' });
    // A throw.
    const throwing: DataPath = {
      ...fastPath,
      createServer: () => {
        throw new Error('no listener here');
      },
    };
    expect(await tryDataPath(throwing)).toMatchObject({ path: { name: 'plain' }, selfTest: 'failed', reason: 'self-test failed: no listener here' });
    // Internals known to be missing: no test at all.
    expect(await tryDataPath(fastPath, 'no process.binding')).toMatchObject({
      path: { name: 'plain' },
      selfTest: 'failed',
      reason: 'self-test failed: no process.binding',
    });
  });

  it('fails a path on which something never happens, within its time', async () => {
    // The peer's end never reported.
    const deaf: DataPath = { ...fastPath, accept: (c, ev) => fastPath.accept(c, { ...ev, end: () => {} }) };
    const t0 = Date.now();
    await expect(selfTest(deaf, 300)).rejects.toThrow("waited 300 ms for the client's end");
    expect(Date.now() - t0).toBeLessThan(1500);
  });

  it('writes one line naming the path and why: a warning when the self-test failed', async () => {
    const said: unknown[][] = [];
    const log = {
      info: (m: string, f: Record<string, unknown>) => said.push(['info', m, f]),
      warn: (m: string, f: Record<string, unknown>) => said.push(['warn', m, f]),
    };
    logDataPath(log, await chooseDataPath({ env: {} }));
    logDataPath(log, await chooseDataPath({ env: { ISTHMUS_FAST_PATH: 'off' } }));
    logDataPath(log, await tryDataPath(fastPath, 'no process.binding'));
    expect(said).toEqual([
      ['info', 'data path', { path: 'fast', selfTest: 'passed', reason: undefined }],
      ['info', 'data path', { path: 'plain', selfTest: 'skipped', reason: 'ISTHMUS_FAST_PATH=off' }],
      ['warn', 'data path', { path: 'plain', selfTest: 'failed', reason: 'self-test failed: no process.binding' }],
    ]);
  });
});
