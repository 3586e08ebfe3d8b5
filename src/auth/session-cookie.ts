// edgeway's own session cookie `edgeway_token` (DESIGN.md "How a browser gets
// in", step 3): set after a handoff, host-only, Secure, HttpOnly,
// SameSite=Lax, valid auth.session_ttl_s.
//
// Value: base64url(JSON payload) "." base64url(HMAC-SHA256). The key is
// edgeway's own (`data_dir/session.key`), never the platform's JWT key: a
// platform that can sign user tokens still cannot mint edgeway sessions, and a
// cookie can never be replayed as a platform token. The host is inside the
// signed payload and compared with the request's host, so a cookie copied from
// one host (say, read by a user container's app) opens no other.
//
// Lifetime: exp = now + session_ttl_s, not bounded by the handoff token's exp.
// The handoff token is short-lived on purpose (≤ handoff_max_ttl_s, because it
// travels in a URL); bounding the session by it would end every session within
// minutes. The contract makes the session's lifetime the operator's setting.
//
// Verified cookies are cached by value until their exp, so a request with a
// known cookie costs a Map lookup, not an HMAC and a JSON.parse.

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LRUCache } from 'lru-cache';
import { EdgewayError } from '../errors.js';

export const SESSION_COOKIE = 'edgeway_token';
export const SESSION_KEY_FILE = 'session.key';
/** A cookie of about this size or more is dropped by browsers (RFC 6265 §6.1 asks for at least 4096 bytes). */
const MAX_COOKIE_BYTES = 3900;
const MAX_VALUE_LENGTH = 8192;
const CACHE_MAX = 10_000;
const MAC_PREFIX = 'edgeway-session-v1.';
const MAC_B64_LENGTH = 43; // 32 bytes, base64url without padding

/** What an accepted credential grants; a verified session is one. */
export interface Grant {
  readonly sub: string;
  readonly scope: readonly string[];
  /** Epoch ms when the credential ends (websockets are closed then). */
  readonly expMs: number;
  /** The accepted token came in the Authorization header, which is then edgeway's and not forwarded. */
  readonly viaAuthorization: boolean;
}

export interface Session extends Grant {
  readonly host: string;
}

export type SessionFailure = 'session_invalid' | 'session_expired' | 'session_host';

/**
 * Reads `data_dir/session.key`, creating it (0600, 32 random bytes) when absent.
 * Creation is atomic (a complete temp file hard-linked into place, which fails
 * when the name exists), so processes starting together all end up reading
 * the one key that won; it survives restarts because it lives in data_dir.
 */
export async function loadSessionKey(dataDir: string): Promise<Buffer> {
  const file = join(dataDir, SESSION_KEY_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw keyError(file, e);
    await createKeyFile(dataDir, file);
    text = await readFile(file, 'utf8').catch((e2: unknown) => Promise.reject(keyError(file, e2)));
  }
  const key = Buffer.from(text.trim(), 'base64url');
  if (key.length < 32) throw keyError(file, new Error('holds fewer than 32 bytes of key'));
  return key;
}

async function createKeyFile(dataDir: string, file: string): Promise<void> {
  const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}`;
  try {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    await writeFile(tmp, randomBytes(32).toString('base64url') + '\n', { mode: 0o600, flag: 'wx' });
    await link(tmp, file).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'EEXIST') throw e; // another process won: its key is the one
    });
  } catch (e) {
    throw keyError(file, e);
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

function keyError(file: string, cause: unknown): EdgewayError {
  return new EdgewayError('CONFIG_INVALID', `data_dir: cannot read or create the session key ${file}`, { field: 'data_dir', cause });
}

export class SessionCookies {
  readonly #key: Buffer;
  readonly #ttlS: number;
  readonly #now: () => number;
  // verify() checks expMs itself on a hit: the TTL only evicts, and a coarse
  // ttlResolution spares a timer per millisecond of traffic (see jwt.ts).
  readonly #cache = new LRUCache<string, Session>({ max: CACHE_MAX, ttlResolution: 1000 });
  /** `; Path=/; Max-Age=…; Secure; HttpOnly; SameSite=Lax`: no Domain, so host-only (RFC 6265 §5.3 step 6). */
  readonly #attributes: string;

  constructor(key: Buffer, ttlS: number, now: () => number = Date.now) {
    this.#key = key;
    this.#ttlS = ttlS;
    this.#now = now;
    this.#attributes = `; Path=/; Max-Age=${ttlS}; Secure; HttpOnly; SameSite=Lax`;
  }

  /**
   * The Set-Cookie value of a new session for `host`, or undefined when it
   * would not fit in a cookie even with only the scopes that name `hints`
   * (the host, its org and uc ids).
   */
  mint(host: string, sub: string, scope: readonly string[], hints: readonly string[]): string | undefined {
    const exp = Math.floor(this.#now() / 1000) + this.#ttlS;
    let value = this.#seal(host, sub, scope, exp);
    if (value.length > MAX_COOKIE_BYTES) {
      // A user in very many orgs: this cookie only ever opens this host.
      const kept = scope.filter((s) => hints.some((h) => s.includes(h)));
      value = this.#seal(host, sub, kept, exp);
      if (value.length > MAX_COOKIE_BYTES) return undefined;
    }
    return `${SESSION_COOKIE}=${value}${this.#attributes}`;
  }

  #seal(host: string, sub: string, scope: readonly string[], exp: number): string {
    const payload = Buffer.from(JSON.stringify({ h: host, s: sub, sc: scope, e: exp })).toString('base64url');
    return `${payload}.${this.#mac(payload).toString('base64url')}`;
  }

  #mac(payload: string): Buffer {
    return createHmac('sha256', this.#key).update(MAC_PREFIX).update(payload).digest();
  }

  /** The session a cookie value carries, when it is edgeway's, unexpired and bound to `host`. */
  verify(value: string, host: string): Session | SessionFailure {
    const now = this.#now();
    let s = this.#cache.get(value);
    if (s === undefined) {
      const opened = this.#open(value);
      if (opened === undefined) return 'session_invalid';
      s = opened;
      if (s.expMs > now) this.#cache.set(value, s, { ttl: s.expMs - now });
    }
    if (s.expMs <= now) return 'session_expired';
    // After the signature: another host's valid cookie says "wrong host", a forged one "invalid".
    if (s.host !== host) return 'session_host';
    return s;
  }

  #open(value: string): Session | undefined {
    if (value.length > MAX_VALUE_LENGTH) return undefined;
    const dot = value.lastIndexOf('.');
    if (dot <= 0 || value.length - dot - 1 !== MAC_B64_LENGTH) return undefined;
    const payload = value.slice(0, dot);
    const mac = Buffer.from(value.slice(dot + 1), 'base64url');
    if (mac.length !== 32 || !timingSafeEqual(mac, this.#mac(payload))) return undefined;
    let p: unknown;
    try {
      p = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    } catch {
      return undefined;
    }
    const o = p as { h?: unknown; s?: unknown; sc?: unknown; e?: unknown };
    if (typeof o.h !== 'string' || typeof o.s !== 'string' || typeof o.e !== 'number' || !Array.isArray(o.sc)) return undefined;
    if (!o.sc.every((x) => typeof x === 'string')) return undefined;
    return Object.freeze({
      host: o.h,
      sub: o.s,
      scope: Object.freeze(o.sc as string[]),
      expMs: o.e * 1000,
      viaAuthorization: false,
    });
  }
}
