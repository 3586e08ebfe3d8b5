// Where ACME state lives under data_dir (issue 5 "Storage"):
//
//   data_dir/acme/account.key        the account key (ECDSA P-256), 0600
//   data_dir/acme/certs/<id>.crt     leaf + chain as the CA sent it
//   data_dir/acme/certs/<id>.key     its key, 0600
//   data_dir/acme/ledger.json        orders and certificates (order-ledger.ts)
//
// `<id>` is `domain` for {domain} + *.{domain}, `org-<uuid>` for one org's
// wildcard, the first org's id for a batch. Every write is atomic (write,
// fsync, rename, fsync dir): after a crash a certificate is the old pair or
// the new one. The key is written before the certificate: a crash between the
// two leaves a new key with the old certificate, which load() refuses (the
// pair does not match) and the manager orders again, rather than serve a
// certificate with the wrong key.

import { chmod, mkdir, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import * as acme from 'acme-client';
import { writeFileAtomic } from '../tls/atomic-write.js';
import { bundleFromPem, type CertBundle } from '../tls/cert-bundle.js';

export interface StoredCert {
  readonly id: string;
  readonly bundle: CertBundle;
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return undefined;
    throw e;
  }
}

export class AcmeStore {
  readonly dir: string;
  private readonly certDir: string;

  private constructor(dataDir: string) {
    this.dir = join(dataDir, 'acme');
    this.certDir = join(this.dir, 'certs');
  }

  static async open(dataDir: string): Promise<AcmeStore> {
    const s = new AcmeStore(dataDir);
    for (const d of [s.dir, s.certDir]) {
      await mkdir(d, { recursive: true, mode: 0o700 });
      await chmod(d, 0o700);
    }
    return s;
  }

  /** The account key, created (0600) on first use. */
  async accountKey(): Promise<string> {
    const path = join(this.dir, 'account.key');
    const have = await readIfExists(path);
    if (have !== undefined) return have;
    const pem = (await acme.crypto.createPrivateEcdsaKey('P-256')).toString();
    await writeFileAtomic(path, pem, 0o600);
    return pem;
  }

  /**
   * A deactivated account can never order again (RFC 8555 §7.3.6): the key is
   * moved aside (kept, 0600, for the operator's records) and a new one made.
   */
  async rotateAccountKey(): Promise<string> {
    const path = join(this.dir, 'account.key');
    await rename(path, `${path}.deactivated-${Date.now()}`).catch((e: { code?: string }) => {
      if (e.code !== 'ENOENT') throw e;
    });
    return this.accountKey();
  }

  /** Every stored pair that parses and matches; the others are reported through `bad` and skipped. */
  async load(bad: (id: string, err: unknown) => void): Promise<StoredCert[]> {
    const out: StoredCert[] = [];
    for (const f of (await readdir(this.certDir)).sort()) {
      if (!f.endsWith('.crt') || f.startsWith('.')) continue;
      const id = f.slice(0, -4);
      try {
        const cert = await readFile(join(this.certDir, f), 'utf8');
        const key = await readFile(join(this.certDir, `${id}.key`), 'utf8');
        out.push({ id, bundle: bundleFromPem(cert, key) });
      } catch (e) {
        bad(id, e);
      }
    }
    return out;
  }

  async save(id: string, certPem: string, keyPem: string): Promise<void> {
    await writeFileAtomic(join(this.certDir, `${id}.key`), keyPem, 0o600);
    await writeFileAtomic(join(this.certDir, `${id}.crt`), certPem, 0o644);
  }

  async remove(id: string): Promise<void> {
    for (const ext of ['.crt', '.key']) {
      await unlink(join(this.certDir, id + ext)).catch((e: { code?: string }) => {
        if (e.code !== 'ENOENT') throw e;
      });
    }
  }
}
