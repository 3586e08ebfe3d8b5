import t from 'tap';
import { generateKeyPairSync } from 'node:crypto';
import { statSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import jsonwebtoken from 'jsonwebtoken';
import { validateConfig } from '../src/config/validate.js';
import type { Config } from '../src/config/types.js';
import { loadJwtKeys, type JwtKeys } from '../src/auth/keys.js';
import { TokenVerifier, signToken, type TokenClaims } from '../src/auth/jwt.js';
import { EdgewayError } from '../src/errors.js';

const SECRET = 'a-test-secret-that-is-at-least-32-characters-long';
const ORG = '7f3a0000-0000-4000-8000-000000000002';

function config(dir: string, jwt: Record<string, unknown> = {}): Config {
  return validateConfig({ domain: 'example.test', data_dir: join(dir, 'data'), auth: { jwt } }, join(dir, 'edgeway.yaml'));
}

async function setup(jwt: Record<string, unknown> = { secret: SECRET }): Promise<{ cfg: Config; keys: JwtKeys }> {
  const cfg = config(t.testdir(), jwt);
  return { cfg, keys: await loadJwtKeys(cfg) };
}

function b64(o: unknown): string {
  return Buffer.from(JSON.stringify(o)).toString('base64url');
}

t.test('round trip for each token type', async (t) => {
  const { cfg, keys } = await setup();
  const v = new TokenVerifier(keys, cfg.auth.jwt);
  const cases: TokenClaims[] = [
    { type: 'user', sub: 'u-1', scope: [`org:${ORG}:member`] },
    { type: 'organization_token', organization_id: ORG },
    { type: 'organization_token', organization_id: ORG, allowed_upstreams: ['10.1.0.0/16'] },
    { type: 'platform', scope: ['edge:admin'] },
  ];
  for (const claims of cases) {
    const got = v.verify(signToken(keys, cfg.auth.jwt, claims, 600));
    t.ok(got, `${claims.type} verifies`);
    const { exp, ...rest } = got!;
    t.same(rest, claims, `${claims.type} claims survive`);
    t.type(exp, 'number');
    t.ok(exp! * 1000 > Date.now() + 590_000 && exp! * 1000 <= Date.now() + 600_000, 'exp is now + ttl');
  }
  // Extra claims are not passed along.
  const extra = jsonwebtoken.sign({ type: 'user', sub: 'u', scope: [], admin: true }, SECRET, { expiresIn: 60 });
  t.same(Object.keys(v.verify(extra)!).sort(), ['exp', 'scope', 'sub', 'type']);
  // A user token without scope still verifies, with an empty scope.
  const noScope = jsonwebtoken.sign({ type: 'user', sub: 'u' }, SECRET, { expiresIn: 60 });
  t.match(v.verify(noScope), { type: 'user', sub: 'u', scope: [] });
});

t.test('wrong key, alg none and a foreign algorithm are refused', async (t) => {
  const { cfg, keys } = await setup();
  const v = new TokenVerifier(keys, cfg.auth.jwt);
  const claims = { type: 'platform', scope: ['edge:admin'] };

  const other = jsonwebtoken.sign(claims, 'another-secret-that-is-at-least-32-chars!!', { expiresIn: 60 });
  t.equal(v.verify(other), undefined);
  t.same(v.check(other), { ok: false, reason: 'signature' });

  const exp = Math.floor(Date.now() / 1000) + 60;
  const none = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ ...claims, exp })}.`;
  t.equal(v.verify(none), undefined, 'alg none refused');

  const hs384 = jsonwebtoken.sign(claims, SECRET, { algorithm: 'HS384', expiresIn: 60 });
  t.same(v.check(hs384), { ok: false, reason: 'algorithm' }, 'HS384 refused when HS256 is pinned');
  const hs256 = jsonwebtoken.sign(claims, SECRET, { algorithm: 'HS256', expiresIn: 60 });
  t.ok(v.verify(hs256), 'the same claims with HS256 pass');

  for (const junk of ['', 'garbage', 'a.b.c', 'x'.repeat(20_000)]) t.equal(v.verify(junk), undefined, 'junk refused');
  t.equal(v.stats.rejected, 8);
});

t.test('expiry with 30 s of clock skew', async (t) => {
  const { cfg, keys } = await setup();
  const v = new TokenVerifier(keys, cfg.auth.jwt);
  const now = Math.floor(Date.now() / 1000);
  const at = (exp: number): string => jsonwebtoken.sign({ type: 'platform', scope: ['edge:admin'], exp }, SECRET);
  t.same(v.check(at(now - 40)), { ok: false, reason: 'expired' }, '40 s past exp refused');
  t.ok(v.verify(at(now - 20)), '20 s past exp accepted (skew)');
  const noExp = jsonwebtoken.sign({ type: 'platform', scope: ['edge:admin'] }, SECRET);
  t.same(v.check(noExp), { ok: false, reason: 'no_exp' }, 'a token without exp is refused');
});

t.test('issuer and audience are enforced when configured', async (t) => {
  const { cfg, keys } = await setup({ secret: SECRET, issuer: 'https://platform.test', audience: 'edgeway' });
  const v = new TokenVerifier(keys, cfg.auth.jwt);
  const claims = { type: 'platform', scope: ['edge:admin'] } as const;
  t.ok(v.verify(signToken(keys, cfg.auth.jwt, claims, 60)), 'signToken sets iss and aud');
  const opts = { issuer: 'https://platform.test', audience: 'edgeway', expiresIn: 60 };
  t.same(v.check(jsonwebtoken.sign(claims, SECRET, { ...opts, issuer: 'https://evil.test' })), { ok: false, reason: 'issuer' });
  t.same(v.check(jsonwebtoken.sign(claims, SECRET, { ...opts, audience: 'other' })), { ok: false, reason: 'audience' });
  t.same(v.check(jsonwebtoken.sign(claims, SECRET, { audience: 'edgeway', expiresIn: 60 })), { ok: false, reason: 'issuer' }, 'missing iss refused');
  t.same(v.check(jsonwebtoken.sign(claims, SECRET, { issuer: 'https://platform.test', expiresIn: 60 })), { ok: false, reason: 'audience' }, 'missing aud refused');

  // Without issuer/audience in the config, those claims are not required.
  const plain = await setup();
  t.ok(new TokenVerifier(plain.keys, plain.cfg.auth.jwt).verify(jsonwebtoken.sign(claims, SECRET, opts)));
});

t.test('verified tokens are cached until their exp', async (t) => {
  const { cfg, keys } = await setup();
  let clock = Date.now();
  const v = new TokenVerifier(keys, cfg.auth.jwt, { now: () => clock });
  const token = signToken(keys, cfg.auth.jwt, { type: 'user', sub: 'u', scope: [] }, 60);

  const first = v.verify(token);
  const second = v.verify(token);
  t.ok(first);
  t.equal(second, first, 'the cached claims are returned');
  t.same(v.stats, { verified: 1, cacheHits: 1, rejected: 0 }, 'jsonwebtoken ran once');

  clock += 61_000; // past exp, within skew: re-verified, not served from the cache
  t.ok(v.verify(token));
  t.equal(v.stats.verified, 2);
  clock += 30_000; // past exp + skew
  t.equal(v.verify(token), undefined, 'refused after exp');
  t.equal(v.verify(token), undefined, 'and stays refused');
  t.same(v.stats, { verified: 4, cacheHits: 1, rejected: 2 });
  t.ok(Object.isFrozen(first), 'shared claims are frozen');
});

t.test('malformed claims are refused', async (t) => {
  const { cfg, keys } = await setup();
  const v = new TokenVerifier(keys, cfg.auth.jwt);
  const bad = [
    { type: 'user', scope: [] },
    { type: 'user', sub: '', scope: [] },
    { type: 'user', sub: 'u', scope: 'org:x:member' },
    { type: 'platform' },
    { type: 'platform', scope: [1] },
    { type: 'organization_token' },
    { type: 'organization_token', organization_id: 'not-a-uuid' },
    { type: 'organization_token', organization_id: ORG.toUpperCase() },
    { type: 'organization_token', organization_id: ORG, allowed_upstreams: '10.0.0.0/8' },
    { type: 'admin', scope: ['edge:admin'] },
    { sub: 'u' },
  ];
  for (const claims of bad) {
    t.same(v.check(jsonwebtoken.sign(claims, SECRET, { expiresIn: 60 })), { ok: false, reason: 'claims' }, JSON.stringify(claims));
  }
  t.throws(() => signToken(keys, cfg.auth.jwt, { type: 'user', scope: [] } as unknown as TokenClaims, 60), /user token shape/);
  t.throws(() => signToken(keys, cfg.auth.jwt, { type: 'platform', scope: [] }, 0), /ttl/);
});

t.test('loadJwtKeys creates the default secret file once', async (t) => {
  const dir = t.testdir();
  const cfg = config(dir);
  const file = join(dir, 'data', 'jwt.secret');
  t.equal(cfg.auth.jwt.secret_file, file, 'the config points at the default');

  const a = await loadJwtKeys(cfg);
  t.equal(statSync(file).mode & 0o777, 0o600, 'secret file is 0600');
  t.equal(statSync(join(dir, 'data')).mode & 0o777, 0o700, 'data dir is 0700');
  t.equal(Buffer.from(a.signKey as string, 'base64url').length, 64, '64 random bytes');
  t.equal(readFileSync(file, 'utf8').trim(), a.signKey);

  const b = await loadJwtKeys(cfg);
  t.equal(b.signKey, a.signKey, 'reused on the next call');
  const token = signToken(a, cfg.auth.jwt, { type: 'platform', scope: ['edge:admin'] }, 60);
  t.ok(new TokenVerifier(b, cfg.auth.jwt).verify(token));
});

t.test('loadJwtKeys: explicit secret files and their errors', async (t) => {
  const dir = t.testdir({ 'given.secret': `${SECRET}\n`, 'empty.secret': '\n' });
  const keys = await loadJwtKeys(config(dir, { secret_file: 'given.secret' }));
  t.equal(keys.signKey, SECRET, 'trailing newline dropped');

  // A missing non-default file is an error, never silently created.
  await t.rejects(loadJwtKeys(config(dir, { secret_file: 'missing.secret' })), { code: 'CONFIG_INVALID', field: 'auth.jwt.secret_file' });
  await t.rejects(loadJwtKeys(config(dir, { secret_file: 'empty.secret' })), { code: 'CONFIG_INVALID', field: 'auth.jwt.secret_file' });
});

t.test('loadJwtKeys with a public key verifies but cannot sign', async (t) => {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const dir = t.testdir();
  writeFileSync(join(dir, 'pub.pem'), publicKey.export({ type: 'spki', format: 'pem' }));
  const cfg = config(dir, { algorithms: ['ES256'], public_key_file: 'pub.pem' });
  const keys = await loadJwtKeys(cfg);
  t.equal(keys.signKey, undefined);
  const v = new TokenVerifier(keys, cfg.auth.jwt);
  const token = jsonwebtoken.sign({ type: 'platform', scope: ['edge:admin'] }, privateKey, { algorithm: 'ES256', expiresIn: 60 });
  t.ok(v.verify(token), 'ES256 token verifies');
  // Key confusion: an HS256 token "signed" with the public key text must not pass.
  const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  t.equal(v.verify(jsonwebtoken.sign({ type: 'platform', scope: ['edge:admin'] }, pem, { algorithm: 'HS256', expiresIn: 60 })), undefined);
  t.throws(() => signToken(keys, cfg.auth.jwt, { type: 'platform', scope: ['edge:admin'] }, 60), /public_key_file/);

  const rsCfg = config(dir, { algorithms: ['RS256'], public_key_file: 'pub.pem' });
  const err = await loadJwtKeys(rsCfg).catch((e: unknown) => e);
  t.ok(err instanceof EdgewayError && err.field === 'auth.jwt.algorithms', 'RS256 with an EC key names auth.jwt.algorithms');
  writeFileSync(join(dir, 'bad.pem'), 'not a key');
  await t.rejects(loadJwtKeys(config(dir, { algorithms: ['ES256'], public_key_file: 'bad.pem' })), { code: 'CONFIG_INVALID', field: 'auth.jwt.public_key_file' });
});
