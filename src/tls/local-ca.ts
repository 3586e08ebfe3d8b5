// Self-signed mode (DESIGN.md "Command line"): edgeway keeps its own CA in
// data_dir and mints one short-lived leaf per routed name, so that every host
// has a valid chain once the operator trusts the CA, the way mkcert does for
// developers. Exact-name leaves because browsers refuse a wildcard directly
// under a public suffix such as `localhost` (and a wildcard covers one label
// only, RFC 6125 §6.4.3, so `*.localhost` could never cover uc hosts anyway).
//
// Only the control plane opens the CA (and its key); data-plane workers receive
// bundles, and read the leaf files of restored hosts on first use (leafReader).

import { X509Certificate, createHash } from 'node:crypto';
import { chmod, mkdir, readFile, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { EdgewayError } from '../errors.js';
import { writeFileAtomic } from './atomic-write.js';

const NOT_DURABLE = { durable: false } as const;
import { bundleFromPem, issuerName, pemCertificates, type CertBundle } from './cert-bundle.js';
import { createCACertificate, LeafMinter } from './leaf-minter.js';

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
  /** Holds the CA key, imported once. */
  readonly #minter: LeafMinter;
  /** The CA's CN (the issuer of every leaf), for CertBundle.issuer. */
  readonly #issuer: string;
  readonly #publicKey: X509Certificate['publicKey'];
  readonly #leafDir: string;
  readonly #leafMs: number;
  readonly #mem = new Map<string, CertBundle>();
  readonly #inflight = new Map<string, Promise<CertBundle>>();
  /** Renewal points (epoch ms) of leaves only checked by leafDue, not held in memory. */
  readonly #renewAt = new Map<string, number>();

  private constructor(certPath: string, keyPath: string, certPem: string, keyPem: string, leafDir: string, leafDays: number) {
    const x509 = new X509Certificate(certPem);
    this.certPath = certPath;
    this.keyPath = keyPath;
    this.certPem = certPem;
    this.fingerprint = x509.fingerprint256;
    try {
      this.#minter = new LeafMinter(x509, keyPem);
    } catch (e) {
      throw caError(certPath, (e as Error).message, e);
    }
    this.#issuer = issuerName(x509.subject);
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
      ({ certPem, keyPem } = createCA());
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
  needsRenewal(b: Pick<CertBundle, 'notBefore' | 'notAfter'>, now: number = Date.now()): boolean {
    const end = b.notAfter.getTime();
    return end - now < (end - b.notBefore.getTime()) / 3;
  }

  /**
   * Whether the leaf for `name` must be minted (again): none in memory or on
   * disk, or due for renewal. For leaves the data planes load on first use,
   * which the control plane never handed over. The first check reads the
   * certificate and only stats the key (leaf files are not fsynced: after a
   * power cut a key can come back empty, see writeLeafFile); its renewal
   * point is remembered, so later checks of 100,000 restored hosts are a Map
   * lookup each.
   */
  async leafDue(name: string): Promise<boolean> {
    const sorted = normalizeNames([name]);
    const key = sorted.join(' ');
    const cached = this.#mem.get(key);
    if (cached !== undefined) return this.needsRenewal(cached);
    let at = this.#renewAt.get(key);
    if (at === undefined) {
      const stem = join(this.#leafDir, fileStem(sorted));
      const [pem, keySize] = await Promise.all([
        readIfExists(stem + '.crt'),
        stat(stem + '.key').then(
          (st) => st.size,
          (e: unknown) => (isEnoent(e) ? 0 : Promise.reject(e)),
        ),
      ]);
      if (pem === undefined || keySize === 0) return true;
      try {
        const leaf = new X509Certificate(pemCertificates(pem)[0] ?? '');
        const end = new Date(leaf.validTo).getTime();
        at = end - (end - new Date(leaf.validFrom).getTime()) / 3;
      } catch {
        return true;
      }
      this.#renewAt.set(key, at);
    }
    return Date.now() >= at;
  }

  /**
   * For a data-plane worker: reads leaves the control plane minted into
   * `${dataDir}/certs/local/` (same checks as the CA's own cache, plus not
   * expired), never mints. The CA's key is not read, only its certificate.
   */
  static leafReader(dataDir: string): (name: string) => Promise<CertBundle | undefined> {
    const leafDir = join(dataDir, 'certs', 'local');
    // Read on first use (synchronous set-up: a worker must not await between
    // its init message and the changes that follow it).
    let caKey: Promise<X509Certificate['publicKey']> | undefined;
    return async (name) => {
      caKey ??= readFile(join(dataDir, 'ca', 'edgeway-local-ca.crt'), 'utf8').then(
        (pem) => new X509Certificate(pemCertificates(pem)[0] ?? '').publicKey,
      );
      const sorted = normalizeNames([name]);
      const b = await loadLeafFiles(join(leafDir, fileStem(sorted)), sorted, await caKey);
      return b !== undefined && b.notAfter.getTime() > Date.now() ? b : undefined;
    };
  }

  /** Drops a leaf from memory and disk (a host entry was deleted). */
  async forget(names: readonly string[]): Promise<void> {
    const sorted = normalizeNames(names);
    this.#mem.delete(sorted.join(' '));
    this.#renewAt.delete(sorted.join(' '));
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
      bundle = this.#mint(sorted);
      // Key first: a reader (leafReader) or a crash between the two writes
      // sees a pair that fails the key check on load, which is minted again.
      // Atomic but not fsynced: a leaf lost or torn by a power cut (on ext4 a
      // new file can come back empty or missing) fails the checks on load
      // (loadLeafFiles, leafReader; leafDue checks the .crt and that the .key
      // is not empty) and is simply minted again, so durability is not worth
      // two fsyncs of the files and two of the directory per new host.
      await writeFileAtomic(stem + '.key', bundle.keyPem, 0o600, NOT_DURABLE);
      await writeFileAtomic(stem + '.crt', bundle.certPem, 0o644, NOT_DURABLE);
    }
    this.#mem.set(key, bundle);
    this.#renewAt.delete(key); // the bundle in memory is what counts now
    return bundle;
  }

  #loadLeaf(stem: string, sorted: readonly string[]): Promise<CertBundle | undefined> {
    return loadLeafFiles(stem, sorted, this.#publicKey);
  }

  /**
   * A new leaf (leaf-minter.ts has the profile): SAN = the sorted names, CN =
   * the first exact name (else the first) when it fits in 64 characters. The
   * bundle is built from what was encoded, not parsed back (tests check that
   * both agree): the dates are the encoded whole seconds.
   */
  #mint(sorted: readonly string[]): CertBundle {
    const now = Date.now();
    const cn = sorted.find((n) => !n.startsWith('*.')) ?? sorted[0] ?? '';
    const notBefore = wholeSeconds(now - BACKDATE_MS);
    const notAfter = wholeSeconds(now + this.#leafMs);
    const leaf = this.#minter.mint(sorted, cn.length <= MAX_CN ? cn : undefined, notBefore, notAfter);
    return {
      names: [...sorted],
      certPem: leaf.certPem + this.certPem,
      keyPem: leaf.keyPem,
      notBefore: new Date(notBefore),
      notAfter: new Date(notAfter),
      issuer: this.#issuer,
    };
  }
}

/** A cached leaf, when it parses, matches its key, covers exactly these names and was signed by this CA. */
async function loadLeafFiles(stem: string, sorted: readonly string[], caKey: X509Certificate['publicKey']): Promise<CertBundle | undefined> {
  const [certPem, keyPem] = await Promise.all([readIfExists(stem + '.crt'), readIfExists(stem + '.key')]);
  if (certPem === undefined || keyPem === undefined) return undefined;
  try {
    const b = bundleFromPem(certPem, keyPem);
    const leaf = new X509Certificate(pemCertificates(certPem)[0] ?? '');
    const same = b.names.length === sorted.length && [...b.names].sort().every((n, i) => n === sorted[i]);
    return same && leaf.verify(caKey) ? b : undefined;
  } catch {
    return undefined; // torn or foreign files: mint a fresh pair over them
  }
}

/** ECDSA P-256, basicConstraints cA pathLen 0, keyCertSign+cRLSign, 10 years (leaf-minter.ts). */
function createCA(): { certPem: string; keyPem: string } {
  const now = Date.now();
  // The host name tells two machines' CAs apart in a trust store; anything
  // but letters, digits, '.' and '-' is dropped to keep the CN a plain
  // PrintableString.
  const host = hostname().replace(/[^A-Za-z0-9.-]/g, '').slice(0, 40);
  return createCACertificate('edgeway', `edgeway local CA ${host}`.trim(), wholeSeconds(now - BACKDATE_MS), wholeSeconds(now + CA_DAYS * DAY_MS));
}

/** X.509 times have whole seconds: truncate, as the encoder does, so the bundle's dates equal the certificate's. */
function wholeSeconds(ms: number): number {
  return Math.floor(ms / 1000) * 1000;
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
