// Token verification for the admin API and the data plane (DESIGN.md "Tokens").
// jsonwebtoken does the cryptography with the configured algorithm list (never
// the token's own `alg`); this file adds the claim shapes the contract defines
// and a cache so that a token sent with every request is verified once.

import { createHash } from 'node:crypto';
import jsonwebtoken from 'jsonwebtoken';
import type { VerifyOptions, SignOptions, Algorithm } from 'jsonwebtoken';
import { LRUCache } from 'lru-cache';
import type { JwtConfig } from '../config/types.js';
import type { JwtKeys } from './keys.js';

export interface UserClaims {
  readonly type: 'user';
  readonly sub: string;
  readonly scope: readonly string[];
  /** Epoch seconds; set on verified claims, ignored by signToken. */
  readonly exp?: number;
}

export interface OrgClaims {
  readonly type: 'organization_token';
  readonly organization_id: string;
  readonly allowed_upstreams?: readonly string[];
  readonly exp?: number;
}

export interface PlatformClaims {
  readonly type: 'platform';
  readonly scope: readonly string[];
  readonly exp?: number;
}

export type TokenClaims = UserClaims | OrgClaims | PlatformClaims;

/** Why a token was refused: a label for metrics, never the token itself. */
export type RejectReason =
  | 'malformed' | 'signature' | 'algorithm' | 'expired' | 'not_before'
  | 'issuer' | 'audience' | 'no_exp' | 'claims' | 'invalid';

export type VerifyResult =
  | { readonly ok: true; readonly claims: TokenClaims }
  | { readonly ok: false; readonly reason: RejectReason };

/** The platform token scope that may manage anything (DESIGN.md "Tokens"). */
export const ADMIN_SCOPE = 'edge:admin';
export const CLOCK_TOLERANCE_S = 30;
const CACHE_MAX = 10_000;
/** Larger "tokens" are refused before hashing or parsing them. */
const MAX_TOKEN_LENGTH = 16 * 1024;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface CacheEntry {
  readonly claims: TokenClaims;
  /** Epoch ms of the token's `exp`: a hit at or past it is re-verified (and then skew decides). */
  readonly expMs: number;
}

export interface VerifierOptions {
  /** Clock in epoch ms; tests move it instead of sleeping past exp + skew. */
  readonly now?: () => number;
}

export class TokenVerifier {
  /** `verified` counts jsonwebtoken runs; a cache hit does not add to it. */
  readonly stats = { verified: 0, cacheHits: 0, rejected: 0 };
  readonly #key: string | Buffer;
  readonly #options: VerifyOptions;
  readonly #now: () => number;
  // A hit is checked against exp here, so the cache's own TTL only evicts and
  // may run late: lru-cache's default 1 ms ttlResolution arms a timer (and a
  // closure) every millisecond of traffic (issue 4's profile of bench (a)).
  readonly #cache = new LRUCache<string, CacheEntry>({ max: CACHE_MAX, ttlResolution: 1000 });

  constructor(keys: JwtKeys, cfg: JwtConfig, opts: VerifierOptions = {}) {
    this.#key = keys.verifyKey;
    this.#now = opts.now ?? Date.now;
    const options: VerifyOptions = { algorithms: [...keys.algorithms], clockTolerance: CLOCK_TOLERANCE_S };
    if (cfg.issuer !== undefined) options.issuer = cfg.issuer;
    if (cfg.audience !== undefined) options.audience = cfg.audience;
    this.#options = options;
  }

  verify(token: string): TokenClaims | undefined {
    const r = this.check(token);
    return r.ok ? r.claims : undefined;
  }

  /** Like verify, with the reason of a refusal. */
  check(token: string): VerifyResult {
    if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) {
      return this.#reject('malformed');
    }
    const now = this.#now();
    const id = createHash('sha256').update(token).digest('base64url');
    const hit = this.#cache.get(id);
    if (hit !== undefined) {
      if (now < hit.expMs) {
        this.stats.cacheHits++;
        return { ok: true, claims: hit.claims };
      }
      this.#cache.delete(id);
    }

    this.stats.verified++;
    let payload: unknown;
    try {
      payload = jsonwebtoken.verify(token, this.#key, { ...this.#options, clockTimestamp: Math.floor(now / 1000) });
    } catch (e) {
      return this.#reject(reasonOf(e));
    }
    const p = payload as Record<string, unknown>;
    if (typeof p.exp !== 'number' || !Number.isFinite(p.exp)) return this.#reject('no_exp');
    const claims = shapeClaims(p);
    if (claims === undefined) return this.#reject('claims');

    const expMs = p.exp * 1000;
    // Only cached until exp: past it, a hit falls through to jsonwebtoken and its skew rule.
    if (expMs > now) this.#cache.set(id, { claims, expMs }, { ttl: expMs - now });
    return { ok: true, claims };
  }

  #reject(reason: RejectReason): VerifyResult {
    this.stats.rejected++;
    return { ok: false, reason };
  }
}

function reasonOf(e: unknown): RejectReason {
  if (e instanceof jsonwebtoken.TokenExpiredError) return 'expired';
  if (e instanceof jsonwebtoken.NotBeforeError) return 'not_before';
  if (!(e instanceof jsonwebtoken.JsonWebTokenError)) return 'invalid';
  const m = e.message;
  if (m === 'invalid signature') return 'signature';
  if (m === 'invalid algorithm') return 'algorithm';
  if (m.startsWith('jwt issuer invalid')) return 'issuer';
  if (m.startsWith('jwt audience invalid')) return 'audience';
  if (m === 'jwt malformed' || m === 'invalid token' || m === 'jwt signature is required') return 'malformed';
  return 'invalid';
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((s) => typeof s === 'string');
}

/** The contract's claim shapes; a copy of only the claims edgeway uses, frozen because cache hits share it. */
function shapeClaims(p: Record<string, unknown>): TokenClaims | undefined {
  const exp = typeof p.exp === 'number' ? p.exp : undefined;
  switch (p.type) {
    case 'user': {
      if (typeof p.sub !== 'string' || p.sub.length === 0) return undefined;
      // A user token without scope still passes `access: user`.
      if (p.scope !== undefined && !isStringArray(p.scope)) return undefined;
      const scope = Object.freeze([...((p.scope as string[] | undefined) ?? [])]);
      return Object.freeze({ type: 'user', sub: p.sub, scope, ...(exp === undefined ? {} : { exp }) });
    }
    case 'organization_token': {
      if (typeof p.organization_id !== 'string' || !UUID.test(p.organization_id)) return undefined;
      const base = { type: 'organization_token' as const, organization_id: p.organization_id, ...(exp === undefined ? {} : { exp }) };
      if (p.allowed_upstreams === undefined) return Object.freeze(base);
      if (!isStringArray(p.allowed_upstreams)) return undefined;
      return Object.freeze({ ...base, allowed_upstreams: Object.freeze([...p.allowed_upstreams]) });
    }
    case 'platform': {
      if (!isStringArray(p.scope)) return undefined;
      return Object.freeze({ type: 'platform', scope: Object.freeze([...p.scope]), ...(exp === undefined ? {} : { exp }) });
    }
    default:
      return undefined;
  }
}

/** Signs a token with the HMAC secret (for `edgeway token` and tests); iss/aud from the config. */
export function signToken(keys: JwtKeys, cfg: JwtConfig, claims: TokenClaims, ttlSeconds: number): string {
  if (keys.signKey === undefined) {
    throw new Error('cannot sign tokens: auth.jwt.public_key_file can only verify (configure auth.jwt.secret or auth.jwt.secret_file)');
  }
  if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0) throw new Error('token ttl must be a positive whole number of seconds');
  // Sign only what verify would accept, so a bad call fails here and not at the far end.
  const { exp: _exp, ...rest } = claims as TokenClaims & { exp?: number };
  if (shapeClaims(rest as Record<string, unknown>) === undefined) throw new Error(`claims do not fit the ${claims.type} token shape`);
  const options: SignOptions = { algorithm: keys.algorithms[0] as Algorithm, expiresIn: ttlSeconds };
  if (cfg.issuer !== undefined) options.issuer = cfg.issuer;
  if (cfg.audience !== undefined) options.audience = cfg.audience;
  return jsonwebtoken.sign({ ...rest }, keys.signKey, options);
}
