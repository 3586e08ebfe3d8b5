// Certificates for the local CA (local-ca.ts), built with node:crypto and a
// few lines of DER (der.ts) instead of a general X.509 library: a leaf is one
// P-256 key generation, one TBSCertificate assembled from precomputed parts,
// and one signature with the CA key imported once, ~0.1 ms of CPU in all
// (selfsigned took ~10 ms: it re-imported the CA key and ran a full ASN.1
// schema engine per leaf). Profiles (RFC 5280):
//   leaf: v3, random positive 16-byte serial, issuer = the CA certificate's subject
//         copied byte for byte, subject O=edgeway local [+ CN], P-256 key,
//         basicConstraints cA=false (critical), keyUsage digitalSignature
//         (critical), extKeyUsage serverAuth, subjectAltName dNSName(s),
//         subjectKeyIdentifier, authorityKeyIdentifier = the CA's key id.
//   CA:   self-signed, basicConstraints cA pathLen 0 (critical), keyUsage
//         keyCertSign+cRLSign (critical), subjectKeyIdentifier.

import { createECDH, createHash, createPrivateKey, randomBytes, sign, type ECDH, type KeyObject, type X509Certificate } from 'node:crypto';
import {
  bitString,
  bytesOf,
  children,
  contentOf,
  directoryString,
  explicitTag,
  ia5,
  implicitTag,
  octetString,
  oid,
  pem,
  read,
  seq,
  set,
  smallInt,
  TAG,
  time,
  tlv,
  TRUE,
  uint,
} from './der.js';

const OID = {
  ecPublicKey: '1.2.840.10045.2.1',
  prime256v1: '1.2.840.10045.3.1.7',
  ecdsaWithSHA256: '1.2.840.10045.4.3.2',
  sha256WithRSAEncryption: '1.2.840.113549.1.1.11',
  organizationName: '2.5.4.10',
  commonName: '2.5.4.3',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
} as const;

const VERSION_3 = tlv(explicitTag(0), smallInt(2));
const P256_ALGORITHM = seq(oid(OID.ecPublicKey), oid(OID.prime256v1));
const SKI_OID = oid(OID.subjectKeyIdentifier);

const ext = (id: string, critical: boolean, value: Uint8Array): Buffer =>
  critical ? seq(oid(id), TRUE, octetString(value)) : seq(oid(id), octetString(value));

/** The extensions every leaf carries unchanged, encoded once. */
const LEAF_FIXED_EXTENSIONS = Buffer.concat([
  ext(OID.basicConstraints, true, seq()),
  // ECDSA keys sign (ECDHE); keyEncipherment is an RSA-only usage (RFC 5480 §3).
  ext(OID.keyUsage, true, Buffer.from([TAG.BIT_STRING, 2, 7, 0x80])), // digitalSignature
  ext(OID.extKeyUsage, false, seq(oid(OID.serverAuth))),
]);

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING's bits. */
function keyId(spki: Uint8Array): Buffer {
  const [, key] = children(spki, read(spki, 0));
  if (key === undefined || key.tag !== TAG.BIT_STRING) throw new Error('SubjectPublicKeyInfo without a key');
  return createHash('sha1').update(spki.subarray(key.content + 1, key.end)).digest();
}

function name(o: string, cn: string | undefined): Buffer {
  const rdns = [set(seq(oid(OID.organizationName), directoryString(o)))];
  if (cn !== undefined) rdns.push(set(seq(oid(OID.commonName), directoryString(cn))));
  return seq(...rdns);
}

/** A random positive 16-byte serial (RFC 5280 §4.1.2.2: ≤ 20 octets, ≥ 64 bits of entropy per CA/B BR). */
function serial(): Buffer {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) || 1; // positive, and 16 bytes long in minimal DER
  return uint(b);
}

interface KeyPair {
  /** SubjectPublicKeyInfo DER. */
  readonly spki: Buffer;
  /** PKCS#8 "PRIVATE KEY" PEM, the form `openssl genpkey` and node:crypto write. */
  readonly keyPem: string;
}

let ecdh: ECDH | undefined;

/**
 * A fresh P-256 key pair. ECDH key generation plus a fixed-layout encoding:
 * node's KeyObject export goes through OpenSSL's encoder lookup and costs
 * ~0.2 ms for SPKI + PKCS#8, ten times the key generation itself.
 */
export function newP256Key(): KeyPair {
  ecdh ??= createECDH('prime256v1');
  ecdh.generateKeys();
  const point = ecdh.getPublicKey(); // uncompressed, 65 bytes
  const priv = Buffer.alloc(32);
  const raw = ecdh.getPrivateKey();
  raw.copy(priv, 32 - raw.length); // left-pad: the scalar may have leading zero bytes
  const spki = seq(P256_ALGORITHM, bitString(point));
  // RFC 5915 ECPrivateKey inside RFC 5208 PrivateKeyInfo; curve in the algorithm, public key included.
  const ecPrivateKey = seq(smallInt(1), octetString(priv), tlv(explicitTag(1), bitString(point)));
  const der = seq(smallInt(0), P256_ALGORITHM, octetString(ecPrivateKey));
  return { spki, keyPem: pem('PRIVATE KEY', der) };
}

/** AlgorithmIdentifier and digest for signing with `key`. */
function signatureAlgorithm(key: KeyObject): Buffer {
  switch (key.asymmetricKeyType) {
    case 'ec':
      return seq(oid(OID.ecdsaWithSHA256)); // no parameters (RFC 5758 §3.2)
    case 'rsa':
      return seq(oid(OID.sha256WithRSAEncryption), Buffer.from([0x05, 0x00]));
    default:
      throw new Error(`unsupported CA key type ${String(key.asymmetricKeyType)} (ECDSA or RSA)`);
  }
}

/** Signs a TBSCertificate: the Certificate DER, in PEM. ECDSA signatures come out DER-encoded, as X.509 wants. */
function certificate(tbs: Buffer, sigAlg: Buffer, key: KeyObject): string {
  return pem('CERTIFICATE', seq(tbs, sigAlg, bitString(sign('sha256', tbs, key))));
}

function tbsCertificate(sigAlg: Buffer, issuer: Uint8Array, notBefore: number, notAfter: number, subject: Buffer, spki: Buffer, extensions: Uint8Array[]): Buffer {
  return seq(VERSION_3, serial(), sigAlg, issuer, seq(time(notBefore), time(notAfter)), subject, spki, tlv(explicitTag(3), seq(...extensions)));
}

/** What the CA certificate contributes to every leaf, read from its DER once. */
function caFacts(certDer: Uint8Array): { subject: Uint8Array; keyId: Buffer } {
  const tbs = children(certDer, read(certDer, 0))[0];
  if (tbs === undefined) throw new Error('CA certificate: no TBSCertificate');
  const fields = children(certDer, tbs);
  const v = fields[0]?.tag === explicitTag(0) ? 1 : 0;
  const subject = fields[v + 4];
  const spki = fields[v + 5];
  if (subject === undefined || spki === undefined) throw new Error('CA certificate: truncated TBSCertificate');
  let ski: Buffer | undefined;
  const exts = fields.find((f) => f.tag === explicitTag(3));
  if (exts !== undefined) {
    const list = children(certDer, exts)[0];
    for (const e of list === undefined ? [] : children(certDer, list)) {
      const parts = children(certDer, e);
      const id = parts[0];
      const value = parts.at(-1);
      if (id === undefined || value === undefined || !Buffer.from(bytesOf(certDer, id)).equals(SKI_OID)) continue;
      const inner = read(certDer, value.content, value.end);
      ski = Buffer.from(contentOf(certDer, inner));
    }
  }
  // A CA created before edgeway wrote an SKI: its key id by method 1, the value
  // an SKI would hold. Not optional: verifiers match the AKI against a key id
  // they compute for an issuer without SKI (Node's TLS rejects a mismatch).
  return { subject: Buffer.from(bytesOf(certDer, subject)), keyId: ski ?? keyId(bytesOf(certDer, spki)) };
}

/** Mints leaves signed by one CA; its key and certificate are parsed here, once. */
export class LeafMinter {
  readonly #key: KeyObject;
  readonly #sigAlg: Buffer;
  readonly #issuer: Uint8Array;
  readonly #aki: Buffer;

  /** Throws when the key type cannot sign certificates here or the certificate does not parse. */
  constructor(caCert: X509Certificate, caKeyPem: string) {
    this.#key = createPrivateKey(caKeyPem);
    this.#sigAlg = signatureAlgorithm(this.#key);
    const ca = caFacts(caCert.raw);
    this.#issuer = ca.subject;
    this.#aki = ext(OID.authorityKeyIdentifier, false, seq(tlv(implicitTag(0), ca.keyId)));
  }

  /**
   * A leaf for `names` (SAN entries in this order), subject O=edgeway local
   * plus CN=`cn` when given, valid from `notBefore` to `notAfter` (epoch ms,
   * whole seconds are encoded).
   */
  mint(names: readonly string[], cn: string | undefined, notBefore: number, notAfter: number): { certPem: string; keyPem: string } {
    const { spki, keyPem } = newP256Key();
    const san = ext(OID.subjectAltName, false, seq(...names.map((n) => ia5(n, implicitTag(2)))));
    const ski = ext(OID.subjectKeyIdentifier, false, octetString(keyId(spki)));
    const tbs = tbsCertificate(this.#sigAlg, this.#issuer, notBefore, notAfter, name('edgeway local', cn), spki, [LEAF_FIXED_EXTENSIONS, san, ski, this.#aki]);
    return { certPem: certificate(tbs, this.#sigAlg, this.#key), keyPem };
  }
}

/** A new self-signed CA (P-256, ecdsa-with-SHA256): subject O=`o`, CN=`cn`. */
export function createCACertificate(o: string, cn: string, notBefore: number, notAfter: number): { certPem: string; keyPem: string } {
  const { spki, keyPem } = newP256Key();
  const key = createPrivateKey(keyPem);
  const sigAlg = signatureAlgorithm(key);
  const subject = name(o, cn);
  const extensions = [
    // pathLen 0: this CA signs leaves only, never another CA (RFC 5280 §4.2.1.9).
    ext(OID.basicConstraints, true, seq(TRUE, smallInt(0))),
    ext(OID.keyUsage, true, Buffer.from([TAG.BIT_STRING, 2, 1, 0x06])), // keyCertSign, cRLSign
    ext(OID.subjectKeyIdentifier, false, octetString(keyId(spki))),
  ];
  return { certPem: certificate(tbsCertificate(sigAlg, subject, notBefore, notAfter, subject, spki, extensions), sigAlg, key), keyPem };
}
