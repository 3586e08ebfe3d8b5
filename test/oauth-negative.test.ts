// Issue 7's negative matrix: every row refused with the RFC's code and
// status, nothing redirected where it must not be, and what a refusal must
// revoke revoked.

import t from 'tap';
import * as oidc from 'openid-client';
import { httpsGet } from './helpers/appliance.js';
import {
  CB, CONF_ID, CONF_SECRET, ORG2_HOST, ORG2_ID, ORG_HOST, PUB_ID, UC_HOST, authorizeAs, basic, codeFor, discover, oauthError, pkce, post,
  startOAuthAppliance,
} from './helpers/oauth.js';

const o = await startOAuthAppliance(t);
const conf = await discover(o, o.issuer, CONF_ID, oidc.ClientSecretBasic(CONF_SECRET));

function authorizeUrl(params: Record<string, string | undefined>, host = ORG_HOST): URL {
  const u = new URL(`https://${host}:${o.port}/oauth/authorize`);
  for (const [k, v] of Object.entries(params)) if (v !== undefined) u.searchParams.set(k, v);
  return u;
}

async function validParams(): Promise<Record<string, string>> {
  const k = await pkce();
  return { response_type: 'code', client_id: CONF_ID, redirect_uri: CB, code_challenge: k.challenge, code_challenge_method: 'S256', state: k.state, scope: 'read' };
}

function json(body: string): Record<string, unknown> {
  return JSON.parse(body) as Record<string, unknown>;
}

const authenticate = (token: string) => httpsGet(o, ORG_HOST, '/oauth/authenticate', { headers: { authorization: `Bearer ${token}` } });

t.test('unknown client and every redirect_uri mismatch: a 400 page, never a redirect', async (t) => {
  const cases: Record<string, Record<string, string>> = {
    'unknown client': { client_id: 'nobody' },
    'no client_id': { client_id: '' },
    'redirect_uri prefix': { redirect_uri: `https://${UC_HOST}/` },
    'redirect_uri extra path': { redirect_uri: `${CB}/extra` },
    'redirect_uri extra query': { redirect_uri: `${CB}?x=1` },
    'redirect_uri other host': { redirect_uri: `https://evil.example/cb` },
    'redirect_uri other org host': { redirect_uri: `https://${ORG2_HOST}/cb` },
    'redirect_uri fragment': { redirect_uri: `${CB}#frag` },
    'redirect_uri other case': { redirect_uri: CB.toUpperCase().replace('HTTPS', 'https') },
    'no redirect_uri with two registered': { redirect_uri: '' },
  };
  for (const [name, change] of Object.entries(cases)) {
    const p = { ...(await validParams()), ...change };
    const r = await authorizeAs(o, authorizeUrl(Object.fromEntries(Object.entries(p).filter(([, v]) => v !== ''))));
    t.equal(r.status, 400, `${name}: 400`);
    t.equal(r.location, undefined, `${name}: no redirect`);
    t.match(r.body, /invalid_request/, `${name}: names the error`);
  }
});

t.test('PKCE: missing, plain, no method, wrong verifier, verifier without challenge', async (t) => {
  const errorOf = async (change: Record<string, string | undefined>): Promise<URL> => {
    const r = await authorizeAs(o, authorizeUrl({ ...(await validParams()), ...change }));
    t.equal(r.status, 302);
    const u = new URL(r.location!);
    t.equal(u.origin + u.pathname, CB);
    t.equal(u.searchParams.get('code'), null, 'no code');
    return u;
  };
  const missing = await errorOf({ code_challenge: undefined, code_challenge_method: undefined, state: 'st-1' });
  t.equal(missing.searchParams.get('error'), 'invalid_request', 'PKCE missing');
  t.equal(missing.searchParams.get('state'), 'st-1', 'state comes back with the error');
  t.equal(missing.searchParams.get('iss'), o.issuer);
  const k = await pkce();
  t.equal((await errorOf({ code_challenge: k.verifier, code_challenge_method: 'plain' })).searchParams.get('error'), 'invalid_request', 'plain refused');
  t.equal((await errorOf({ code_challenge_method: undefined })).searchParams.get('error'), 'invalid_request', 'no method (would mean plain) refused');
  t.equal((await errorOf({ response_type: 'token' })).searchParams.get('error'), 'unsupported_response_type');
  t.equal((await errorOf({ scope: 'read admin' })).searchParams.get('error'), 'invalid_scope');

  // Wrong verifier: invalid_grant, and the code is burned (a thief gets one try).
  const right = await pkce();
  const cb = await codeFor(o, conf, right);
  const wrong = await pkce();
  t.equal(await oauthError(oidc.authorizationCodeGrant(conf, cb, { pkceCodeVerifier: wrong.verifier, expectedState: right.state })), 'invalid_grant');
  t.equal(await oauthError(oidc.authorizationCodeGrant(conf, cb, { pkceCodeVerifier: right.verifier, expectedState: right.state })), 'invalid_grant', 'burned');

  // No verifier at the token endpoint.
  const cb2 = await codeFor(o, conf, right);
  const noVerifier = await post(o, '/oauth/token', `grant_type=authorization_code&code=${cb2.searchParams.get('code')}&redirect_uri=${encodeURIComponent(CB)}`, { authorization: basic(CONF_ID, CONF_SECRET) });
  t.equal(noVerifier.status, 400);
  t.equal(json(noVerifier.body)['error'], 'invalid_request');

  // A verifier without a challenge: no code is ever issued without one (the
  // authorize above refused), and a verifier with an invented code is
  // invalid_grant. A stored code that has no challenge is refused too
  // (test/oauth-state.test.ts, the restart test).
  const forged = await post(o, '/oauth/token', `grant_type=authorization_code&code=ewc_${'A'.repeat(43)}&redirect_uri=${encodeURIComponent(CB)}&code_verifier=${right.verifier}`, { authorization: basic(CONF_ID, CONF_SECRET) });
  t.equal(forged.status, 400);
  t.equal(json(forged.body)['error'], 'invalid_grant');
});

t.test('code replay is refused and revokes the tokens issued from the code', async (t) => {
  const k = await pkce();
  const cb = await codeFor(o, conf, k);
  const tokens = await oidc.authorizationCodeGrant(conf, cb, { pkceCodeVerifier: k.verifier, expectedState: k.state });
  t.equal((await authenticate(tokens.access_token)).status, 200);
  t.equal(await oauthError(oidc.authorizationCodeGrant(conf, cb, { pkceCodeVerifier: k.verifier, expectedState: k.state })), 'invalid_grant');
  t.equal((await authenticate(tokens.access_token)).status, 401, 'access token revoked');
  t.equal(await oauthError(oidc.refreshTokenGrant(conf, tokens.refresh_token!)), 'invalid_grant', 'refresh token revoked');
});

t.test('concurrent presentations of one code: exactly one wins', async (t) => {
  const k = await pkce();
  const code = (await codeFor(o, conf, k)).searchParams.get('code')!;
  const form = `grant_type=authorization_code&code=${code}&redirect_uri=${encodeURIComponent(CB)}&code_verifier=${k.verifier}`;
  const rs = await Promise.all(Array.from({ length: 8 }, () => post(o, '/oauth/token', form, { authorization: basic(CONF_ID, CONF_SECRET) })));
  t.equal(rs.filter((r) => r.status === 200).length, 1);
  t.equal(rs.filter((r) => r.status === 400 && json(r.body)['error'] === 'invalid_grant').length, 7);
});

t.test('client authentication: wrong secret, both methods, public client with a secret, code of another client', async (t) => {
  const k = await pkce();
  const cb = await codeFor(o, conf, k);
  const form = `grant_type=authorization_code&code=${cb.searchParams.get('code')}&redirect_uri=${encodeURIComponent(CB)}&code_verifier=${k.verifier}`;
  const wrong = await post(o, '/oauth/token', form, { authorization: basic(CONF_ID, 'wrong-secret-0123456789abcdef0123456789') });
  t.equal(wrong.status, 401);
  t.equal(json(wrong.body)['error'], 'invalid_client');
  t.match(wrong.headers['www-authenticate'], /^Basic realm="/, 'WWW-Authenticate when Basic was used');
  t.equal(wrong.headers['cache-control'], 'no-store');
  const wrongPost = await post(o, '/oauth/token', `${form}&client_id=${CONF_ID}&client_secret=nope`);
  t.equal(wrongPost.status, 401);
  t.equal(wrongPost.headers['www-authenticate'], undefined, 'no Basic challenge for client_secret_post');
  const both = await post(o, '/oauth/token', `${form}&client_secret=${CONF_SECRET}`, { authorization: basic(CONF_ID, CONF_SECRET) });
  t.equal(both.status, 400);
  t.equal(json(both.body)['error'], 'invalid_request', 'both auth methods refused');
  const noAuth = await post(o, '/oauth/token', `${form}&client_id=${CONF_ID}`);
  t.equal(json(noAuth.body)['error'], 'invalid_client', 'a confidential client without its secret');
  const pubSecret = await post(o, '/oauth/token', `${form}&client_id=${PUB_ID}&client_secret=whatever`);
  t.equal(json(pubSecret.body)['error'], 'invalid_client');
  // The code is still unused (client authentication comes first): another client presenting it burns it.
  const other = await post(o, '/oauth/token', `${form}&client_id=${PUB_ID}`);
  t.equal(json(other.body)['error'], 'invalid_grant');
  t.equal(await oauthError(oidc.authorizationCodeGrant(conf, cb, { pkceCodeVerifier: k.verifier, expectedState: k.state })), 'invalid_grant');
});

t.test('refresh-token reuse revokes the whole family', async (t) => {
  const k = await pkce();
  const first = await oidc.authorizationCodeGrant(conf, await codeFor(o, conf, k), { pkceCodeVerifier: k.verifier, expectedState: k.state });
  const second = await oidc.refreshTokenGrant(conf, first.refresh_token!);
  t.equal((await authenticate(second.access_token)).status, 200);
  t.equal(await oauthError(oidc.refreshTokenGrant(conf, first.refresh_token!)), 'invalid_grant', 'old refresh token refused');
  t.equal((await authenticate(second.access_token)).status, 401, 'the newest access token is revoked');
  t.equal(await oauthError(oidc.refreshTokenGrant(conf, second.refresh_token!)), 'invalid_grant', 'the newest refresh token too');
  // Widening the scope on refresh is refused and does not use the token up.
  const k2 = await pkce();
  const g = await oidc.authorizationCodeGrant(conf, await codeFor(o, conf, k2), { pkceCodeVerifier: k2.verifier, expectedState: k2.state });
  t.equal(await oauthError(oidc.refreshTokenGrant(conf, g.refresh_token!, { scope: 'read write' })), 'invalid_scope');
  t.ok((await oidc.refreshTokenGrant(conf, g.refresh_token!)).access_token, 'still usable after the refused widening');
});

t.test("a client of org A on org B's issuer does not exist there", async (t) => {
  const onB = await discover(o, o.issuer2, CONF_ID, oidc.ClientSecretBasic(CONF_SECRET));
  const k = await pkce();
  const url = oidc.buildAuthorizationUrl(onB, { redirect_uri: CB, scope: 'read', code_challenge: k.challenge, code_challenge_method: 'S256', state: k.state });
  t.equal(url.hostname, ORG2_HOST);
  const r = await authorizeAs(o, url, await (await import('./helpers/appliance.js')).userToken(o, 'user-1', [`org:${(await import('./helpers/oauth.js')).ORG2}:member`]));
  t.equal(r.status, 400);
  t.equal(r.location, undefined);
  t.equal(await oauthError(oidc.clientCredentialsGrant(onB)), 'invalid_client');
  // A code and a token of org A presented on org B's endpoints.
  const k2 = await pkce();
  const cb = await codeFor(o, conf, k2);
  const tokens = await oidc.authorizationCodeGrant(conf, cb, { pkceCodeVerifier: k2.verifier, expectedState: k2.state });
  const b = await discover(o, o.issuer2, ORG2_ID, oidc.ClientSecretBasic((await import('./helpers/oauth.js')).ORG2_SECRET));
  t.strictSame(await oidc.tokenIntrospection(b, tokens.access_token), { active: false }, "org B's client cannot see org A's token");
  const onBHost = await httpsGet(o, ORG2_HOST, '/oauth/authenticate', { headers: { authorization: `Bearer ${tokens.access_token}` } });
  t.equal(onBHost.status, 401);
});

t.test('oversized, duplicated and malformed parameters', async (t) => {
  const big = 'x'.repeat(3000);
  const longState = await authorizeAs(o, authorizeUrl({ ...(await validParams()), state: big }));
  t.equal(longState.status, 400, 'state over max_param_bytes: a page');
  t.equal(longState.location, undefined);
  const dup = await authorizeAs(o, new URL(authorizeUrl(await validParams()).toString() + `&client_id=${CONF_ID}`));
  t.equal(dup.status, 400, 'a parameter given twice');
  const longCode = await post(o, '/oauth/token', `grant_type=authorization_code&code=${big}`, { authorization: basic(CONF_ID, CONF_SECRET) });
  t.equal(longCode.status, 400);
  t.equal(json(longCode.body)['error'], 'invalid_request');
  const huge = await post(o, '/oauth/token', `grant_type=client_credentials&pad=${'y'.repeat(20_000)}`, { authorization: basic(CONF_ID, CONF_SECRET) });
  t.equal(huge.status, 413);
  t.equal(json(huge.body)['error'], 'invalid_request');
  const twice = await post(o, '/oauth/token', 'grant_type=client_credentials&grant_type=client_credentials', { authorization: basic(CONF_ID, CONF_SECRET) });
  t.equal(json(twice.body)['error'], 'invalid_request');
  const notForm = await httpsGet(o, ORG_HOST, '/oauth/token', { method: 'POST', body: '{}', headers: { 'content-type': 'application/json', authorization: basic(CONF_ID, CONF_SECRET) } });
  t.equal(json(notForm.body)['error'], 'invalid_request');
  const get = await httpsGet(o, ORG_HOST, '/oauth/token');
  t.equal(get.status, 405);
  t.equal(get.headers['allow'], 'POST');
  t.equal(json(get.body)['error'], 'invalid_request');
  const nope = await post(o, '/oauth/token', 'grant_type=password&username=a&password=b', { authorization: basic(CONF_ID, CONF_SECRET) });
  t.equal(json(nope.body)['error'], 'unsupported_grant_type');
  const noGrant = await post(o, '/oauth/token', '', { authorization: basic(CONF_ID, CONF_SECRET) });
  t.equal(json(noGrant.body)['error'], 'invalid_request');
  const unknown = await httpsGet(o, ORG_HOST, '/oauth/nothing');
  t.equal(unknown.status, 404);
  t.equal(json(unknown.body)['error'], 'invalid_request');
  const badEscape = await post(o, '/oauth/introspect', 'token=%zz', { authorization: basic(CONF_ID, CONF_SECRET) });
  t.equal(json(badEscape.body)['error'], 'invalid_request');
  const inQuery = await httpsGet(o, ORG_HOST, '/oauth/authenticate?access_token=x');
  t.equal(json(inQuery.body)['error'], 'invalid_request', 'a token in the query is refused (RFC 6750 §2.3)');
});

t.test('expired code', async (t) => {
  const short = await startOAuthAppliance(t, { oauth: { code_ttl_s: 1 } });
  const c = await discover(short, short.issuer, CONF_ID, oidc.ClientSecretBasic(CONF_SECRET));
  const k = await pkce();
  const cb = await codeFor(short, c, k);
  await new Promise((r) => setTimeout(r, 1100));
  t.equal(await oauthError(oidc.authorizationCodeGrant(c, cb, { pkceCodeVerifier: k.verifier, expectedState: k.state })), 'invalid_grant');
});

t.test('odd requests: methods, upgrades, the metadata path on hosts with and without oauth, a host outside any org', async (t) => {
  const postMeta = await httpsGet(o, ORG_HOST, '/.well-known/oauth-authorization-server', { method: 'POST' });
  t.equal(postMeta.status, 405);
  t.equal(postMeta.headers['allow'], 'GET, HEAD');
  t.equal(json(postMeta.body)['error'], 'invalid_request');
  const withQuery = await httpsGet(o, ORG_HOST, '/.well-known/oauth-authorization-server?x=1');
  t.equal(json(withQuery.body)['issuer'], o.issuer);
  const postAuthorize = await httpsGet(o, ORG_HOST, '/oauth/authorize', { method: 'POST', headers: { authorization: `Bearer ${o.user}` } });
  t.equal(postAuthorize.status, 405);
  t.equal(postAuthorize.headers['allow'], 'GET');
  const putAuthenticate = await httpsGet(o, ORG_HOST, '/oauth/authenticate', { method: 'PUT' });
  t.equal(putAuthenticate.status, 405);
  t.equal(putAuthenticate.headers['allow'], 'GET, HEAD, POST');
  const badScope = await httpsGet(o, ORG_HOST, '/oauth/authenticate?scope=%22', { headers: { authorization: 'Bearer x' } });
  t.equal(json(badScope.body)['error'], 'invalid_request');
  const upgrade = await httpsGet(o, ORG_HOST, '/oauth/token', { headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' } });
  t.equal(upgrade.status, 400, 'upgrades on an oauth location are refused');

  const other = await startOAuthAppliance(t, {}, undefined, {
    'api.yaml': { host: 'api.{domain}', locations: [{ path: '/', static: { root: '.' } }, { path: '/oauth', service: 'oauth' }] },
  });
  const api = await httpsGet(other, 'api.example.test', '/.well-known/oauth-authorization-server');
  t.equal(api.status, 404, 'no org, no issuer');
  t.equal(json(api.body)['error'], 'invalid_request');
  // A host without an oauth location: the path is the host's own.
  await (await import('./helpers/appliance.js')).admin(other, 'PUT', '/v1/hosts/uc-00000000-0000-4000-8000-000000000009.' + ORG_HOST, {
    access: 'public', locations: [{ path: '/', upstream: 'http://127.0.0.1:9' }],
  });
  const plain = await httpsGet(other, 'uc-00000000-0000-4000-8000-000000000009.' + ORG_HOST, '/.well-known/oauth-authorization-server');
  t.equal(plain.status, 502, 'proxied to the upstream (nothing listens there)');
});
