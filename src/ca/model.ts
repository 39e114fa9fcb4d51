// CA state as kept in the Store, and the Consul shapes the API answers with. Private keys live in
// their own table and never leave this folder except as a leaf's own key to its requester.
import { isDatacenterName } from '../core/names.js';

export const CA_ROOTS = 'ca-roots';
export const CA_INTERMEDIATES = 'ca-intermediates';
export const CA_SECRETS = 'ca-secrets';
export const CA_CONFIG = 'ca-config';

export interface CaRoot {
  ID: string;
  Name: string;
  SerialNumber: string;
  SigningKeyID: string;
  NotBefore: string;
  NotAfter: string;
  RootCert: string;
  /** The cross-signed certificate of this root by the root before it (empty for the first root). */
  IntermediateCerts: string[];
  Active: boolean;
  TrustDomain: string;
  PrivateKeyType: 'ec';
  PrivateKeyBits: 256;
  /** Once inactive: when no leaf signed under it can still be valid, and it leaves the trust bundle. */
  RetireAfter?: string;
}

/**
 * The subject CN of the intermediate the root signs for datacenter `dc`. Only the primary's root
 * signs intermediates, and it names each after the DC it verified (its own, a join token's, or the
 * caller's server identity), so a verified chain's issuer CN says which DC's CA signed a leaf.
 */
export function intermediateCommonName(dc: string, now = Date.now()): string {
  return `Isthmus CA ${dc} ${now.toString(36)}`;
}

/** The DC an intermediate was signed for, from its subject CN; undefined for a root or anything else. */
export function intermediateDcOf(commonName: string | undefined): string | undefined {
  const dc = /^Isthmus CA (\S+) [0-9a-z]+$/.exec(commonName ?? '')?.[1];
  return isDatacenterName(dc) ? dc : undefined;
}

export interface CaIntermediate {
  DC: string;
  RootID: string;
  CertPEM: string;
  SerialNumber: string;
  NotBefore: string;
  NotAfter: string;
  /** Key in CA_SECRETS holding its private key. */
  KeyRef: string;
}

export interface CaConfig {
  /** Leaf lifetime, ms (Consul: LeafCertTTL 72h). */
  LeafCertTTL: number;
  /** Intermediate lifetime, ms (Consul: 8760h). */
  IntermediateCertTTL: number;
  /** Root lifetime, ms (Consul: 87600h). */
  RootCertTTL: number;
  /** Leaf signings per second in this DC; 0 = unbounded (Consul: csr_max_per_second 50). */
  CsrMaxPerSecond: number;
}

export const DEFAULT_CA_CONFIG: CaConfig = {
  LeafCertTTL: 72 * 3_600_000,
  IntermediateCertTTL: 8760 * 3_600_000,
  RootCertTTL: 87600 * 3_600_000,
  CsrMaxPerSecond: 50,
};

/** What /v1/agent/connect/ca/leaf/:service answers (Consul's shape). */
export interface LeafCert {
  SerialNumber: string;
  CertPEM: string;
  PrivateKeyPEM: string;
  Service: string;
  ServiceURI: string;
  ValidAfter: string;
  ValidBefore: string;
  CreateIndex: number;
  ModifyIndex: number;
  /** Isthmus: the certificates to present after the leaf (its intermediate, and cross-signs during a rotation). */
  Chain: string[];
}

/** Trusted roots plus the chain a leaf of this DC presents (leaf + intermediate + cross-signs). */
export interface TrustBundle {
  trustDomain: string;
  activeRootId: string;
  roots: string[];
  /** Certificates a leaf sends after itself: this DC's intermediate and the active root's cross-signs. */
  chain: string[];
  index: number;
}
