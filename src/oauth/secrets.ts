// Random values and how they are stored (issue 7 point 5).
//
// Codes and tokens are 256 random bits (RFC 6749 §10.10, RFC 9700 §4.x:
// unguessable), prefixed by what they are so a secret scanner or an operator
// recognises a leaked one. The store keeps only their SHA-256: a fast hash is
// right for values with 256 bits of entropy (no dictionary to try), and it is
// what lets every request find its token with one map lookup.
//
// Client secrets are chosen by people and may be weak, so they are stored as
// scrypt (a slow, memory-hard KDF from node:crypto) with a random salt, and
// compared in constant time (RFC 6749 §2.3.1, §10.3).

import { createHash, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

export const CODE_PREFIX = 'ewc_';
export const ACCESS_PREFIX = 'ewa_';
export const REFRESH_PREFIX = 'ewr_';

export function newSecretValue(prefix: string): string {
  return prefix + randomBytes(32).toString('base64url');
}

/** A short random id (families, client generations): not secret, only unique. */
export function newId(): string {
  return randomBytes(12).toString('base64url');
}

/** The stored form of a code or token. */
export function hashValue(value: string): string {
  return createHash('sha256').update(value).digest('base64url');
}

// N=2^14, r=8, p=1: about 16 MiB and tens of milliseconds per hash, the
// interactive-login parameters of the scrypt paper; it runs in libuv's pool,
// never on the event loop.
const N = 16384;
const R = 8;
const P = 1;
const KEY_LEN = 32;

// At most two run at once, in a bounded queue: libuv's pool has four threads
// and the journal's writes and fsyncs need them too, so a flood of wrong
// secrets (each one a full KDF run, never cached) must not stall every
// grant. Past the queue, callers get TooBusy (503 temporarily_unavailable).
const MAX_RUNNING = 2;
const MAX_QUEUED = 256;
let running = 0;
const queue: (() => void)[] = [];

export class TooBusy extends Error {}

/** A slot among MAX_RUNNING; a queued caller is handed the slot of the one that finished. */
async function acquire(): Promise<void> {
  if (running < MAX_RUNNING) {
    running++;
    return;
  }
  if (queue.length >= MAX_QUEUED) throw new TooBusy('too many client secrets being checked');
  await new Promise<void>((resolve) => queue.push(resolve));
}

function release(): void {
  const next = queue.shift();
  if (next !== undefined) next();
  else running--;
}

async function scryptAsync(secret: string, salt: Buffer, n: number, r: number, p: number): Promise<Buffer> {
  await acquire();
  try {
    return await new Promise((resolve, reject) => {
      scrypt(secret, salt, KEY_LEN, { N: n, r, p, maxmem: 64 * 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key)));
    });
  } finally {
    release();
  }
}

/** `scrypt$N$r$p$salt$hash`, parameters kept so they can be raised later without breaking stored clients. */
export async function hashClientSecret(secret: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(secret, salt, N, R, P);
  return `scrypt$${N}$${R}$${P}$${salt.toString('base64url')}$${key.toString('base64url')}`;
}

export async function verifyClientSecret(secret: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const expected = Buffer.from(parts[5]!, 'base64url');
  const key = await scryptAsync(secret, Buffer.from(parts[4]!, 'base64url'), Number(parts[1]), Number(parts[2]), Number(parts[3]));
  return key.length === expected.length && timingSafeEqual(key, expected);
}

/** Constant-time equality of two strings of any length (RFC 7636 §4.6 comparisons and the secret cache). */
export function sameString(a: string, b: string): boolean {
  const x = createHash('sha256').update(a).digest();
  const y = createHash('sha256').update(b).digest();
  return timingSafeEqual(x, y);
}

/** RFC 7636 §4.6: BASE64URL(SHA256(ASCII(code_verifier))). */
export function s256(verifier: string): string {
  return createHash('sha256').update(verifier, 'ascii').digest('base64url');
}
