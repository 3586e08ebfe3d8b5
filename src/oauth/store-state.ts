// The OAuth store's state and the records that change it. Every change is a
// record: the live store applies it and appends it to the journal, a restart
// applies the same records in the same order (store-journal.ts), so what
// survives a crash is by construction what was served. Values are kept only
// as hashes (secrets.ts); a record never holds a code, token or secret.
//
// A grant (a "family") is what one authorization produced: the code, then
// every access and refresh token issued from it through rotations. Revoking
// is per family, which is what RFC 6749 §4.1.2 (code replay), RFC 9700 §4.14.2
// (refresh-token reuse) and RFC 7009 §2.1 (revoking a refresh token revokes
// the access tokens of the same grant) all ask for.

export interface Client {
  readonly id: string;
  readonly org: string;
  readonly redirect_uris: readonly string[];
  readonly scopes: readonly string[];
  /** scrypt of the secret; null for a public client (PKCE only). */
  readonly secret: string | null;
  /** New each time the id is created: tokens of a deleted and re-created client stay dead. */
  readonly gen: string;
}

export interface CodeRec {
  readonly client: string;
  readonly gen: string;
  readonly org: string;
  readonly redirect_uri: string;
  /** Whether the request named redirect_uri (then the token request must repeat it, RFC 6749 §4.1.3). */
  readonly redirect_given: boolean;
  /** The S256 challenge (RFC 7636 §4.2); every code has one. */
  readonly challenge: string;
  readonly scope: readonly string[];
  readonly sub: string;
  readonly exp: number;
  /** Set once presented: the family issued from it, or '' when it was burned by a failed exchange. */
  used?: string;
}

export interface Family {
  readonly id: string;
  readonly client: string;
  readonly gen: string;
  readonly org: string;
  readonly sub: string;
  readonly scope: readonly string[];
  /** Latest expiry of any of its tokens (ms). */
  exp: number;
  revoked: boolean;
}

export interface TokenRec {
  readonly fam: string;
  readonly kind: 'access' | 'refresh';
  readonly iat: number;
  readonly exp: number;
  /** Scope of this token (a refresh may narrow it, RFC 6749 §6). */
  readonly scope: readonly string[];
  revoked?: boolean;
  /** A refresh token that was rotated away: presenting it again is reuse. */
  used?: boolean;
}

export type TokenEntry = readonly [hash: string, rec: TokenRec];

export type OAuthRecord =
  | { readonly o: 'client'; readonly c: Client }
  | { readonly o: 'client-del'; readonly id: string }
  | { readonly o: 'code'; readonly h: string; readonly c: CodeRec }
  | { readonly o: 'burn'; readonly h: string }
  /** A new family with its first tokens; `code` is the code it was exchanged for, now used. */
  | { readonly o: 'grant'; readonly code?: string; readonly fam: Family; readonly toks: readonly TokenEntry[] }
  /** A refresh: `old` becomes used, new tokens join the family. */
  | { readonly o: 'rotate'; readonly old: string; readonly fam: string; readonly exp: number; readonly toks: readonly TokenEntry[] }
  | { readonly o: 'revoke-fam'; readonly fam: string }
  | { readonly o: 'revoke-tok'; readonly h: string };

export class StoreState {
  readonly clients = new Map<string, Client>();
  readonly codes = new Map<string, CodeRec>();
  readonly fams = new Map<string, Family>();
  readonly toks = new Map<string, TokenRec>();

  /** Applies one record. Records naming something already swept are no-ops. */
  apply(r: OAuthRecord): void {
    switch (r.o) {
      case 'client':
        this.clients.set(r.c.id, r.c);
        return;
      case 'client-del':
        this.clients.delete(r.id);
        return;
      case 'code':
        this.codes.set(r.h, { ...r.c });
        return;
      case 'burn': {
        const c = this.codes.get(r.h);
        if (c !== undefined) c.used ??= '';
        return;
      }
      case 'grant': {
        if (r.code !== undefined) {
          const c = this.codes.get(r.code);
          if (c !== undefined) c.used = r.fam.id;
        }
        this.fams.set(r.fam.id, { ...r.fam });
        for (const [h, t] of r.toks) this.toks.set(h, { ...t });
        return;
      }
      case 'rotate': {
        const old = this.toks.get(r.old);
        if (old !== undefined) old.used = true;
        const f = this.fams.get(r.fam);
        if (f !== undefined) f.exp = Math.max(f.exp, r.exp);
        for (const [h, t] of r.toks) this.toks.set(h, { ...t });
        return;
      }
      case 'revoke-fam': {
        const f = this.fams.get(r.fam);
        if (f !== undefined) f.revoked = true;
        return;
      }
      case 'revoke-tok': {
        const t = this.toks.get(r.h);
        if (t !== undefined) t.revoked = true;
        return;
      }
    }
  }

  /** A family that still grants anything: not revoked, and its client not deleted or re-created since. */
  liveFamily(id: string): Family | undefined {
    const f = this.fams.get(id);
    if (f === undefined || f.revoked) return undefined;
    return this.clients.get(f.client)?.gen === f.gen ? f : undefined;
  }

  /**
   * Drops what can no longer matter at `now`: expired tokens, families past
   * their last token (or whose client is gone), codes past their lifetime.
   * A used code stays while its family lives, so a late replay still revokes it.
   */
  sweep(now: number): number {
    let n = 0;
    for (const [id, f] of this.fams) {
      if (f.exp <= now || this.clients.get(f.client)?.gen !== f.gen) {
        this.fams.delete(id);
        n++;
      }
    }
    for (const [h, t] of this.toks) {
      if (t.exp <= now || !this.fams.has(t.fam)) {
        this.toks.delete(h);
        n++;
      }
    }
    for (const [h, c] of this.codes) {
      const keep = c.exp > now || (c.used !== undefined && c.used !== '' && this.fams.has(c.used));
      if (!keep) {
        this.codes.delete(h);
        n++;
      }
    }
    return n;
  }

  /** Everything, as the records that rebuild it (the snapshot). */
  records(): OAuthRecord[] {
    const out: OAuthRecord[] = [];
    for (const c of this.clients.values()) out.push({ o: 'client', c });
    for (const [h, c] of this.codes) {
      const { used, ...rest } = c;
      out.push({ o: 'code', h, c: rest });
      if (used === '') out.push({ o: 'burn', h });
    }
    const byFam = new Map<string, TokenEntry[]>();
    for (const [h, t] of this.toks) {
      let list = byFam.get(t.fam);
      if (list === undefined) byFam.set(t.fam, (list = []));
      list.push([h, t]);
    }
    const usedBy = new Map<string, string>();
    for (const [h, c] of this.codes) if (c.used !== undefined && c.used !== '') usedBy.set(c.used, h);
    for (const f of this.fams.values()) {
      const code = usedBy.get(f.id);
      out.push({ o: 'grant', ...(code === undefined ? {} : { code }), fam: f, toks: byFam.get(f.id) ?? [] });
    }
    return out;
  }
}
