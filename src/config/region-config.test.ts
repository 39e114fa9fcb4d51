import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isIsthmusError } from '../core/errors.js';
import { loadRegionConfig, redactConfig } from './region-config.js';

function configError(fn: () => unknown) {
  try {
    fn();
  } catch (err) {
    if (isIsthmusError(err, 'ISTHMUS_ERR_BAD_CONFIG')) return err;
    throw err;
  }
  throw new Error('expected a config error');
}

describe('loadRegionConfig', () => {
  it('gives dev mode Consul-like defaults: allow, no persistence, 8500/8502', () => {
    const c = loadRegionConfig({ mode: 'dev', env: {} });
    expect(c).toMatchObject({
      dc: 'dc1',
      httpAddr: '127.0.0.1:8500',
      grpcAddr: '127.0.0.1:8502',
      aclDefaultPolicy: 'allow',
      dataDir: undefined,
      store: 'memory',
    });
  });

  it('defaults a server to deny and a data dir per DC, and derives gRPC host from the HTTP address', () => {
    const c = loadRegionConfig({ mode: 'server', env: {}, flags: { dc: 'dc2', 'http-addr': '127.0.2.1:8500' } });
    expect(c.aclDefaultPolicy).toBe('deny');
    expect(c.dataDir).toBe(join('.isthmus', 'dc2'));
    expect(c.grpcAddr).toBe('127.0.2.1:8502');
    expect(c.primaryDc).toBe('dc2');
  });

  it('takes flags over env over file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'isthmus-cfg-'));
    const file = join(dir, 'dc.json');
    writeFileSync(file, JSON.stringify({ datacenter: 'dcfile', log_level: 'warn', acl_default_policy: 'allow' }));
    const c = loadRegionConfig({ mode: 'server', configFile: file, env: { ISTHMUS_LOG_LEVEL: 'debug', ISTHMUS_DATACENTER: 'dcenv' }, flags: { dc: 'dcflag' } });
    expect(c.dc).toBe('dcflag');
    expect(c.logLevel).toBe('debug');
    expect(c.aclDefaultPolicy).toBe('allow');
  });

  it('lists every violation with where it came from', () => {
    const dir = mkdtempSync(join(tmpdir(), 'isthmus-cfg-'));
    const file = join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify({ datacentre: 'x', log_level: 'loud' }));
    const err = configError(() =>
      loadRegionConfig({ mode: 'server', configFile: file, env: { ISTHMUS_STORE: 'mysql' }, flags: { 'http-addr': 'nope', dc: 'DC_1' } }),
    );
    const fields = err.violations.map((v) => v.Field).sort();
    expect(fields).toEqual([`${file}: datacentre`, `${file}: log_level`, '--dc', '--http-addr', 'ISTHMUS_STORE'].sort());
  });

  it('requires a Redis URL for the redis store and masks its password when redacted', () => {
    const err = configError(() => loadRegionConfig({ mode: 'server', env: {}, flags: { store: 'redis' } }));
    expect(err.violations[0].Field).toBe('--store');
    const c = loadRegionConfig({ mode: 'server', env: {}, flags: { store: 'redis', 'redis-url': 'redis://u:s3cret@127.0.0.1:6379' } });
    expect(redactConfig(c).redisUrl).toBe('redis://u:*****@127.0.0.1:6379');
    expect(c.redisUrl).toContain('s3cret');
  });
});
