// The token endpoint (RFC 6749 §3.2): authorization_code (§4.1.3 with
// RFC 7636 §4.6), refresh_token (§6, rotated on every use: RFC 9700 §4.14.2)
// and client_credentials (§4.4, confidential clients only). The client
// authenticates first (client-auth.ts), so no grant is looked at for an
// unauthenticated caller. Every answer is `Cache-Control: no-store` (§5.1).

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { OAuthContext } from './context.js';
import type { Issuer } from './issuer.js';
import { readForm } from './params.js';
import { OAuthError, sendJson } from './protocol-errors.js';
import { joinScope, parseScope, within } from './scope.js';
import { s256, sameString } from './secrets.js';
import type { Client } from './store-state.js';
import type { Issued } from './store.js';

const KNOWN: ReadonlySet<string> = new Set([
  'grant_type', 'code', 'redirect_uri', 'code_verifier', 'refresh_token', 'scope', 'client_id', 'client_secret',
]);
/** RFC 7636 §4.1: 43-128 unreserved characters. */
const VERIFIER = /^[A-Za-z0-9._~-]{43,128}$/;

function required(p: ReadonlyMap<string, string>, name: string): string {
  const v = p.get(name);
  if (v === undefined) throw new OAuthError('invalid_request', `${name} is required`);
  return v;
}

function scopeParam(p: ReadonlyMap<string, string>): string[] | undefined {
  const s = p.get('scope');
  if (s === undefined) return undefined;
  const list = parseScope(s);
  if (list === undefined) throw new OAuthError('invalid_scope', 'scope is malformed');
  return list;
}

export async function token(ctx: OAuthContext, req: IncomingMessage, res: ServerResponse, iss: Issuer): Promise<void> {
  const p = await readForm(req, KNOWN, ctx.limits);
  const grantType = required(p, 'grant_type');
  const { client, method } = await ctx.clients.authenticate(req, p, iss);
  let issued: Issued;
  switch (grantType) {
    case 'authorization_code':
      issued = await exchangeCode(ctx, p, client, iss);
      break;
    case 'refresh_token':
      issued = await refresh(ctx, p, client);
      break;
    case 'client_credentials': {
      if (method === 'none') throw new OAuthError('unauthorized_client', 'client_credentials needs a confidential client');
      const scope = scopeParam(p) ?? [...client.scopes];
      if (!within(scope, client.scopes)) throw new OAuthError('invalid_scope', 'scope exceeds what the client may ask for');
      issued = ctx.store.grantClientCredentials(client, scope);
      break;
    }
    default:
      throw new OAuthError('unsupported_grant_type', 'grant_type must be authorization_code, refresh_token or client_credentials');
  }
  await issued.durable;
  sendJson(res, 200, {
    access_token: issued.access_token,
    token_type: 'Bearer',
    expires_in: issued.expires_in,
    ...(issued.refresh_token === undefined ? {} : { refresh_token: issued.refresh_token }),
    scope: joinScope(issued.scope),
  });
}

async function exchangeCode(ctx: OAuthContext, p: ReadonlyMap<string, string>, client: Client, iss: Issuer): Promise<Issued> {
  const code = required(p, 'code');
  const verifier = p.get('code_verifier');
  if (verifier === undefined) throw new OAuthError('invalid_request', 'code_verifier is required (PKCE)');
  if (!VERIFIER.test(verifier)) throw new OAuthError('invalid_request', 'code_verifier must be 43-128 unreserved characters');
  const take = ctx.store.takeCode(code);
  if (take.kind === 'unknown') throw new OAuthError('invalid_grant', 'the code is invalid or expired');
  if (take.kind === 'replayed') {
    await take.durable;
    throw new OAuthError('invalid_grant', 'the code was already used; the tokens issued for it are revoked');
  }
  const { hash, rec } = take;
  // The code is used up from here on, whatever the outcome (a thief gets one try).
  const why =
    rec.client !== client.id || rec.gen !== client.gen || rec.org !== iss.org ? 'the code was issued to another client'
    : rec.exp <= Date.now() ? 'the code is invalid or expired'
    : (rec.redirect_given || p.has('redirect_uri')) && p.get('redirect_uri') !== rec.redirect_uri ? 'redirect_uri differs from the authorization request'
    // RFC 9700 §2.1.1: a verifier for a code issued without a challenge is a PKCE downgrade. Every
    // code edgeway issues has one; a record without one (damaged, or written by hand) is refused.
    : rec.challenge === '' ? 'the code was issued without a code_challenge'
    : !sameString(s256(verifier), rec.challenge) ? 'code_verifier does not match the code_challenge'
    : undefined;
  if (why !== undefined) {
    await ctx.store.burnCode(hash);
    throw new OAuthError('invalid_grant', why);
  }
  return ctx.store.grantCode(hash, rec);
}

async function refresh(ctx: OAuthContext, p: ReadonlyMap<string, string>, client: Client): Promise<Issued> {
  const value = required(p, 'refresh_token');
  const scope = scopeParam(p);
  const take = ctx.store.takeRefresh(value, client.id);
  if (take.kind === 'unknown') throw new OAuthError('invalid_grant', 'the refresh token is invalid, expired or revoked');
  if (take.kind === 'reused') {
    await take.durable;
    throw new OAuthError('invalid_grant', 'the refresh token was already used; its grant is revoked');
  }
  // §6: a refresh may narrow the scope, never widen it.
  if (scope !== undefined && !within(scope, take.tok.scope)) {
    take.tok.used = false; // same tick as the take: nobody saw it used
    throw new OAuthError('invalid_scope', 'scope exceeds the original grant');
  }
  return ctx.store.rotate(take.hash, take.fam, scope ?? take.tok.scope);
}
