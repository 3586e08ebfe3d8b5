// Client authentication at token, introspect and revoke (RFC 6749 §2.3):
// `client_secret_basic` (§2.3.1: HTTP Basic over form-encoded id and secret),
// `client_secret_post` (the same two as body parameters), or, for a public
// client, only its `client_id` (then PKCE is what binds the exchange).
// Using two methods in one request is refused (§2.3: "MUST NOT use more than
// one authentication method in each request").
//
// A client belongs to one org: on another org's issuer it does not exist
// (invalid_client), so a client of org A can never obtain or inspect org B's
// grants.
//
// Secrets are checked with scrypt (secrets.ts), which is meant to be slow.
// A secret that verified once is remembered in memory only, as its SHA-256
// next to the stored hash it matched, so a resource server introspecting
// thousands of tokens a second pays the KDF once, while a changed secret (a
// new stored hash) or a restart forgets it. Comparisons are constant-time.

import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { LRUCache } from 'lru-cache';
import type { Issuer } from './issuer.js';
import { OAuthError } from './protocol-errors.js';
import type { Params } from './params.js';
import { verifyClientSecret } from './secrets.js';
import type { Client } from './store-state.js';
import type { OAuthStore } from './store.js';

export interface Authenticated {
  readonly client: Client;
  /** Which method it used ('none': a public client). */
  readonly method: 'client_secret_basic' | 'client_secret_post' | 'none';
}

const BASIC = 'basic ';

function formDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s.replaceAll('+', ' '));
  } catch {
    return undefined;
  }
}

export class ClientAuthenticator {
  readonly #verified = new LRUCache<string, { readonly stored: string; readonly digest: Buffer }>({ max: 10_000 });

  constructor(private readonly store: OAuthStore) {}

  async authenticate(req: IncomingMessage, params: Params, iss: Issuer): Promise<Authenticated> {
    const auth = req.headers.authorization;
    const basic = auth !== undefined && auth.slice(0, BASIC.length).toLowerCase() === BASIC;
    // §5.2: a client that tried Basic is told, in the header, which scheme to use.
    const challenge = basic ? `Basic realm="${iss.issuer}", charset="UTF-8"` : undefined;
    const invalid = (why: string): OAuthError => new OAuthError('invalid_client', why, 401, challenge);
    let id = params.get('client_id');
    let secret: string | undefined;
    if (basic) {
      if (params.has('client_secret')) throw new OAuthError('invalid_request', 'use one client authentication method, not both');
      const decoded = Buffer.from(auth.slice(BASIC.length).trim(), 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      const bid = colon === -1 ? undefined : formDecode(decoded.slice(0, colon));
      secret = colon === -1 ? undefined : formDecode(decoded.slice(colon + 1));
      if (bid === undefined || bid === '' || secret === undefined) throw invalid('malformed Basic credentials');
      if (id !== undefined && id !== bid) throw new OAuthError('invalid_request', 'client_id differs from the authenticated client');
      id = bid;
    } else {
      secret = params.get('client_secret');
    }
    if (id === undefined) throw invalid('client authentication is required');
    const client = this.store.client(id);
    if (client === undefined || client.org !== iss.org) throw invalid('unknown client or wrong credentials');
    if (client.secret === null) {
      if (secret !== undefined) throw invalid('unknown client or wrong credentials');
      return { client, method: 'none' };
    }
    if (secret === undefined || secret === '') throw invalid('this client must authenticate with its secret');
    if (!(await this.#check(client, secret))) throw invalid('unknown client or wrong credentials');
    return { client, method: basic ? 'client_secret_basic' : 'client_secret_post' };
  }

  async #check(client: Client, secret: string): Promise<boolean> {
    const stored = client.secret as string;
    const digest = createHash('sha256').update(secret).digest();
    const hit = this.#verified.get(client.id);
    if (hit !== undefined && hit.stored === stored) return timingSafeEqual(hit.digest, digest);
    if (!(await verifyClientSecret(secret, stored))) return false;
    this.#verified.set(client.id, { stored, digest });
    return true;
  }
}
