// Loads the JWT key material named by `auth.jwt.*` (DESIGN.md "Tokens"): an
// HMAC secret (inline or from a file) or a public key. Done once at start and
// on SIGHUP, so every check that can fail here fails naming the config key
// instead of surfacing later as "every token is invalid".

import { randomBytes, createPublicKey, type KeyObject } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Algorithm } from 'jsonwebtoken';
import type { Config } from '../config/types.js';
import { EdgewayError } from '../errors.js';

export interface JwtKeys {
  readonly verifyKey: string | Buffer;
  /** The HMAC secret; undefined for public-key configs (verify only). */
  readonly signKey: string | Buffer | undefined;
  readonly algorithms: readonly Algorithm[];
}

const HMAC = new Set<string>(['HS256', 'HS384', 'HS512']);
/** Which key type each asymmetric algorithm needs (jsonwebtoken refuses a mismatch per token; we refuse it at start). */
const ASYMMETRIC: ReadonlyMap<string, readonly string[]> = new Map([
  ['RS256', ['rsa']], ['RS384', ['rsa']], ['RS512', ['rsa']],
  ['PS256', ['rsa', 'rsa-pss']], ['PS384', ['rsa', 'rsa-pss']], ['PS512', ['rsa', 'rsa-pss']],
  ['ES256', ['ec']], ['ES384', ['ec']], ['ES512', ['ec']],
]);

function configError(key: string, message: string, cause?: unknown): EdgewayError {
  return new EdgewayError('CONFIG_INVALID', `${key}: ${message}`, { field: key, cause });
}

/** The working default: `<data_dir>/jwt.secret`, created on first use. */
export function defaultSecretFile(cfg: Config): string {
  return join(cfg.data_dir, 'jwt.secret');
}

export async function loadJwtKeys(cfg: Config): Promise<JwtKeys> {
  const jwt = cfg.auth.jwt;
  const algorithms = checkAlgorithms(jwt.algorithms);
  const symmetric = algorithms.every((a) => HMAC.has(a));
  if (!symmetric && algorithms.some((a) => HMAC.has(a))) {
    // One key cannot serve both: an HMAC secret is not a public key and vice versa.
    throw configError('auth.jwt.algorithms', 'cannot mix HS* with public-key algorithms');
  }

  if (jwt.secret !== undefined && jwt.public_key_file !== undefined) {
    throw configError('auth.jwt.public_key_file', 'set either auth.jwt.secret or auth.jwt.public_key_file, not both');
  }

  if (jwt.public_key_file !== undefined) {
    if (symmetric) throw configError('auth.jwt.algorithms', 'a public key needs RS*, PS* or ES* algorithms');
    const key = await readPublicKey(jwt.public_key_file);
    const type = key.asymmetricKeyType ?? '';
    for (const a of algorithms) {
      if (!ASYMMETRIC.get(a)!.includes(type)) {
        throw configError('auth.jwt.algorithms', `${a} does not fit the ${type || 'unknown'} key in auth.jwt.public_key_file`);
      }
    }
    // Re-exported as SPKI so that a private key file never travels further than here.
    const verifyKey = key.export({ type: 'spki', format: 'pem' }).toString();
    return Object.freeze({ verifyKey, signKey: undefined, algorithms });
  }

  if (!symmetric) {
    throw configError('auth.jwt.algorithms', 'public-key algorithms need auth.jwt.public_key_file');
  }
  let secret: string;
  if (jwt.secret !== undefined) {
    secret = jwt.secret;
    if (secret.length === 0) throw configError('auth.jwt.secret', 'must not be empty');
  } else {
    const file = jwt.secret_file ?? defaultSecretFile(cfg);
    secret = await readSecretFile(file, file === defaultSecretFile(cfg));
  }
  return Object.freeze({ verifyKey: secret, signKey: secret, algorithms });
}

function checkAlgorithms(list: readonly string[]): readonly Algorithm[] {
  if (!Array.isArray(list) || list.length === 0) throw configError('auth.jwt.algorithms', 'must list at least one algorithm');
  for (const a of list) {
    // 'none' is absent from both tables on purpose.
    if (!HMAC.has(a) && !ASYMMETRIC.has(a)) throw configError('auth.jwt.algorithms', `unsupported algorithm ${JSON.stringify(a)}`);
  }
  return Object.freeze([...list] as Algorithm[]);
}

async function readSecretFile(file: string, createIfMissing: boolean): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || !createIfMissing) {
      throw configError('auth.jwt.secret_file', `cannot read ${file}`, e);
    }
    text = await createSecretFile(file);
  }
  // A trailing newline from `echo … > file` is not part of the secret.
  const secret = text.trim();
  if (secret.length === 0) throw configError('auth.jwt.secret_file', `${file} is empty`);
  return secret;
}

async function createSecretFile(file: string): Promise<string> {
  const secret = randomBytes(64).toString('base64url');
  try {
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    // 'wx': if another process created it meanwhile, keep theirs (read below).
    await writeFile(file, secret + '\n', { mode: 0o600, flag: 'wx' });
    return secret;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
      try {
        return await readFile(file, 'utf8');
      } catch (e2) {
        throw configError('auth.jwt.secret_file', `cannot read ${file}`, e2);
      }
    }
    throw configError('auth.jwt.secret_file', `cannot create ${file}`, e);
  }
}

async function readPublicKey(file: string): Promise<KeyObject> {
  let pem: Buffer;
  try {
    pem = await readFile(file);
  } catch (e) {
    throw configError('auth.jwt.public_key_file', `cannot read ${file}`, e);
  }
  try {
    return createPublicKey(pem);
  } catch (e) {
    throw configError('auth.jwt.public_key_file', `${file} does not hold a PEM public key`, e);
  }
}
