import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isIsthmusError } from '../core/errors.js';
import { loadGatewayConfig, redactGatewayConfig } from './gateway-config.js';

function configError(fn: () => unknown) {
  try {
    fn();
  } catch (err) {
    if (isIsthmusError(err, 'ISTHMUS_ERR_BAD_CONFIG')) return err;
    throw err;
  }
  throw new Error('expected a config error');
}

function file(content: unknown): string {
  const path = join(mkdtempSync(join(tmpdir(), 'isthmus-gw-cfg-')), 'gateway.json');
  writeFileSync(path, JSON.stringify(content));
  return path;
}

describe('loadGatewayConfig', () => {
  it('defaults to every interface on 8443, the local server on 8502, dc1, one process', () => {
    expect(loadGatewayConfig({ env: {} })).toEqual({
      dc: 'dc1',
      addr: { host: '0.0.0.0', port: 8443 },
      wanAddr: undefined,
      serverAddr: '127.0.0.1:8502',
      token: undefined,
      id: undefined,
      name: 'mesh-gateway',
      metricsAddr: undefined,
      maxConnections: undefined,
      workers: 1,
      helloTimeoutMs: undefined,
      idleTimeoutMs: undefined,
      logLevel: 'info',
    });
  });

  it('takes flags over env over file, and --server over --grpc-addr', () => {
    const configFile = file({ datacenter: 'dcfile', server: '127.0.9.1:8502', workers: 4, idle_timeout: '2m', wan_addr: '[::1]:9443' });
    const c = loadGatewayConfig({
      configFile,
      env: { ISTHMUS_DATACENTER: 'dcenv', ISTHMUS_GRPC_ADDR: '127.0.8.1:8502', ISTHMUS_HTTP_TOKEN: 'tok' },
      flags: { dc: 'dcflag' },
    });
    expect(c).toMatchObject({
      dc: 'dcflag',
      serverAddr: '127.0.8.1:8502',
      token: 'tok',
      workers: 4,
      idleTimeoutMs: 120_000,
      wanAddr: { host: '::1', port: 9443 },
    });
    expect(loadGatewayConfig({ env: {}, flags: { server: '127.0.1.1:1', 'grpc-addr': '127.0.2.1:2' } }).serverAddr).toBe('127.0.1.1:1');
    expect(loadGatewayConfig({ env: {}, flags: { 'grpc-addr': '127.0.2.1:2' } }).serverAddr).toBe('127.0.2.1:2');
  });

  it('names a bad --addr in the one line the CLI prints', () => {
    const err = configError(() => loadGatewayConfig({ env: {}, flags: { addr: 'localhost' } }));
    expect(err.message).toBe('--addr must be host:port (e.g. 127.0.1.1:8443), got "localhost"');
  });

  it('lists every violation with where it came from, and never quotes a token back', () => {
    const configFile = file({ workers: 0, metric_addr: 'x', hello_timeout: 'soon' });
    const secret = 's'.repeat(600);
    const err = configError(() =>
      loadGatewayConfig({
        configFile,
        env: { ISTHMUS_DATACENTER: 'DC_1', ISTHMUS_HTTP_TOKEN: secret },
        flags: { 'wan-addr': '127.0.0.1:0', 'grpc-addr': 'nope', 'log-level': 'loud', id: '-x' },
      }),
    );
    expect(err.violations.map((v) => v.Field).sort()).toEqual(
      [
        `${configFile}: metric_addr`,
        `${configFile}: workers`,
        `${configFile}: hello_timeout`,
        'ISTHMUS_DATACENTER',
        'ISTHMUS_HTTP_TOKEN',
        '--wan-addr',
        '--grpc-addr',
        '--log-level',
        '--id',
      ].sort(),
    );
    expect(err.violations.find((v) => v.Field === '--wan-addr')?.Message).toBe('must be host:port (e.g. 127.0.1.1:8443), got "127.0.0.1:0"');
    expect(err.violations.find((v) => v.Field === `${configFile}: workers`)?.Message).toBe('must be a whole number from 1 to 64, got 0');
    expect(err.message).not.toContain(secret.slice(0, 20));
  });

  it('takes the byte pump from --pump, ISTHMUS_PUMP or the file key pump, and says where it was set', () => {
    expect(loadGatewayConfig({ env: {} })).toMatchObject({ pump: undefined, pumpSetBy: undefined });
    const configFile = file({ pump: 'auto' });
    expect(loadGatewayConfig({ env: {}, configFile })).toMatchObject({ pump: 'auto', pumpSetBy: `${configFile}: pump` });
    // As ISTHMUS_PUMP was always read: capitals and spaces around are the same setting.
    expect(loadGatewayConfig({ env: { ISTHMUS_PUMP: ' OFF ' }, configFile })).toMatchObject({ pump: 'off', pumpSetBy: 'ISTHMUS_PUMP' });
    expect(loadGatewayConfig({ env: { ISTHMUS_PUMP: 'off' }, configFile, flags: { pump: 'on' } })).toMatchObject({ pump: 'on', pumpSetBy: '--pump' });
  });

  it('refuses a pump setting that is not on, auto or off, naming the flag, the variable or the file key', () => {
    expect(configError(() => loadGatewayConfig({ env: {}, flags: { pump: 'fast' } })).message).toBe('--pump must be on, auto or off, got "fast"');
    expect(configError(() => loadGatewayConfig({ env: { ISTHMUS_PUMP: 'yes' } })).message).toBe('ISTHMUS_PUMP must be on, auto or off, got "yes"');
    const configFile = file({ pump: true });
    expect(configError(() => loadGatewayConfig({ env: {}, configFile })).message).toBe(`${configFile}: pump must be on, auto or off, got true`);
    // Listed with the other violations, each named where it was set.
    const both = configError(() => loadGatewayConfig({ env: { ISTHMUS_PUMP: 'native' }, flags: { workers: '0' } }));
    expect(both.violations.map((v) => v.Field).sort()).toEqual(['--workers', 'ISTHMUS_PUMP']);
  });

  it('masks the token when redacted', () => {
    const c = loadGatewayConfig({ env: { ISTHMUS_HTTP_TOKEN: 'hunter2' } });
    expect(redactGatewayConfig(c).token).toBe('*****');
    expect(c.token).toBe('hunter2');
  });
});
