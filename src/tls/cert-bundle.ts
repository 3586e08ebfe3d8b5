// A certificate as edgeway serves it: the leaf with its chain, the key, and the
// facts about the leaf that routing (names), renewal (dates) and /v1/certs
// (issuer) need, parsed once with node:crypto so nothing re-parses per handshake.
// Plain data, so it crosses the control-plane → data-plane IPC channel as is.

import { X509Certificate, createPrivateKey } from 'node:crypto';
import { EdgewayError } from '../errors.js';

export interface CertBundle {
  /** DNS SANs, lower-case, e.g. ['org-x.localhost'] or ['localhost', '*.localhost']. */
  readonly names: readonly string[];
  /** Leaf followed by its chain (intermediates/CA as served). */
  readonly certPem: string;
  readonly keyPem: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Issuer CN, or the issuer DN when it has no CN, for /v1/certs. */
  readonly issuer: string;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * The certificate blocks of a PEM text, each ending in a newline. Anything
 * else in the text (a key, comments, `openssl x509 -text` output) is dropped.
 * Needed because some generators omit the final newline, and plain
 * concatenation then yields `-----END CERTIFICATE----------BEGIN…`, which
 * OpenSSL rejects.
 */
export function pemCertificates(pem: string): string[] {
  const blocks = pem.match(PEM_CERT);
  return blocks === null ? [] : blocks.map((b) => b + '\n');
}

/**
 * DNS names of a certificate's subjectAltName, lower-cased, in order, without
 * duplicates. Node renders the extension as `DNS:a, DNS:b, IP Address:…` and
 * quotes entries holding `,` or `"` (which no valid DNS name has, so those are
 * skipped). The subject CN is ignored: RFC 6125 §6.4.4 and every current
 * browser use the SAN alone when one is present.
 */
export function dnsNames(cert: X509Certificate): string[] {
  const san = cert.subjectAltName;
  if (san === undefined) return [];
  const names: string[] = [];
  for (const part of san.split(', ')) {
    if (!part.startsWith('DNS:')) continue;
    const name = part.slice(4).toLowerCase();
    if (name.length > 0 && !name.startsWith('"') && !names.includes(name)) names.push(name);
  }
  return names;
}

/** The CN of a DN as node:crypto prints it (one `KEY=value` per line), else the DN on one line. */
export function issuerName(dn: string): string {
  const lines = dn.split('\n');
  const cn = lines.find((l) => l.startsWith('CN='));
  return cn !== undefined ? cn.slice(3) : lines.join(', ');
}

/**
 * Parses a certificate (leaf first, then its chain) and its private key.
 * Throws INVALID_FIELD (field `cert` or `key`) when either does not parse or
 * the key is not the leaf's. Callers that read files wrap this to name the file.
 */
export function bundleFromPem(certPem: string, keyPem: string): CertBundle {
  const blocks = pemCertificates(certPem);
  const first = blocks[0];
  if (first === undefined) {
    throw new EdgewayError('INVALID_FIELD', 'cert: no PEM certificate found', { field: 'cert' });
  }
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(first);
  } catch (e) {
    throw new EdgewayError('INVALID_FIELD', `cert: ${(e as Error).message}`, { field: 'cert', cause: e });
  }
  let key;
  try {
    key = createPrivateKey(keyPem);
  } catch (e) {
    throw new EdgewayError('INVALID_FIELD', `key: ${(e as Error).message}`, { field: 'key', cause: e });
  }
  if (!leaf.checkPrivateKey(key)) {
    throw new EdgewayError('INVALID_FIELD', 'key: private key does not match the certificate', { field: 'key' });
  }
  return {
    names: dnsNames(leaf),
    certPem: blocks.join(''),
    keyPem: keyPem.endsWith('\n') ? keyPem : keyPem + '\n',
    notBefore: new Date(leaf.validFrom),
    notAfter: new Date(leaf.validTo),
    issuer: issuerName(leaf.issuer),
  };
}
