// Self-signed mode (DESIGN.md "Command line"): edgeway keeps its own CA in
// data_dir and mints one short-lived leaf per routed name, so that every host
// has a valid chain once the operator trusts the CA, the way mkcert does for
// developers. Exact-name leaves because browsers refuse a wildcard directly
// under a public suffix such as `localhost` (and a wildcard covers one label
// only, RFC 6125 §6.4.3, so `*.localhost` could never cover uc hosts anyway).
//
// Only the control plane opens the CA; data-plane workers receive bundles.

import { X509Certificate, createHash } from 'node:crypto';
import { chmod, mkdir, readFile, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { generate } from 'selfsigned';
import { EdgewayError } from '../errors.js';
import { writeFileAtomic } from './atomic-write.js';
import { bundleFromPem, joinPem, pemCertificates, type CertBundle } from './cert-bundle.js';

const DAY_MS = 86_400_000;
const CA_DAYS = 3650;
/** Leaves start slightly in the past: containers and laptops with a skewed clock would otherwise see "not yet valid". */
const BACKDATE_MS = 5 * 60_000;
/** X.520 ub-common-name (RFC 5280 Appendix A): longer names (every uc host) go in the SAN only. */
const MAX_CN = 64;
/** A lower-case DNS name, optionally `*.` + name; labels 1-63 of [a-z0-9-], no leading/trailing hyphen. */
const NAME_RE = /^(?:\*\.)?(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** File names longer than this are replaced by a hash (NAME_MAX is 255 bytes). */
const MAX_FILE_STEM = 200;

function isEnoent(e: unknown): boolean {
  return (e as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    if (isEnoent(e)) return undefined;
    throw e;
  }
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Lower-cased, validated, de-duplicated, sorted: the cache key of a leaf. */
function normalizeNames(names: readonly string[]): string[] {
  const out = new Set<string>();
  for (const raw of names) {
    const name = raw.toLowerCase();
    if (name.length > 253 || !NAME_RE.test(name)) {
      throw new EdgewayError('INVALID_FIELD', `host: not a DNS name: ${JSON.stringify(raw)}`, { field: 'host' });
    }
    out.add(name);
  }
  if (out.size === 0) throw new EdgewayError('INVALID_FIELD', 'host: no names to certify', { field: 'host' });
  return [...out].sort();
}

/**
 * `uc-….org-….localhost`, `_.org-x.localhost` for `*.org-x.localhost`,
 * `_.localhost+localhost` for several names. `_` and `+` never occur in a
 * validated name, so stems cannot collide; overlong ones become `h_<sha256>`
 * (a collision there is caught by the name check on load).
 */
function fileStem(sorted: readonly string[]): string {
  const stem = sorted.map((n) => n.replace('*', '_')).join('+');
  return stem.length <= MAX_FILE_STEM ? stem : 'h_' + createHash('sha256').update(stem).digest('hex');
}

export class LocalCA {
  readonly certPath: string;
  readonly keyPath: string;
  readonly certPem: string;
  /** SHA-256 fingerprint of the CA certificate, as `openssl x509 -fingerprint -sha256` prints it. */
  readonly fingerprint: string;
  readonly #keyPem: string;
  readonly #publicKey: X509Certificate['publicKey'];
  readonly #leafDir: string;
  readonly #leafMs: number;
  readonly #mem = new Map<string, CertBundle>();
  readonly #inflight = new Map<string, Promise<CertBundle>>();

  private constructor(certPath: string, keyPath: string, certPem: string, keyPem: string, leafDir: string, leafDays: number) {
    const x509 = new X509Certificate(certPem);
    this.certPath = certPath;
    this.keyPath = keyPath;
    this.certPem = certPem;
    this.fingerprint = x509.fingerprint256;
    this.#keyPem = keyPem;
    this.#publicKey = x509.publicKey;
    this.#leafDir = leafDir;
    this.#leafMs = leafDays * DAY_MS;
  }

  /**
   * Loads `${dataDir}/ca/edgeway-local-ca.{crt,key}` or creates them (ECDSA
   * P-256, sha256, basicConstraints cA critical, keyUsage keyCertSign+cRLSign,
   * 10 years). Key file 0600, dir 0700. A certificate whose key is gone is an
   * error rather than a silent new CA: the old one may be trusted somewhere.
   */
  static async open(dataDir: string, opts: { leafDays: number }): Promise<LocalCA> {
    if (!Number.isFinite(opts.leafDays) || opts.leafDays <= 0) {
      throw new EdgewayError('CONFIG_INVALID', 'tls.leaf_days: must be a positive number', { field: 'tls.leaf_days' });
    }
    const caDir = join(dataDir, 'ca');
    const leafDir = join(dataDir, 'certs', 'local');
    for (const dir of [caDir, leafDir]) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await chmod(dir, 0o700); // also tightens a directory that existed with looser bits
    }
    const certPath = join(caDir, 'edgeway-local-ca.crt');
    const keyPath = join(caDir, 'edgeway-local-ca.key');
    let certPem = await readIfExists(certPath);
    let keyPem = await readIfExists(keyPath);
    if (certPem === undefined) {
      // No certificate means nobody can have trusted this CA yet (the key is
      // written first), so a lone key from an interrupted start is replaced.
      ({ certPem, keyPem } = await createCA());
      await writeFileAtomic(keyPath, keyPem, 0o600);
      await writeFileAtomic(certPath, certPem, 0o644);
    } else if (keyPem === undefined) {
      throw caError(certPath, `${keyPath} is missing; restore it, or delete the certificate to create a new CA (and trust it again)`);
    } else {
      checkCA(certPath, certPem, keyPem);
      await chmod(keyPath, 0o600);
    }
    return new LocalCA(certPath, keyPath, pemCertificates(certPem).join(''), keyPem, leafDir, opts.leafDays);
  }

  /** Exact-name leaf (a wildcard leaf when `name` starts with `*.`); certPem = leaf + CA cert. */
  leafFor(name: string): Promise<CertBundle> {
    return this.leafForNames([name]);
  }

  /**
   * Leaf covering several names (the fallback: [domain, '*.' + domain]).
   * Served from memory, else from `${dataDir}/certs/local/<stem>.{crt,key}`,
   * else minted; a cached leaf is reused while more than 1/3 of its lifetime
   * remains. Concurrent calls for the same names share one mint.
   */
  leafForNames(names: readonly string[]): Promise<CertBundle> {
    let sorted: string[];
    try {
      sorted = normalizeNames(names);
    } catch (e) {
      return Promise.reject(e);
    }
    const key = sorted.join(' ');
    const cached = this.#mem.get(key);
    if (cached !== undefined && !this.needsRenewal(cached)) return Promise.resolve(cached);
    let pending = this.#inflight.get(key);
    if (pending === undefined) {
      pending = this.#obtain(key, sorted).finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, pending);
    }
    return pending;
  }

  /** True when less than 1/3 of the bundle's lifetime is left (certbot's and Caddy's renewal point). */
  needsRenewal(b: CertBundle, now: number = Date.now()): boolean {
    const end = b.notAfter.getTime();
    return end - now < (end - b.notBefore.getTime()) / 3;
  }

  /** Drops a leaf from memory and disk (a host entry was deleted). */
  async forget(names: readonly string[]): Promise<void> {
    const sorted = normalizeNames(names);
    this.#mem.delete(sorted.join(' '));
    const stem = join(this.#leafDir, fileStem(sorted));
    await Promise.all([rm(stem + '.crt', { force: true }), rm(stem + '.key', { force: true })]);
  }

  /**
   * One shell command that makes this machine trust the CA: the Debian/Ubuntu
   * system store (curl, wget, most tools). Browsers on Linux keep their own NSS
   * store and need the certificate imported there as well.
   */
  trustCommand(): string {
    return (
      `sudo install -m 0644 ${shellQuote(this.certPath)} /usr/local/share/ca-certificates/edgeway-local-ca.crt` +
      ' && sudo update-ca-certificates'
    );
  }

  async #obtain(key: string, sorted: readonly string[]): Promise<CertBundle> {
    const stem = join(this.#leafDir, fileStem(sorted));
    let bundle = await this.#loadLeaf(stem, sorted);
    if (bundle === undefined || this.needsRenewal(bundle)) {
      bundle = await this.#mint(sorted);
      // Key first: a crash between the two writes leaves a pair that fails
      // the key check on load and is simply minted again.
      await writeFileAtomic(stem + '.key', bundle.keyPem, 0o600);
      await writeFileAtomic(stem + '.crt', bundle.certPem, 0o644);
    }
    this.#mem.set(key, bundle);
    return bundle;
  }

  /** A cached leaf, when it parses, matches its key, covers exactly these names and was signed by this CA. */
  async #loadLeaf(stem: string, sorted: readonly string[]): Promise<CertBundle | undefined> {
    const [certPem, keyPem] = await Promise.all([readIfExists(stem + '.crt'), readIfExists(stem + '.key')]);
    if (certPem === undefined || keyPem === undefined) return undefined;
    try {
      const b = bundleFromPem(certPem, keyPem);
      const leaf = new X509Certificate(pemCertificates(certPem)[0] ?? '');
      const same = b.names.length === sorted.length && [...b.names].sort().every((n, i) => n === sorted[i]);
      return same && leaf.verify(this.#publicKey) ? b : undefined;
    } catch {
      return undefined; // torn or foreign files: mint a fresh pair over them
    }
  }

  async #mint(sorted: readonly string[]): Promise<CertBundle> {
    const now = Date.now();
    const cn = sorted.find((n) => !n.startsWith('*.')) ?? sorted[0] ?? '';
    const attrs = [{ name: 'organizationName', value: 'edgeway local' }];
    if (cn.length <= MAX_CN) attrs.push({ name: 'commonName', value: cn });
    const r = await generate(attrs, {
      keyType: 'ec',
      curve: 'P-256',
      algorithm: 'sha256',
      notBeforeDate: new Date(now - BACKDATE_MS),
      notAfterDate: new Date(now + this.#leafMs),
      ca: { key: this.#keyPem, cert: this.certPem },
      extensions: [
        { name: 'basicConstraints', cA: false, critical: true },
        // ECDSA keys sign (ECDHE); keyEncipherment is an RSA-only usage (RFC 5480 §3).
        { name: 'keyUsage', digitalSignature: true, critical: true },
        { name: 'extKeyUsage', serverAuth: true },
        { name: 'subjectAltName', altNames: sorted.map((value) => ({ type: 2 as const, value })) },
      ],
    });
    return bundleFromPem(joinPem(r.cert, this.certPem), r.private);
  }
}

async function createCA(): Promise<{ certPem: string; keyPem: string }> {
  const now = Date.now();
  // The host name tells two machines' CAs apart in a trust store; DN syntax
  // characters are dropped because selfsigned builds the DN from a string.
  const host = hostname().replace(/[^A-Za-z0-9.-]/g, '').slice(0, 40);
  const r = await generate(
    [
      { name: 'organizationName', value: 'edgeway' },
      { name: 'commonName', value: `edgeway local CA ${host}`.trim() },
    ],
    {
      keyType: 'ec',
      curve: 'P-256',
      algorithm: 'sha256',
      notBeforeDate: new Date(now - BACKDATE_MS),
      notAfterDate: new Date(now + CA_DAYS * DAY_MS),
      extensions: [
        // pathLen 0: this CA signs leaves only, never another CA (RFC 5280 §4.2.1.9).
        { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
        { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
      ],
    },
  );
  return { certPem: joinPem(r.cert), keyPem: r.private };
}

function caError(path: string, why: string, cause?: unknown): EdgewayError {
  return new EdgewayError('CONFIG_INVALID', `${path}: ${why}`, { field: 'data_dir', cause });
}

/** The stored CA must still be usable: a CA certificate, its key, not expired. */
function checkCA(certPath: string, certPem: string, keyPem: string): void {
  let b: CertBundle;
  try {
    b = bundleFromPem(certPem, keyPem);
  } catch (e) {
    throw caError(certPath, (e as Error).message, e);
  }
  if (!new X509Certificate(pemCertificates(certPem)[0] ?? '').ca) throw caError(certPath, 'not a CA certificate');
  if (b.notAfter.getTime() <= Date.now()) {
    throw caError(certPath, 'the local CA has expired; delete it and its key to create a new one');
  }
}
