// Certificate primitives on @peculiar/x509 (ECDSA P-256, SHA-256): roots, intermediates, leaves,
// cross-signing, and reading back what a PEM says. Keys travel as PKCS#8 PEM.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { trustDomainSpiffeId } from '../core/names.js';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

x509.cryptoProvider.set(webcrypto as never);

const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;
/**
 * notBefore is backdated so that a peer whose clock runs behind the signer's still accepts a fresh
 * certificate: leaves and server certs are signed in every DC and checked in every other, and DCs in
 * different regions keep time apart. Ten minutes covers two DCs each a few minutes off true time (see
 * docs/decisions.md); notAfter is never stretched, so an expired certificate stays refused.
 */
const BACKDATE_MS = 10 * 60_000;

export interface KeyPairPem {
  publicKeyPem: string;
  privateKeyPem: string;
}

export interface IssuedCert {
  certPem: string;
  keyPem: string;
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
  /** Hex SHA-256 of the public key (SubjectKeyIdentifier-like, used as SigningKeyID). */
  keyId: string;
}

export interface Signer {
  certPem: string;
  keyPem: string;
}

async function generateKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function exportKeyPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

async function importKeyPem(pem: string): Promise<CryptoKey> {
  const der = x509.PemConverter.decode(pem)[0];
  return webcrypto.subtle.importKey('pkcs8', der, EC, true, ['sign']);
}

function serial(): string {
  const b = webcrypto.getRandomValues(new Uint8Array(16));
  b[0] &= 0x7f; // positive
  if (b[0] === 0) b[0] = 1;
  return Buffer.from(b).toString('hex');
}

async function keyIdOf(publicKey: CryptoKey): Promise<string> {
  const spki = await webcrypto.subtle.exportKey('spki', publicKey);
  const digest = await webcrypto.subtle.digest('SHA-256', spki);
  return Buffer.from(digest).toString('hex');
}

function window(ttlMs: number, now = Date.now()): { notBefore: Date; notAfter: Date } {
  return { notBefore: new Date(now - BACKDATE_MS), notAfter: new Date(now + ttlMs) };
}

async function finish(cert: x509.X509Certificate, keys: CryptoKeyPair): Promise<IssuedCert> {
  return {
    certPem: cert.toString('pem'),
    keyPem: await exportKeyPem(keys.privateKey),
    serialNumber: cert.serialNumber,
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    keyId: await keyIdOf(keys.publicKey),
  };
}

async function caExtensions(publicKey: CryptoKey, uri: string, pathLength?: number): Promise<x509.Extension[]> {
  return [
    new x509.BasicConstraintsExtension(true, pathLength, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
    new x509.SubjectAlternativeNameExtension([{ type: 'url', value: uri }]),
    await x509.SubjectKeyIdentifierExtension.create(publicKey),
  ];
}

/** A self-signed root for the trust domain. */
export async function createRoot(opts: { trustDomain: string; commonName: string; ttlMs: number }): Promise<IssuedCert> {
  const keys = await generateKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${opts.commonName}`,
    ...window(opts.ttlMs),
    signingAlgorithm: SIGN,
    keys,
    extensions: await caExtensions(keys.publicKey, trustDomainSpiffeId(opts.trustDomain)),
  });
  return finish(cert, keys);
}

/** A CA certificate for `subjectKeyPem`'s key (a DC intermediate, or a new root cross-signed by the old one). */
export async function signCa(opts: {
  signer: Signer;
  /** The subject's private key (PKCS#8), or give its public key alone as subjectPublicKeyPem. */
  subjectKeyPem?: string;
  subjectPublicKeyPem?: string;
  commonName: string;
  trustDomain: string;
  ttlMs: number;
  pathLength?: number;
}): Promise<{ certPem: string; serialNumber: string; notBefore: Date; notAfter: Date }> {
  const publicKey = opts.subjectPublicKeyPem
    ? await importPublicKeyPem(opts.subjectPublicKeyPem)
    : await publicFromPrivate(await importKeyPem(opts.subjectKeyPem ?? ''));
  const issuer = new x509.X509Certificate(opts.signer.certPem);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${opts.commonName}`,
    issuer: issuer.subject,
    ...window(opts.ttlMs),
    signingAlgorithm: SIGN,
    publicKey,
    signingKey: await importKeyPem(opts.signer.keyPem),
    extensions: [
      ...(await caExtensions(publicKey, trustDomainSpiffeId(opts.trustDomain), opts.pathLength)),
      await x509.AuthorityKeyIdentifierExtension.create(await issuer.publicKey.export()),
    ],
  });
  return { certPem: cert.toString('pem'), serialNumber: cert.serialNumber, notBefore: cert.notBefore, notAfter: cert.notAfter };
}

async function importPublicKeyPem(pem: string): Promise<CryptoKey> {
  const der = x509.PemConverter.decode(pem)[0];
  if (!der) throw new Error('not a PEM public key');
  return webcrypto.subtle.importKey('spki', der, EC, true, ['verify']);
}

/** The public key (SPKI PEM) of a PKCS#8 private key: what leaves this process when another signs for it. */
export async function publicKeyPemOf(privateKeyPem: string): Promise<string> {
  const pub = await publicFromPrivate(await importKeyPem(privateKeyPem));
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey('spki', pub), 'PUBLIC KEY');
}

/** A fresh key pair, as PEM (for an intermediate whose certificate is signed elsewhere). */
export async function newKeyPem(): Promise<string> {
  return exportKeyPem((await generateKeys()).privateKey);
}

/** A leaf for a SPIFFE identity, signed by `signer` (the DC's intermediate). */
export async function signLeaf(opts: {
  signer: Signer;
  spiffeId: string;
  dnsNames: string[];
  commonName: string;
  ttlMs: number;
  now?: number;
}): Promise<IssuedCert> {
  const keys = await generateKeys();
  const issuer = new x509.X509Certificate(opts.signer.certPem);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${opts.commonName}`,
    issuer: issuer.subject,
    ...window(opts.ttlMs, opts.now),
    signingAlgorithm: SIGN,
    publicKey: keys.publicKey,
    signingKey: await importKeyPem(opts.signer.keyPem),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: opts.spiffeId }, ...opts.dnsNames.map((d) => ({ type: 'dns' as const, value: d }))]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(await issuer.publicKey.export()),
    ],
  });
  return finish(cert, keys);
}

async function publicFromPrivate(privateKey: CryptoKey): Promise<CryptoKey> {
  const jwk = await webcrypto.subtle.exportKey('jwk', privateKey);
  delete jwk.d;
  jwk.key_ops = ['verify'];
  return webcrypto.subtle.importKey('jwk', jwk, EC, true, ['verify']);
}

export interface CertInfo {
  serialNumber: string;
  subject: string;
  issuer: string;
  notBefore: Date;
  notAfter: Date;
  uris: string[];
  dnsNames: string[];
  isCa: boolean;
}

export function inspect(pem: string): CertInfo {
  const cert = new x509.X509Certificate(pem);
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  const names = san?.names.toJSON() ?? [];
  return {
    serialNumber: cert.serialNumber,
    subject: cert.subject,
    issuer: cert.issuer,
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    uris: names.filter((n) => n.type === 'url').map((n) => n.value),
    dnsNames: names.filter((n) => n.type === 'dns').map((n) => n.value),
    isCa: bc?.ca ?? false,
  };
}

/** Hex SHA-256 of the certificate's public key. */
export async function keyIdOfCert(pem: string): Promise<string> {
  const cert = new x509.X509Certificate(pem);
  const spki = cert.publicKey.rawData;
  return Buffer.from(await webcrypto.subtle.digest('SHA-256', spki)).toString('hex');
}
