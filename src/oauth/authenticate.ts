// `authenticate`: an app (or its gateway) hands over the bearer access token
// a request carried and learns who it is for (DESIGN.md "OAuth2"): subject,
// client and scopes, or an RFC 6750 error with its `WWW-Authenticate`
// challenge. This is the hot path of resource servers, so it is one hash and
// two map lookups, no client authentication (the token is the credential).
//
// - The token only in the Authorization header (RFC 6750 §2.1); a token in the
//   query is refused (§2.3 "SHOULD NOT", and queries end up in logs).
// - No token: 401 with a bare challenge (§3.1: no error code then).
// - Not a live access token of this org: 401 invalid_token.
// - `scope` (query, space-delimited) names what the caller needs: missing
//   ones give 403 insufficient_scope with the needed scope in the challenge.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { OAuthContext } from './context.js';
import type { Issuer } from './issuer.js';
import { parseForm, queryOf } from './params.js';
import { OAuthError, sendJson } from './protocol-errors.js';
import { joinScope, parseScope, within } from './scope.js';

const KNOWN: ReadonlySet<string> = new Set(['scope', 'access_token']);
const BEARER = 'bearer ';

export function authenticate(ctx: OAuthContext, req: IncomingMessage, res: ServerResponse, iss: Issuer): void {
  const realm = `Bearer realm="${iss.issuer}"`;
  if (req.method !== 'GET' && req.method !== 'POST' && req.method !== 'HEAD') {
    throw new OAuthError('invalid_request', 'authenticate takes GET or POST', 405);
  }
  const p = parseForm(queryOf(req.url as string), KNOWN, ctx.limits);
  if (p.has('access_token')) throw new OAuthError('invalid_request', 'send the token in the Authorization header', 400, `${realm}, error="invalid_request"`);
  const auth = req.headers.authorization;
  if (auth === undefined || auth.length <= BEARER.length || auth.slice(0, BEARER.length).toLowerCase() !== BEARER) {
    throw new OAuthError('invalid_token', 'a bearer access token is required', 401, realm);
  }
  const needed = p.has('scope') ? parseScope(p.get('scope')!) : [];
  if (needed === undefined) throw new OAuthError('invalid_request', 'scope is malformed', 400, `${realm}, error="invalid_request"`);
  const t = ctx.store.live(auth.slice(BEARER.length).trim());
  if (t === undefined || t.tok.kind !== 'access' || t.fam.org !== iss.org) {
    throw new OAuthError('invalid_token', 'the access token is invalid, expired or revoked', 401, `${realm}, error="invalid_token"`);
  }
  if (!within(needed, t.tok.scope)) {
    throw new OAuthError('insufficient_scope', 'the access token lacks a needed scope', 403, `${realm}, error="insufficient_scope", scope="${joinScope(needed)}"`);
  }
  sendJson(res, 200, {
    sub: t.fam.sub,
    client_id: t.fam.client,
    scope: joinScope(t.tok.scope),
    exp: Math.floor(t.tok.exp / 1000),
    iss: iss.issuer,
  });
}
