import { describe, expect, it } from 'vitest';
import { describeTlsError } from './tls-refusal.js';

const err = (message: string, code?: string) => Object.assign(new Error(message), code === undefined ? {} : { code });

describe('describeTlsError', () => {
  it("decides by the error's code, whatever its message says", () => {
    expect(describeTlsError(err('something else entirely', 'CERT_HAS_EXPIRED'))).toBe('certificate has expired');
    expect(describeTlsError(err('', 'CERT_NOT_YET_VALID'))).toBe('certificate is not valid yet');
    expect(describeTlsError(err('', 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE'))).toBe('no client certificate');
    expect(describeTlsError(err('', 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED'))).toBe('no client certificate');
    for (const code of [
      'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
      'DEPTH_ZERO_SELF_SIGNED_CERT',
      'SELF_SIGNED_CERT_IN_CHAIN',
      'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
      'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA',
      'CERT_SIGNATURE_FAILURE',
    ]) {
      expect(describeTlsError(err('', code))).toBe('certificate not signed by a trusted root');
    }
  });

  it('never decides by the message: a message naming a code is only passed on', () => {
    const message = 'peer said CERT_HAS_EXPIRED, unknown ca, CERTIFICATE_REQUIRED and CERT_NOT_YET_VALID';
    expect(describeTlsError(err(message))).toBe(message);
    expect(describeTlsError(err(message, 'ECONNRESET'))).toBe(message);
    // Nor by a code that merely contains a known one.
    expect(describeTlsError(err('hang-up', 'X_CERT_HAS_EXPIRED'))).toBe('hang-up');
    expect(describeTlsError(err('hang-up', 'toString'))).toBe('hang-up');
  });
});
