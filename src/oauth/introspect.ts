// Token introspection (RFC 7662) and revocation (RFC 7009), the two
// endpoints a client or resource server calls about a token it holds.
//
// Introspection needs an authenticated caller (RFC 7662 §2.1: "the endpoint
// MUST also require some form of authorization"), here a confidential client
// of the same org; it answers for any live token of that org, so an org's
// resource servers can check tokens issued to its other apps. Anything not
// live (unknown, expired, revoked, rotated away, another org's) is exactly
// `{"active":false}` (§2.2): the answer never says which.
//
// Revocation (RFC 7009 §2.1) accepts public clients too (they identify by
// client_id) and only touches tokens issued to the caller; unknown tokens,
// and tokens of other clients, get the same 200 (§2.2: an invalid token is
// not an error), so the endpoint cannot be used to test strings. Revoking a
// refresh token revokes its grant, access tokens included.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { OAuthContext } from './context.js';
import type { Issuer } from './issuer.js';
import { readForm } from './params.js';
import { NO_STORE, OAuthError, sendJson } from './protocol-errors.js';
import { joinScope } from './scope.js';

const KNOWN: ReadonlySet<string> = new Set(['token', 'token_type_hint', 'client_id', 'client_secret']);
const INACTIVE = JSON.stringify({ active: false });

export async function introspect(ctx: OAuthContext, req: IncomingMessage, res: ServerResponse, iss: Issuer): Promise<void> {
  const p = await readForm(req, KNOWN, ctx.limits);
  const { method } = await ctx.clients.authenticate(req, p, iss);
  if (method === 'none') throw new OAuthError('invalid_client', 'introspection needs a confidential client', 401);
  const value = p.get('token');
  if (value === undefined) throw new OAuthError('invalid_request', 'token is required');
  const t = ctx.store.live(value);
  if (t === undefined || t.fam.org !== iss.org) {
    res.writeHead(200, { ...NO_STORE, 'content-type': 'application/json; charset=utf-8', 'content-length': INACTIVE.length });
    res.end(INACTIVE);
    return;
  }
  sendJson(res, 200, {
    active: true,
    scope: joinScope(t.tok.scope),
    client_id: t.fam.client,
    sub: t.fam.sub,
    token_type: t.tok.kind === 'access' ? 'Bearer' : 'refresh_token',
    exp: Math.floor(t.tok.exp / 1000),
    iat: Math.floor(t.tok.iat / 1000),
    iss: iss.issuer,
  });
}

export async function revoke(ctx: OAuthContext, req: IncomingMessage, res: ServerResponse, iss: Issuer): Promise<void> {
  const p = await readForm(req, KNOWN, ctx.limits);
  const { client } = await ctx.clients.authenticate(req, p, iss);
  const value = p.get('token');
  if (value === undefined) throw new OAuthError('invalid_request', 'token is required');
  const t = ctx.store.live(value);
  if (t !== undefined && t.fam.client === client.id && t.fam.org === iss.org) await ctx.store.revoke(t);
  res.writeHead(200, { ...NO_STORE, 'content-length': 0 });
  res.end();
}
