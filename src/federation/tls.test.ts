// A server identity counts only when its own DC's intermediate signed it (the issuer CN the root
// gave that intermediate): another DC's CA, a root, or a look-alike name does not make it so.
import type { PeerCertificate } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { intermediateCommonName } from '../ca/index.js';
import { serverDcOf } from './tls.js';

const cert = (uri: string, issuerCn: string) =>
  ({ subjectaltname: `DNS:server.dc2.td.isthmus, URI:${uri}`, issuer: { CN: issuerCn } }) as unknown as PeerCertificate;

describe('serverDcOf', () => {
  it("names the DC of a server identity signed by that DC's intermediate", () => {
    expect(serverDcOf(cert('spiffe://td.isthmus/agent/server/dc/dc2', intermediateCommonName('dc2')), 'td.isthmus')).toBe('dc2');
  });

  it("refuses one signed by another DC's intermediate, a root, or a name that only starts alike", () => {
    const uri = 'spiffe://td.isthmus/agent/server/dc/dc2';
    for (const issuer of [intermediateCommonName('dc1'), intermediateCommonName('dc22'), 'Isthmus CA Primary Cert 1', 'Isthmus CA dc2', 'Isthmus CA dc2 x y']) {
      expect(serverDcOf(cert(uri, issuer), 'td.isthmus'), issuer).toBeUndefined();
    }
  });

  it('refuses a service identity and another trust domain', () => {
    expect(serverDcOf(cert('spiffe://td.isthmus/ns/default/dc/dc2/svc/web', intermediateCommonName('dc2')), 'td.isthmus')).toBeUndefined();
    expect(serverDcOf(cert('spiffe://other.isthmus/agent/server/dc/dc2', intermediateCommonName('dc2')), 'td.isthmus')).toBeUndefined();
    expect(serverDcOf(undefined, 'td.isthmus')).toBeUndefined();
  });
});
