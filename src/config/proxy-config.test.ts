import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isIsthmusError } from '../core/errors.js';
import { loadProxyConfig, redactProxyConfig } from './proxy-config.js';

function configError(fn: () => unknown) {
  try {
    fn();
  } catch (err) {
    if (isIsthmusError(err, 'ISTHMUS_ERR_BAD_CONFIG')) return err;
    throw err;
  }
  throw new Error('expected a config error');
}

describe('loadProxyConfig', () => {
  it('serves the sidecar registration of --sidecar-for, unless --proxy-id names another', () => {
    expect(loadProxyConfig({ env: {}, flags: { 'sidecar-for': 'web' } })).toEqual({
      proxyId: 'web-sidecar-proxy',
      service: undefined,
      serverAddr: '127.0.0.1:8502',
      token: undefined,
      logLevel: 'info',
    });
    expect(loadProxyConfig({ env: {}, flags: { 'sidecar-for': 'web', 'proxy-id': 'web-2-proxy' } }).proxyId).toBe('web-2-proxy');
    expect(loadProxyConfig({ env: {}, flags: { service: 'batch' } })).toMatchObject({ proxyId: undefined, service: 'batch' });
  });

  it('requires something to proxy for, in the one line the CLI prints', () => {
    expect(configError(() => loadProxyConfig({ env: {} })).message).toBe('--sidecar-for or --service is required');
    expect(configError(() => loadProxyConfig({ env: {}, flags: { 'sidecar-for': '' } })).message).toBe('--sidecar-for or --service is required');
  });

  it('takes flags over env over file and lists every violation with where it came from', () => {
    const configFile = join(mkdtempSync(join(tmpdir(), 'isthmus-proxy-cfg-')), 'proxy.json');
    writeFileSync(configFile, JSON.stringify({ sidecar_for: 'api', grpc_addr: '127.0.3.1:8502', log_level: 'warn' }));
    expect(loadProxyConfig({ configFile, env: { ISTHMUS_GRPC_ADDR: '127.0.2.1:8502' } })).toMatchObject({
      proxyId: 'api-sidecar-proxy',
      serverAddr: '127.0.2.1:8502',
      logLevel: 'warn',
    });
    expect(loadProxyConfig({ configFile, env: { ISTHMUS_GRPC_ADDR: '127.0.2.1:8502' }, flags: { 'grpc-addr': '127.0.1.1:8502' } }).serverAddr).toBe(
      '127.0.1.1:8502',
    );

    writeFileSync(configFile, JSON.stringify({ sidecar_for: 'api', upstreams: [] }));
    const err = configError(() => loadProxyConfig({ configFile, env: { ISTHMUS_GRPC_ADDR: 'localhost' }, flags: { 'log-level': 'chatty' } }));
    expect(err.violations).toEqual([
      { Field: `${configFile}: upstreams`, Message: 'unknown setting (known: sidecar_for, proxy_id, service, grpc_addr, token, log_level)' },
      { Field: 'ISTHMUS_GRPC_ADDR', Message: `must be host:port of the server's gRPC listener (e.g. 127.0.1.1:8502), got "localhost"` },
      { Field: '--log-level', Message: 'must be debug, info, warn or error, got "chatty"' },
    ]);
  });

  it('masks the token when redacted', () => {
    const c = loadProxyConfig({ env: { ISTHMUS_HTTP_TOKEN: 'hunter2' }, flags: { service: 'web' } });
    expect(redactProxyConfig(c).token).toBe('*****');
    expect(c.token).toBe('hunter2');
  });
});
