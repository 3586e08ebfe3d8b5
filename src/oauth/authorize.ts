// The authorization endpoint (RFC 6749 §4.1.1, RFC 7636 §4.3), the only
// OAuth endpoint that needs a user. Order of checks:
//
// 1. The parameters parse (no duplicates, none oversized), the client exists
//    on this org's issuer and the redirect_uri is one of its registered
//    strings, compared exactly (RFC 9700 §4.1.3: no prefix or pattern
//    matching). Until both hold, nothing is redirected anywhere: the user
//    gets a 400 page (§4.1.2.1), since an unverified URI may be an attacker's.
// 2. The rest of the request: errors now go back to the client's
//    redirect_uri with `state` (§4.1.2.1) and `iss` (RFC 9207, the mix-up
//    defence RFC 9700 §4.4 recommends). PKCE with S256 is required for every
//    client (RFC 9700 §2.1.1); `plain` and a missing method are refused,
//    because `plain` puts the verifier itself in the browser's URL.
// 3. The user, from the user token exactly as on any other location
//    (access-gate.ts): without one the gate answers itself (302 to the login
//    with a `return_to` that is this very request, or 401 for non-browsers);
//    after the login round trip the browser comes back here with edgeway's
//    session cookie.
// 4. A code bound to client, redirect_uri, PKCE challenge, user and scope,
//    written to disk before the redirect that carries it.
//
// No consent screen: the apps are the org's own, registered by its gateway.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { ownQuery } from '../proxy/headers.js';
import type { ServiceCall } from '../services/types.js';
import type { OAuthContext } from './context.js';
import type { Issuer } from './issuer.js';
import { parseForm, queryOf } from './params.js';
import { NO_STORE, OAuthError, sendErrorPage, type OAuthErrorCode } from './protocol-errors.js';
import { parseScope, within } from './scope.js';

const KNOWN: ReadonlySet<string> = new Set([
  'response_type', 'client_id', 'redirect_uri', 'scope', 'state', 'code_challenge', 'code_challenge_method',
]);
/** RFC 7636 §4.2: BASE64URL of a SHA-256 is exactly 43 characters. */
const S256_CHALLENGE = /^[A-Za-z0-9_-]{43}$/;

/** `redirect_uri` with the response parameters appended (its own query is kept, §3.1.2). */
function withParams(uri: string, params: Record<string, string | undefined>): string {
  let out = uri;
  let sep = uri.includes('?') ? '&' : '?';
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined) continue;
    out += `${sep}${k}=${encodeURIComponent(v)}`;
    sep = '&';
  }
  return out;
}

function redirect(res: ServerResponse, location: string): void {
  res.writeHead(302, { ...NO_STORE, location, 'referrer-policy': 'no-referrer', 'content-length': 0 });
  res.end();
}

export async function authorize(ctx: OAuthContext, req: IncomingMessage, res: ServerResponse, call: ServiceCall, iss: Issuer): Promise<void> {
  // GET only (§3.1 requires GET, POST is optional): a HEAD from a link prefetcher must not mint a code.
  if (req.method !== 'GET') {
    res.setHeader('allow', 'GET');
    return sendErrorPage(res, new OAuthError('invalid_request', 'the authorization endpoint takes GET', 405));
  }
  // edgeway's own login parameters are the gate's business, not the client's.
  const own = ownQuery(req.url as string);
  let p;
  try {
    p = parseForm(queryOf(own?.url ?? (req.url as string)), KNOWN, ctx.limits);
  } catch (e) {
    return sendErrorPage(res, e as OAuthError);
  }
  const clientId = p.get('client_id');
  const client = clientId === undefined ? undefined : ctx.store.client(clientId);
  if (client === undefined || client.org !== iss.org) {
    return sendErrorPage(res, new OAuthError('invalid_request', 'unknown client_id for this authorization server'));
  }
  const given = p.get('redirect_uri');
  // §3.1.2.3: redirect_uri may be left out only when exactly one is registered.
  const redirectUri = given ?? (client.redirect_uris.length === 1 ? client.redirect_uris[0] : undefined);
  if (redirectUri === undefined || !client.redirect_uris.includes(redirectUri)) {
    return sendErrorPage(res, new OAuthError('invalid_request', 'redirect_uri is missing or not registered for this client'));
  }

  const state = p.get('state');
  const fail = (code: OAuthErrorCode, description: string): void =>
    redirect(res, withParams(redirectUri, { error: code, error_description: description, state, iss: iss.issuer }));

  const responseType = p.get('response_type');
  if (responseType === undefined) return fail('invalid_request', 'response_type is required');
  if (responseType !== 'code') return fail('unsupported_response_type', 'only response_type=code is supported');
  const challenge = p.get('code_challenge');
  if (challenge === undefined) return fail('invalid_request', 'PKCE is required: code_challenge is missing');
  if (p.get('code_challenge_method') !== 'S256') return fail('invalid_request', 'code_challenge_method must be S256');
  if (!S256_CHALLENGE.test(challenge)) return fail('invalid_request', 'code_challenge is not a S256 challenge');
  const asked = p.get('scope');
  const scope = asked === undefined ? [...client.scopes] : parseScope(asked);
  if (scope === undefined) return fail('invalid_scope', 'scope is malformed');
  if (!within(scope, client.scopes)) return fail('invalid_scope', 'scope exceeds what the client may ask for');

  const grant = ctx.gate.request(req, res, call.match, own);
  if (grant === undefined) return; // answered: login redirect, 401 or 403
  // A public oauth location identifies nobody: that is a configuration error, not a user.
  if (grant.sub === '') return fail('access_denied', 'this authorization endpoint does not identify users');

  const { code, durable } = ctx.store.issueCode({
    client: client.id, gen: client.gen, org: iss.org, redirect_uri: redirectUri, redirect_given: given !== undefined,
    challenge, scope, sub: grant.sub,
  });
  await durable;
  redirect(res, withParams(redirectUri, { code, state, iss: iss.issuer }));
}
