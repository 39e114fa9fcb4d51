import { describe, expect, it } from 'vitest';
import { isIsthmusError } from '../core/errors.js';
import { refusal } from './channel-client.js';
import { toSidecarConfig } from './client.js';
import type { SidecarConfigMessage } from './proto.js';

const message: SidecarConfigMessage = {
  version: 3,
  error: '',
  errorCode: '',
  service: { id: 'web-sidecar-proxy', name: 'web', namespace: 'default', dc: 'dc1', trustDomain: 't.isthmus' },
  leaf: { certPem: 'C', keyPem: 'K', spiffeId: 'spiffe://t.isthmus/ns/default/dc/dc1/svc/web', validBefore: '' },
  bundle: { roots: ['R'], chain: ['I'], activeRootId: 'r1', index: 7 },
  inbound: { bindHost: '127.0.0.1', bindPort: 0, localAppHost: '', localAppPort: 0, protocol: '' },
  upstreams: [
    {
      name: 'api',
      namespace: 'default',
      datacenter: 'dc2',
      localBindHost: '127.0.0.1',
      localBindPort: 9191,
      endpoints: [{ host: 'h', port: 1, sni: 's', spiffeId: 'i' }],
      protocol: 'http',
      chainJson: JSON.stringify({ ServiceName: 'api', StartNode: 'resolver:api.default.dc2' }),
      passiveHealthCheckJson: JSON.stringify({ MaxFailures: 3, BaseEjectionTime: '10s' }),
      targets: [{ id: 'api.default.dc2', datacenter: 'dc2', healthy: true, healthAgeMs: 120, endpoints: [{ host: 'h', port: 1, sni: 's', spiffeId: 'i' }] }],
    },
  ],
  intentions: { intentionsJson: '[]', defaultAllow: false, index: 9, sourceDc: 'dc1' },
};

describe('toSidecarConfig', () => {
  it('turns a push into the sidecar input: no inbound without a port, the policy parsed', () => {
    const cfg = toSidecarConfig(message);
    expect(cfg.inbound).toBeUndefined();
    expect(cfg.policy).toEqual({ intentions: [], defaultAllow: false, index: 9, sourceDc: 'dc1' });
    expect(cfg.upstreams[0].endpoints).toEqual(message.upstreams[0].endpoints);
    expect(cfg.upstreams[0].protocol).toBe('http');
    expect(cfg.upstreams[0].passiveHealthCheck).toEqual({ MaxFailures: 3, BaseEjectionTime: '10s' });
    expect(cfg.upstreams[0].chain?.StartNode).toBe('resolver:api.default.dc2');
    expect(cfg.upstreams[0].targets?.[0]).toMatchObject({ id: 'api.default.dc2', healthy: true, healthAgeMs: 120 });
    const plain = toSidecarConfig({ ...message, upstreams: [{ ...message.upstreams[0], protocol: 'sctp', chainJson: '', passiveHealthCheckJson: '' }] })
      .upstreams[0];
    expect(plain.protocol).toBe('tcp');
    expect('chain' in plain).toBe(false);
    expect('passiveHealthCheck' in plain).toBe(false);
    const inbound = (protocol: string) => toSidecarConfig({ ...message, inbound: { ...message.inbound!, bindPort: 21000, protocol } }).inbound?.protocol;
    expect(['grpc', 'http2', 'http', 'tcp', 'sctp', ''].map(inbound)).toEqual(['grpc', 'http2', 'http', 'tcp', 'tcp', 'tcp']);
  });

  it('refuses an incomplete push with a typed error', () => {
    expect(() => toSidecarConfig({ ...message, leaf: null })).toThrow(expect.objectContaining({ code: 'ISTHMUS_ERR_INVALID' }));
  });
});

describe('refusal', () => {
  it('keeps the code the server sent, and makes an unknown one internal', () => {
    expect(isIsthmusError(refusal('ISTHMUS_ERR_NOT_FOUND', 'no service'), 'ISTHMUS_ERR_NOT_FOUND')).toBe(true);
    expect(refusal('SOMETHING_NEW', 'x').code).toBe('ISTHMUS_ERR_INTERNAL');
  });
});
