// The OAuth store: clients, codes, grants and tokens, in the control plane's
// memory (DESIGN.md "Process model": one store per machine, so a code's
// single use is a synchronous check-and-mark in one event loop, atomic with
// no lock), every change journaled (store-journal.ts) and durable before the
// caller answers. Each operation changes state synchronously and returns the
// promise of its record reaching the disk: the caller awaits it before the
// response, so nothing answered is lost to kill -9.
//
// One coarse timer sweeps what expired and compacts the journal.
//
// Access tokens are opaque (256 random bits), not JWTs: every consumer of
// these tokens asks edgeway anyway (`authenticate`, `introspect`), revocation
// (RFC 7009, code replay, refresh reuse, client deletion) then takes effect on
// the next request instead of at the token's expiry, a token carries no
// claims that an app could read and come to depend on, and a lookup by hash
// costs less than a signature check.

import { join } from 'node:path';
import type { OAuthConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import { ACCESS_PREFIX, CODE_PREFIX, REFRESH_PREFIX, hashValue, newId, newSecretValue } from './secrets.js';
import { StoreJournal } from './store-journal.js';
import { StoreState, type Client, type CodeRec, type Family, type OAuthRecord, type TokenEntry, type TokenRec } from './store-state.js';

export interface Issued {
  readonly access_token: string;
  readonly refresh_token?: string;
  readonly expires_in: number;
  readonly scope: readonly string[];
  /** Resolves once the grant is on disk: answer only then. */
  readonly durable: Promise<void>;
}

export type CodeTake =
  | { readonly kind: 'unknown' }
  /** Presented before: refused; the grant issued from it has been revoked (RFC 6749 §4.1.2). */
  | { readonly kind: 'replayed'; readonly durable: Promise<void> }
  | { readonly kind: 'fresh'; readonly hash: string; readonly rec: CodeRec };

export type RefreshTake =
  | { readonly kind: 'unknown' }
  | { readonly kind: 'reused'; readonly durable: Promise<void> }
  | { readonly kind: 'fresh'; readonly hash: string; readonly tok: TokenRec; readonly fam: Family };

export interface LiveToken {
  readonly hash: string;
  readonly tok: TokenRec;
  readonly fam: Family;
}

export class OAuthStore {
  readonly state = new StoreState();
  #journal!: StoreJournal;
  #timer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly cfg: OAuthConfig,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {}

  /** `opts` are for tests: a clock, and the journal size that triggers a compaction. */
  static async open(dataDir: string, cfg: OAuthConfig, log: Logger, opts: { now?: () => number; compactBytes?: number } = {}): Promise<OAuthStore> {
    const now = opts.now ?? Date.now;
    const s = new OAuthStore(cfg, log, now);
    s.#journal = await StoreJournal.open(join(dataDir, 'oauth'), s.state, log, opts.compactBytes);
    s.state.sweep(now());
    // Every start begins from a fresh snapshot: the journals stay short.
    await s.#journal.compact(() => s.state.records());
    s.#timer = setInterval(() => void s.maintain(), cfg.sweep_interval_s * 1000);
    s.#timer.unref();
    return s;
  }

  /** The coarse timer's work: sweep, and compact once the journal grew. Never rejects. */
  async maintain(): Promise<void> {
    this.state.sweep(this.now());
    if (!this.#journal.wantsCompaction) return;
    await this.#journal.compact(() => this.state.records()).catch((err: unknown) => this.log.error({ err }, 'oauth store: compaction failed'));
  }

  #commit(r: OAuthRecord): Promise<void> {
    this.state.apply(r);
    return this.#journal.append(r);
  }

  client(id: string): Client | undefined {
    return this.state.clients.get(id);
  }

  /** Creates or replaces a client; a replacement in another org is a new client (its old grants die). */
  putClient(c: Omit<Client, 'gen'>): { created: boolean; durable: Promise<void> } {
    const old = this.state.clients.get(c.id);
    const gen = old !== undefined && old.org === c.org ? old.gen : newId();
    return { created: old === undefined, durable: this.#commit({ o: 'client', c: { ...c, gen } }) };
  }

  /** Deletes a client; its grants die with it (liveFamily checks the client). */
  deleteClient(id: string): Promise<void> | undefined {
    if (!this.state.clients.has(id)) return undefined;
    return this.#commit({ o: 'client-del', id });
  }

  issueCode(c: Omit<CodeRec, 'exp' | 'used'>): { code: string; durable: Promise<void> } {
    const code = newSecretValue(CODE_PREFIX);
    const rec: CodeRec = { ...c, exp: this.now() + this.cfg.code_ttl_s * 1000 };
    return { code, durable: this.#commit({ o: 'code', h: hashValue(code), c: rec }) };
  }

  /** The single-use step: synchronous, so of two concurrent presentations exactly one is fresh. */
  takeCode(code: string): CodeTake {
    const hash = hashValue(code);
    const rec = this.state.codes.get(hash);
    if (rec === undefined) return { kind: 'unknown' };
    if (rec.used !== undefined) {
      const fam = rec.used;
      const durable = fam !== '' && this.state.fams.get(fam)?.revoked === false ? this.#commit({ o: 'revoke-fam', fam }) : Promise.resolve();
      return { kind: 'replayed', durable };
    }
    rec.used = '';
    return { kind: 'fresh', hash, rec };
  }

  /** A fresh code that failed its checks: burned for good (a thief gets one try). */
  burnCode(hash: string): Promise<void> {
    return this.#journal.append({ o: 'burn', h: hash });
  }

  /** The grant for a fresh code that passed every check. */
  grantCode(hash: string, rec: CodeRec): Issued {
    return this.#grant({ client: rec.client, gen: rec.gen, org: rec.org, sub: rec.sub, scope: rec.scope }, true, hash);
  }

  /** RFC 6749 §4.4: the client acts for itself; no refresh token (§4.4.3). */
  grantClientCredentials(client: Client, scope: readonly string[]): Issued {
    return this.#grant({ client: client.id, gen: client.gen, org: client.org, sub: client.id, scope }, false, undefined);
  }

  #grant(f: Omit<Family, 'id' | 'exp' | 'revoked'>, refresh: boolean, code: string | undefined): Issued {
    const now = this.now();
    const fam: Family = { ...f, id: newId(), exp: 0, revoked: false };
    const { toks, issued } = this.#tokens(fam.id, f.scope, refresh, now);
    fam.exp = Math.max(...toks.map(([, t]) => t.exp));
    const durable = this.#commit({ o: 'grant', ...(code === undefined ? {} : { code }), fam, toks });
    return { ...issued, durable };
  }

  #tokens(fam: string, scope: readonly string[], refresh: boolean, now: number): { toks: TokenEntry[]; issued: Omit<Issued, 'durable'> } {
    const access = newSecretValue(ACCESS_PREFIX);
    const toks: TokenEntry[] = [[hashValue(access), { fam, kind: 'access', iat: now, exp: now + this.cfg.access_token_ttl_s * 1000, scope }]];
    let refreshToken: string | undefined;
    if (refresh) {
      refreshToken = newSecretValue(REFRESH_PREFIX);
      toks.push([hashValue(refreshToken), { fam, kind: 'refresh', iat: now, exp: now + this.cfg.refresh_token_ttl_s * 1000, scope }]);
    }
    const issued = { access_token: access, ...(refreshToken === undefined ? {} : { refresh_token: refreshToken }), expires_in: this.cfg.access_token_ttl_s, scope };
    return { toks, issued };
  }

  /**
   * RFC 6749 §6 with rotation (RFC 9700 §4.14.2): a live refresh token of
   * this client is used up; one presented again revokes its whole family.
   */
  takeRefresh(token: string, clientId: string): RefreshTake {
    const hash = hashValue(token);
    const tok = this.state.toks.get(hash);
    if (tok === undefined || tok.kind !== 'refresh' || tok.exp <= this.now()) return { kind: 'unknown' };
    const fam = this.state.liveFamily(tok.fam);
    if (fam === undefined || fam.client !== clientId || tok.revoked === true) return { kind: 'unknown' };
    if (tok.used === true) return { kind: 'reused', durable: this.#commit({ o: 'revoke-fam', fam: fam.id }) };
    tok.used = true;
    return { kind: 'fresh', hash, tok, fam };
  }

  rotate(old: string, fam: Family, scope: readonly string[]): Issued {
    const { toks, issued } = this.#tokens(fam.id, scope, true, this.now());
    const exp = Math.max(...toks.map(([, t]) => t.exp));
    return { ...issued, durable: this.#commit({ o: 'rotate', old, fam: fam.id, exp, toks }) };
  }

  /** A token that grants something now (not expired, revoked, rotated away; its family and client live), or undefined. */
  live(token: string): LiveToken | undefined {
    const hash = hashValue(token);
    const tok = this.state.toks.get(hash);
    if (tok === undefined || tok.revoked === true || tok.used === true || tok.exp <= this.now()) return undefined;
    const fam = this.state.liveFamily(tok.fam);
    return fam === undefined ? undefined : { hash, tok, fam };
  }

  /** RFC 7009 §2.1: a refresh token takes its family along; an access token goes alone. */
  revoke(t: LiveToken): Promise<void> {
    return this.#commit(t.tok.kind === 'refresh' ? { o: 'revoke-fam', fam: t.fam.id } : { o: 'revoke-tok', h: t.hash });
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.#journal.close();
  }
}
