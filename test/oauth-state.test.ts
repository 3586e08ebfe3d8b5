// Issue 7 points 1, 5 and 6: clients through the admin API with tenancy;
// codes and tokens survive a restart (in process) and kill -9 (a spawned
// `workers: 2` appliance, where the store lives in the control plane and the
// workers reach it over the service socket); only hashes on disk; nothing
// secret in any log line.

import { appendFile, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import * as oidc from 'openid-client';
import { startAppliance } from '../src/appliance.js';
import { loadConfig } from '../src/config/load.js';
import { createLogger } from '../src/log.js';
import { hashValue } from '../src/oauth/secrets.js';
import { admin, httpsGet, portOf, userToken, writeTestConfig, type TestAppliance } from './helpers/appliance.js';
import {
  CB, CONF_ID, CONF_SECRET, ORG, ORG2, ORG_HOST, basic, codeFor, discover, oauthError, orgToken, pkce, setUp, startOAuthAppliance,
  type OAuthAppliance,
} from './helpers/oauth.js';
import { childrenOf, freePort, startEdgeway } from './helpers/process.js';

async function filesUnder(dir: string): Promise<string> {
  let all = '';
  for (const f of await readdir(dir)) all += await readFile(join(dir, f), 'utf8');
  return all;
}

async function bootInProcess(t: { teardown(fn: () => unknown): void }, file: string, dir: string, port: number, register: boolean): Promise<{ o: OAuthAppliance; stop: () => Promise<void> }> {
  const cfg = await loadConfig(file);
  const app = await startAppliance(cfg, createLogger('silent'), { processMetrics: false });
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (!stopped) await app.stop();
    stopped = true;
  };
  t.teardown(stop);
  const { signToken } = await import('../src/auth/jwt.js');
  const { loadJwtKeys } = await import('../src/auth/keys.js');
  const ta: TestAppliance = {
    app, cfg, dir,
    caPem: await readFile(join(cfg.data_dir, 'ca', 'edgeway-local-ca.crt'), 'utf8'),
    httpsPort: portOf(app.addresses.https),
    httpPort: portOf(app.addresses.http),
    adminUrl: `http://${app.addresses.admin}`,
    platformToken: signToken(await loadJwtKeys(cfg), cfg.auth.jwt, { type: 'platform', scope: ['edge:admin'] }, 3600),
  };
  return { o: await setUp(t, ta, port, register), stop };
}

t.test('a restart between authorize and token: the code, the clients and the tokens are still there', async (t) => {
  const port = await freePort();
  const { dir, file } = await writeTestConfig({ listen: { https: `127.0.0.1:${port}`, http: '127.0.0.1:0', admin: '127.0.0.1:0' } });
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const first = await bootInProcess(t, file, dir, port, true);
  const conf1 = await discover(first.o, first.o.issuer, CONF_ID, oidc.ClientSecretBasic(CONF_SECRET));
  const k0 = await pkce();
  const earlier = await oidc.authorizationCodeGrant(conf1, await codeFor(first.o, conf1, k0), { pkceCodeVerifier: k0.verifier, expectedState: k0.state });
  const k = await pkce();
  const cb = await codeFor(first.o, conf1, k);
  await first.stop();

  // A code stored without a PKCE challenge (no edgeway issues one; as if written by hand) must not
  // take a verifier: the journal gets one such record while edgeway is down.
  const oauthDir = join(first.o.cfg.data_dir, 'oauth');
  const gen = /"id":"app-confidential"[^}]*"gen":"([^"]+)"/.exec(await filesUnder(oauthDir))![1]!;
  const bare = `ewc_${'B'.repeat(43)}`;
  const latest = (await readdir(oauthDir)).filter((f) => f.startsWith('journal-')).sort((a, b) => parseInt(a.slice(8)) - parseInt(b.slice(8))).at(-1)!;
  await appendFile(join(oauthDir, latest), JSON.stringify({
    o: 'code', h: hashValue(bare),
    c: { client: CONF_ID, gen, org: ORG, redirect_uri: CB, redirect_given: true, challenge: '', scope: ['read'], sub: 'user-1', exp: Date.now() + 60_000 },
  }) + '\n');

  const second = await bootInProcess(t, file, dir, port, false);
  const downgrade = await httpsGet(second.o, ORG_HOST, '/oauth/token', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(CONF_ID, CONF_SECRET) },
    body: `grant_type=authorization_code&code=${bare}&redirect_uri=${encodeURIComponent(CB)}&code_verifier=${k.verifier}`,
  });
  t.equal(downgrade.status, 400, 'a verifier without a challenge');
  t.equal(JSON.parse(downgrade.body).error, 'invalid_grant');
  const conf2 = await discover(second.o, second.o.issuer, CONF_ID, oidc.ClientSecretBasic(CONF_SECRET));
  const tokens = await oidc.authorizationCodeGrant(conf2, cb, { pkceCodeVerifier: k.verifier, expectedState: k.state });
  t.ok(tokens.access_token, 'the code issued before the restart is exchanged after it');
  t.equal((await oidc.tokenIntrospection(conf2, earlier.access_token)).active, true, 'tokens issued before the restart are live');
  const rotated = await oidc.refreshTokenGrant(conf2, earlier.refresh_token!);
  t.ok(rotated.access_token);

  // Only hashes on disk: no code, token or secret appears in the store's files.
  const disk = await filesUnder(join(second.o.cfg.data_dir, 'oauth'));
  for (const v of [cb.searchParams.get('code')!, tokens.access_token, tokens.refresh_token!, earlier.access_token, rotated.refresh_token!, CONF_SECRET]) {
    t.notOk(disk.includes(v), `not on disk: ${v.slice(0, 4)}…`);
  }
  t.match(disk, /scrypt\$16384\$8\$1\$/, 'the client secret as scrypt');

  // A replay after the restart is still a replay, and still revokes.
  await second.stop();
  const third = await bootInProcess(t, file, dir, port, false);
  const conf3 = await discover(third.o, third.o.issuer, CONF_ID, oidc.ClientSecretBasic(CONF_SECRET));
  t.equal(await oauthError(oidc.authorizationCodeGrant(conf3, cb, { pkceCodeVerifier: k.verifier, expectedState: k.state })), 'invalid_grant');
  t.strictSame(await oidc.tokenIntrospection(conf3, tokens.access_token), { active: false }, 'revoked by the replay, across restarts');
});

t.test('admin rows: tenancy, validation, secrets never echoed, deletion kills the grants', async (t) => {
  const o = await startOAuthAppliance(t);
  const asOrg = async (org: string, method: string, id: string, body?: unknown) => {
    const r = await fetch(`${o.adminUrl}/v1/oauth/clients/${id}`, {
      method, headers: { authorization: `Bearer ${await orgToken(o, org)}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    return { status: r.status, json: text === '' ? undefined : (JSON.parse(text) as Record<string, unknown>) };
  };
  const good = { org_id: ORG, redirect_uris: [`https://${ORG_HOST}/cb`], scopes: ['read'], secret: 's'.repeat(40) };
  const created = await asOrg(ORG, 'PUT', 'org-app', good);
  t.equal(created.status, 201);
  t.strictSame(created.json, { client_id: 'org-app', org_id: ORG, redirect_uris: [`https://${ORG_HOST}/cb`], scopes: ['read'], client_type: 'confidential' });
  t.notOk(JSON.stringify(created.json).includes('sss'), 'secret not echoed');
  t.equal((await asOrg(ORG, 'PUT', 'org-app', { ...good, secret: undefined })).status, 200, 'replaced (now public)');
  t.equal((await asOrg(ORG2, 'PUT', 'org-app', { ...good, org_id: ORG2, redirect_uris: [`https://org-${ORG2}.example.test/cb`] })).status, 403, "another org's client id");
  t.equal((await asOrg(ORG2, 'PUT', 'x2', good)).status, 403, 'an org token registers for its own org only');
  t.equal((await asOrg(ORG2, 'DELETE', 'org-app')).status, 403);
  const user = await userToken(o, 'u', [`org:${ORG}:member`]);
  const asUser = await fetch(`${o.adminUrl}/v1/oauth/clients/x`, { method: 'PUT', headers: { authorization: `Bearer ${user}`, 'content-type': 'application/json' }, body: JSON.stringify(good) });
  t.equal(asUser.status, 403);
  const bad: Record<string, [unknown, string]> = {
    'other org host': [{ ...good, redirect_uris: [`https://org-${ORG2}.example.test/cb`] }, 'redirect_uris[0]'],
    'look-alike host': [{ ...good, redirect_uris: [`https://x${ORG_HOST}/cb`] }, 'redirect_uris[0]'],
    http: [{ ...good, redirect_uris: [`http://${ORG_HOST}/cb`] }, 'redirect_uris[0]'],
    fragment: [{ ...good, redirect_uris: [`https://${ORG_HOST}/cb#x`] }, 'redirect_uris[0]'],
    'user info': [{ ...good, redirect_uris: [`https://a:b@${ORG_HOST}/cb`] }, 'redirect_uris[0]'],
    'no uris': [{ ...good, redirect_uris: [] }, 'redirect_uris'],
    'bad scope': [{ ...good, scopes: ['a b'] }, 'scopes'],
    'short secret': [{ ...good, secret: 'short' }, 'secret'],
    'bad org': [{ ...good, org_id: 'nope' }, 'org_id'],
    'unknown field': [{ ...good, grant_types: ['x'] }, 'grant_types'],
  };
  for (const [name, [body, field]] of Object.entries(bad)) {
    const r = await admin(o, 'PUT', '/v1/oauth/clients/bad-app', body);
    t.equal(r.status, 400, name);
    t.equal((r.json as Record<string, unknown>)['field'], field, `${name}: names ${field}`);
  }
  t.equal((await admin(o, 'PUT', '/v1/oauth/clients/bad%20id', good)).status, 400, 'client id syntax');
  t.match((await admin(o, 'PUT', '/v1/oauth/clients/x', { ...good, redirect_uris: [`https://uc-1.${ORG_HOST}:8443/cb?x=1`] })).status, 201, 'any host under the org, port and query allowed');

  // Deleting a client kills its grants; re-creating the id does not revive them.
  const conf = await discover(o, o.issuer, CONF_ID, oidc.ClientSecretBasic(CONF_SECRET));
  const k = await pkce();
  const tokens = await oidc.authorizationCodeGrant(conf, await codeFor(o, conf, k), { pkceCodeVerifier: k.verifier, expectedState: k.state });
  const deleted = await admin(o, 'DELETE', `/v1/oauth/clients/${CONF_ID}`);
  t.equal(deleted.status, 204);
  t.equal((await admin(o, 'DELETE', `/v1/oauth/clients/${CONF_ID}`)).status, 404);
  t.equal((await admin(o, 'PUT', `/v1/oauth/clients/${CONF_ID}`, { org_id: ORG, redirect_uris: [CB], scopes: ['read'], secret: CONF_SECRET })).status, 201);
  const who = await httpsGet(o, ORG_HOST, '/oauth/authenticate', { headers: { authorization: `Bearer ${tokens.access_token}` } });
  t.equal(who.status, 401, 'tokens of the deleted client stay dead');
});

t.test('workers: 2 as a real process: the code flow through the service socket, kill -9 between authorize and token, nothing secret logged', async (t) => {
  const port = await freePort();
  const { dir, file } = await writeTestConfig({
    workers: 2,
    listen: { https: `127.0.0.1:${port}`, http: '127.0.0.1:0', admin: '127.0.0.1:0' },
    log: { level: 'debug' },
  });
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const run1 = await startEdgeway(t, file);
  const o1 = await setUp(t, run1 as unknown as TestAppliance, port, true);
  const conf = await discover(o1, o1.issuer, CONF_ID, oidc.ClientSecretBasic(CONF_SECRET));
  const k0 = await pkce();
  const cb0 = await codeFor(o1, conf, k0);
  const before = await oidc.authorizationCodeGrant(conf, cb0, { pkceCodeVerifier: k0.verifier, expectedState: k0.state });
  t.equal((await oidc.tokenIntrospection(conf, before.access_token)).active, true);
  const k = await pkce();
  const cb = await codeFor(o1, conf, k);

  // The whole appliance at once, as systemd's SIGKILL of the control group.
  const kids = await childrenOf(run1.p.pid);
  for (const pid of [run1.p.pid, ...kids]) process.kill(pid, 'SIGKILL');
  await run1.p.exited;

  const run2 = await startEdgeway(t, file);
  const o2 = await setUp(t, run2 as unknown as TestAppliance, port, false);
  const conf2 = await discover(o2, o2.issuer, CONF_ID, oidc.ClientSecretBasic(CONF_SECRET));
  const after = await oidc.authorizationCodeGrant(conf2, cb, { pkceCodeVerifier: k.verifier, expectedState: k.state });
  t.ok(after.access_token, 'a code acknowledged before kill -9 is exchanged after it');
  const who = await httpsGet(o2, `${'org-' + ORG}.example.test`, '/oauth/authenticate', { headers: { authorization: `Bearer ${before.access_token}` } });
  t.equal(who.status, 200, 'a token issued before kill -9 authenticates after it');
  t.match(JSON.parse(who.body), { sub: 'user-1', client_id: CONF_ID });
  const fresh = await oidc.refreshTokenGrant(conf2, before.refresh_token!);
  t.ok(fresh.access_token);

  const logs = [...run1.p.lines, ...run2.p.lines].map((l) => JSON.stringify(l)).join('\n') + run1.p.stderr + run2.p.stderr;
  t.ok(logs.includes('/oauth/token'), 'the access log saw the token endpoint');
  const secrets = [
    cb0.searchParams.get('code')!, cb.searchParams.get('code')!, k0.state, k.state, k.verifier, before.access_token, before.refresh_token!,
    after.access_token, fresh.refresh_token!, CONF_SECRET, o1.user,
  ];
  for (const s of secrets) t.notOk(logs.includes(s), `never logged: ${s.slice(0, 4)}…`);
});
