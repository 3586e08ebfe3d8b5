// tls.mode: files — the operator supplies certificates (a corporate CA, certbot
// run elsewhere, mkcert). Read at start and on SIGHUP; nothing is written.
//
// Recognized pairs in certs_dir (not recursive; dotfiles ignored):
//   <stem>.crt  with  <stem>.key        (the openssl/Debian convention)
//   <stem>.pem  with  <stem>-key.pem    (mkcert's output naming)
// The .crt/.pem file holds the leaf first, then any intermediates. A
// certificate without its key, a pair that does not parse, a key that is not
// the certificate's or a certificate without DNS names stops the load with
// the file named. Stray key files are ignored. Names come from the
// certificate's DNS subjectAltNames, never from the file name.

import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { EdgewayError } from '../errors.js';
import { bundleFromPem, type CertBundle } from './cert-bundle.js';

const KEY_PEM_SUFFIX = '-key.pem';

function loadError(file: string, why: string, cause?: unknown): EdgewayError {
  return new EdgewayError('CONFIG_INVALID', `tls.certs_dir: ${file}: ${why}`, { field: 'tls.certs_dir', cause });
}

/** The key file that goes with a certificate file name, or undefined when it is not a certificate. */
export function keyFileFor(certFile: string): string | undefined {
  if (certFile.startsWith('.')) return undefined;
  if (certFile.endsWith('.crt')) return certFile.slice(0, -4) + '.key';
  if (certFile.endsWith('.pem') && !certFile.endsWith(KEY_PEM_SUFFIX)) return certFile.slice(0, -4) + KEY_PEM_SUFFIX;
  return undefined;
}

/**
 * Every certificate pair in `dir`, in file-name order. When two files cover
 * the same name, the later one wins once they are put in a CertStore.
 */
export async function loadCertsDir(dir: string): Promise<CertBundle[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    throw loadError(dir, `cannot read the directory (${(e as Error).message})`, e);
  }
  const files = entries.filter((d) => d.isFile() || d.isSymbolicLink()).map((d) => d.name);
  const present = new Set(files);
  const bundles: CertBundle[] = [];
  for (const certFile of files.sort()) {
    const keyFile = keyFileFor(certFile);
    if (keyFile === undefined) continue;
    const certPath = join(dir, certFile);
    const keyPath = join(dir, keyFile);
    if (!present.has(keyFile)) throw loadError(certPath, `no key file ${keyFile} next to it`);
    let certPem: string;
    let keyPem: string;
    try {
      [certPem, keyPem] = await Promise.all([readFile(certPath, 'utf8'), readFile(keyPath, 'utf8')]);
    } catch (e) {
      throw loadError(certPath, (e as Error).message, e);
    }
    let bundle: CertBundle;
    try {
      bundle = bundleFromPem(certPem, keyPem);
    } catch (e) {
      // bundleFromPem says whether the certificate or the key is at fault.
      const field = (e as { field?: string }).field;
      if (field === 'key') throw loadError(keyPath, `${(e as Error).message} (certificate ${certFile})`, e);
      throw loadError(certPath, (e as Error).message, e);
    }
    if (bundle.names.length === 0) throw loadError(certPath, 'the certificate has no DNS subjectAltName');
    bundles.push(bundle);
  }
  return bundles;
}
