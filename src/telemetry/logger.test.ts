import { describe, expect, it } from 'vitest';
import { createLogger, redact, REDACTED } from './logger.js';

describe('logger', () => {
  it('redacts secret fields, URL credentials and PEM private keys', () => {
    const lines: string[] = [];
    const log = createLogger({ write: (l) => lines.push(l) });
    const pem = '-----BEGIN PRIVATE KEY-----\nMIGHAgEA\n-----END PRIVATE KEY-----';
    log.info('connecting to redis://default:hunter2@127.0.0.1:6379', { SecretID: 'abc-123', nested: { token: 't0k' }, key: pem, port: 6379 });
    const rec = JSON.parse(lines[0]);
    expect(lines[0]).not.toContain('hunter2');
    expect(lines[0]).not.toContain('abc-123');
    expect(lines[0]).not.toContain('t0k');
    expect(lines[0]).not.toContain('MIGHAgEA');
    expect(rec.SecretID).toBe(REDACTED);
    expect(rec.port).toBe(6379);
    expect(rec.msg).toContain('127.0.0.1:6379');
  });

  it('drops debug lines unless the component is traced', () => {
    const lines: string[] = [];
    const plain = createLogger({ write: (l) => lines.push(l), trace: [], fields: { component: 'gateway' } });
    plain.debug('hidden');
    const traced = createLogger({ write: (l) => lines.push(l), trace: ['gateway'], fields: { component: 'gateway' } });
    traced.debug('shown');
    expect(lines.map((l) => JSON.parse(l).msg)).toEqual(['shown']);
  });

  it('leaves empty secret fields visible as empty', () => {
    expect(redact({ token: '' })).toEqual({ token: '' });
  });
});
