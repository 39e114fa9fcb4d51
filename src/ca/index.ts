export { CertificateAuthority } from './authority.js';
export type { AuthorityOptions, CaPart } from './authority.js';
export { LeafCache } from './leaf-cache.js';
export { inspect as inspectCertificate } from './x509.js';
export type { CertInfo } from './x509.js';
export { DEFAULT_CA_CONFIG, intermediateCommonName, intermediateDcOf } from './model.js';
export type { CaRoot, CaIntermediate, CaConfig, LeafCert, TrustBundle } from './model.js';
export { createRoot, newKeyPem, publicKeyPemOf, signCa, signLeaf } from './x509.js';
