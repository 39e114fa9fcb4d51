// Why a TLS handshake was refused, in words for a flow record, decided by the error's code (Node
// sets OpenSSL's verification result, e.g. CERT_HAS_EXPIRED, or an ERR_SSL_* reason); the message
// is only ever the fallback text.
const REASONS: Record<string, string> = {
  ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE: 'no client certificate',
  ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED: 'no client certificate',
  CERT_HAS_EXPIRED: 'certificate has expired',
  CERT_NOT_YET_VALID: 'certificate is not valid yet',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'certificate not signed by a trusted root',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'certificate not signed by a trusted root',
  SELF_SIGNED_CERT_IN_CHAIN: 'certificate not signed by a trusted root',
  UNABLE_TO_GET_ISSUER_CERT: 'certificate not signed by a trusted root',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'certificate not signed by a trusted root',
  CERT_UNTRUSTED: 'certificate not signed by a trusted root',
  CERT_SIGNATURE_FAILURE: 'certificate not signed by a trusted root',
  ERR_SSL_TLSV1_ALERT_UNKNOWN_CA: 'certificate not signed by a trusted root',
};

/** The reason for a refused handshake: by `code` when it is a known one, else the error's message. */
export function describeTlsError(err: { code?: string; message: string }): string {
  return (err.code !== undefined && Object.hasOwn(REASONS, err.code) ? REASONS[err.code] : undefined) ?? err.message;
}
