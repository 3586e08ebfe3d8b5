// Issue 7: the standard client openid-client v6 as a black box against the
// appliance over real TLS: RFC 8414 discovery, authorization code with PKCE
// (confidential and public clients), refresh with rotation, introspection,
// revocation, client credentials, and edgeway's `authenticate`.

import t from 'tap';
import * as oidc from 'openid-client';
import { httpsGet } from './helpers/appliance.js';
import {
  CB, CONF_ID, CONF_SECRET, ORG, ORG_HOST, PUB_ID, UC_HOST, authorizeAs, codeFor, discover, oauthError, pkce, startOAuthAppliance,
} from './helpers/oauth.js';

const o = await startOAuthAppliance(t);

function authenticate(host: string, token: string, query = ''): ReturnType<typeof httpsGet> {
  return httpsGet(o, host, `/oauth/authenticate${query}`, { headers: { authorization: `Bearer ${token}` } });
}

t.test('discovery through RFC 8414 lists every endpoint, grant, auth method and S256 only', async (t) => {
  const config = await discover(o, o.issuer, CONF_ID, oidc.ClientSecretBasic(CONF_SECRET));
  const m = config.serverMetadata();
  t.equal(m.issuer, o.issuer, 'issuer is https://org-{org_id}.{domain}:{public_port}');
  t.equal(m.authorization_endpoint, `${o.issuer}/oauth/authorize`);
  t.equal(m.token_endpoint, `${o.issuer}/oauth/token`);
  t.equal(m.introspection_endpoint, `${o.issuer}/oauth/introspect`);
  t.equal(m.revocation_endpoint, `${o.issuer}/oauth/revoke`);
  t.equal(m['authenticate_endpoint'], `${o.issuer}/oauth/authenticate`);
  t.strictSame(m.code_challenge_methods_supported, ['S256']);
  t.strictSame(m.grant_types_supported, ['authorization_code', 'refresh_token', 'client_credentials']);
  t.strictSame(m.token_endpoint_auth_methods_supported, ['client_secret_basic', 'client_secret_post', 'none']);
  t.strictSame(m.response_types_supported, ['code']);
  // Any host with an oauth location serves it, naming its own endpoints and the org's issuer.
  const uc = await httpsGet(o, UC_HOST, '/.well-known/oauth-authorization-server');
  t.equal(uc.status, 200);
  const um = JSON.parse(uc.body) as Record<string, string>;
  t.equal(um['issuer'], o.issuer);
  t.equal(um['token_endpoint'], `https://${UC_HOST}:${o.port}/oauth/token`);
});

t.test('authorization code with PKCE (client_secret_basic), then authenticate, refresh, introspect, revoke', async (t) => {
  const config = await discover(o, o.issuer, CONF_ID, oidc.ClientSecretBasic(CONF_SECRET));
  const k = await pkce();
  const callback = await codeFor(o, config, k);
  t.equal(callback.origin + callback.pathname, CB, 'back to the registered redirect_uri');
  t.equal(callback.searchParams.get('state'), k.state, 'state returned');
  t.equal(callback.searchParams.get('iss'), o.issuer, 'RFC 9207 iss');
  t.match(callback.searchParams.get('code'), /^ewc_[A-Za-z0-9_-]{43}$/);

  const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: k.verifier, expectedState: k.state });
  t.equal(tokens.token_type, 'bearer');
  t.match(tokens.access_token, /^ewa_/);
  t.match(tokens.refresh_token, /^ewr_/);
  t.equal(tokens.scope, 'read');
  t.equal(tokens.expires_in, 3600);

  const who = await authenticate(ORG_HOST, tokens.access_token);
  t.equal(who.status, 200);
  t.match(JSON.parse(who.body), { sub: 'user-1', client_id: CONF_ID, scope: 'read', iss: o.issuer });
  t.equal(who.headers['cache-control'], 'no-store');

  const fresh = await oidc.refreshTokenGrant(config, tokens.refresh_token!);
  t.not(fresh.refresh_token, tokens.refresh_token, 'rotated');
  t.not(fresh.access_token, tokens.access_token);
  t.equal((await authenticate(ORG_HOST, fresh.access_token)).status, 200);

  const intro = await oidc.tokenIntrospection(config, fresh.access_token);
  t.match(intro, { active: true, sub: 'user-1', client_id: CONF_ID, scope: 'read', token_type: 'Bearer', iss: o.issuer });
  const introRefresh = await oidc.tokenIntrospection(config, fresh.refresh_token!);
  t.equal(introRefresh.active, true);
  t.strictSame(await oidc.tokenIntrospection(config, 'ewa_not-a-token'), { active: false });

  await oidc.tokenRevocation(config, fresh.access_token);
  t.strictSame(await oidc.tokenIntrospection(config, fresh.access_token), { active: false }, 'revoked access token');
  t.equal((await oidc.tokenIntrospection(config, fresh.refresh_token!)).active, true, 'its refresh token lives on');
  await oidc.tokenRevocation(config, fresh.refresh_token!);
  t.strictSame(await oidc.tokenIntrospection(config, fresh.refresh_token!), { active: false });
  await oidc.tokenRevocation(config, 'ewr_unknown-token-is-fine');
  t.pass('revoking an unknown token is 200 too');
});

t.test('revoking a refresh token revokes the access tokens of its grant', async (t) => {
  const config = await discover(o, o.issuer, CONF_ID, oidc.ClientSecretPost(CONF_SECRET));
  const k = await pkce();
  const tokens = await oidc.authorizationCodeGrant(config, await codeFor(o, config, k), { pkceCodeVerifier: k.verifier, expectedState: k.state });
  await oidc.tokenRevocation(config, tokens.refresh_token!);
  t.strictSame(await oidc.tokenIntrospection(config, tokens.access_token), { active: false });
  const who = await authenticate(ORG_HOST, tokens.access_token);
  t.equal(who.status, 401);
  t.match(who.headers['www-authenticate'], /^Bearer realm=".*", error="invalid_token"/);
});

t.test('a public client: PKCE only, refresh with rotation', async (t) => {
  const config = await discover(o, o.issuer, PUB_ID, oidc.None());
  const k = await pkce();
  const tokens = await oidc.authorizationCodeGrant(config, await codeFor(o, config, k), { pkceCodeVerifier: k.verifier, expectedState: k.state });
  t.match(JSON.parse((await authenticate(UC_HOST, tokens.access_token)).body), { sub: 'user-1', client_id: PUB_ID });
  const fresh = await oidc.refreshTokenGrant(config, tokens.refresh_token!);
  t.ok(fresh.access_token);
  // Introspection needs an authenticated caller (RFC 7662 §2.1).
  t.equal(await oauthError(oidc.tokenIntrospection(config, fresh.access_token)), 'invalid_client');
  await oidc.tokenRevocation(config, fresh.refresh_token!);
  t.equal((await authenticate(ORG_HOST, fresh.access_token)).status, 401, 'public clients revoke their own grants');
});

t.test('client credentials (client_secret_post), and scope checks at authenticate', async (t) => {
  const config = await discover(o, o.issuer, CONF_ID, oidc.ClientSecretPost(CONF_SECRET));
  const tokens = await oidc.clientCredentialsGrant(config, { scope: 'read write' });
  t.equal(tokens.scope, 'read write');
  t.equal(tokens.refresh_token, undefined, 'no refresh token for client_credentials (RFC 6749 §4.4.3)');
  t.match(JSON.parse((await authenticate(ORG_HOST, tokens.access_token, '?scope=write')).body), { sub: CONF_ID, client_id: CONF_ID, scope: 'read write' });
  const narrow = await oidc.clientCredentialsGrant(config, { scope: 'read' });
  const denied = await authenticate(ORG_HOST, narrow.access_token, '?scope=write');
  t.equal(denied.status, 403);
  t.match(denied.headers['www-authenticate'], /error="insufficient_scope", scope="write"/);
  t.equal(JSON.parse(denied.body).error, 'insufficient_scope');
  t.equal(await oauthError(oidc.clientCredentialsGrant(config, { scope: 'admin' })), 'invalid_scope');
  const pub = await discover(o, o.issuer, PUB_ID, oidc.None());
  t.equal(await oauthError(oidc.clientCredentialsGrant(pub)), 'unauthorized_client');
  const bare = await httpsGet(o, ORG_HOST, '/oauth/authenticate');
  t.equal(bare.status, 401);
  t.equal(bare.headers['www-authenticate'], `Bearer realm="${o.issuer}"`, 'no error code without a token (RFC 6750 §3.1)');
});

t.test('a browser without a session goes to the login and comes back to the same authorize request', async (t) => {
  const config = await discover(o, o.issuer, CONF_ID, oidc.ClientSecretBasic(CONF_SECRET));
  const k = await pkce();
  const url = oidc.buildAuthorizationUrl(config, { redirect_uri: CB, scope: 'read', code_challenge: k.challenge, code_challenge_method: 'S256', state: k.state });
  const first = await httpsGet(o, ORG_HOST, url.pathname + url.search, { headers: { accept: 'text/html' } });
  t.equal(first.status, 302);
  const login = new URL(first.headers.location!);
  const back = new URL(login.searchParams.get('return_to')!);
  t.equal(back.pathname, '/oauth/authorize');
  t.equal(back.searchParams.get('state'), k.state, 'return_to is the same authorize request');
  const nonce = back.searchParams.get('edgeway_state')!;
  // The platform's login appends a short-lived user token; edgeway sets its session and 302s to the clean URL.
  const { userToken } = await import('./helpers/appliance.js');
  const handoff = await userToken(o, 'user-1', [`org:${ORG}:member`], 120);
  const withToken = `${back.pathname}${back.search}&edgeway_token=${encodeURIComponent(handoff)}`;
  const second = await httpsGet(o, ORG_HOST, withToken, { headers: { accept: 'text/html', cookie: `edgeway_state=${nonce}` } });
  t.equal(second.status, 302);
  const session = String(second.headers['set-cookie']).split(';')[0]!;
  const clean = new URL(second.headers.location!, `https://${ORG_HOST}`);
  t.equal(clean.searchParams.get('edgeway_token'), null);
  const third = await httpsGet(o, ORG_HOST, clean.pathname + clean.search, { headers: { accept: 'text/html', cookie: session } });
  t.equal(third.status, 302);
  const cb = new URL(third.headers.location!);
  t.equal(cb.origin + cb.pathname, CB);
  const tokens = await oidc.authorizationCodeGrant(config, cb, { pkceCodeVerifier: k.verifier, expectedState: k.state });
  t.match(JSON.parse((await authenticate(ORG_HOST, tokens.access_token)).body), { sub: 'user-1' });
  // A user without the org's right gets 403 at authorize, no code.
  const outsider = await authorizeAs(o, url, await userToken(o, 'user-2', ['org:someone-else:member']));
  t.equal(outsider.status, 403);
  t.equal(outsider.location, undefined);
});
