// Access control at the edge (DESIGN.md "How a browser gets in", issue 3
// point 6): the matrix for HTTP and websockets against an in-process appliance
// over TLS, the login handoff, credential stripping, websocket expiry, the 429
// limiter, and log redaction in a spawned two-worker edgeway.

import t, { type Test } from 'tap';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import jsonwebtoken from 'jsonwebtoken';
import WebSocket, { WebSocketServer } from 'ws';
import { ORG, ORG2, ORG_HOST, ORG2_HOST, UC, UC_HOST, DOMAIN, admin, startTestAppliance, userToken, writeTestConfig, type TestAppliance } from './helpers/appliance.js';
import { EdgewayProcess } from './helpers/process.js';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadConfig } from '../src/config/load.js';
import { loadJwtKeys } from '../src/auth/keys.js';
import { signToken } from '../src/auth/jwt.js';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { FailLimiter, keyOf } from '../src/auth/fail-limiter.js';
import { SessionCookies, loadSessionKey } from '../src/auth/session-cookie.js';
import { ownQuery, withoutOwnCookies } from '../src/proxy/headers.js';

const SECRET = 'access-test-secret-0123456789abcdefghij';
const LOGIN = 'https://login.example.test/signin?return_to={return_to}';
const UC2 = '1b4e8f0a-0000-4000-8000-000000000009';
const UC2_HOST = `uc-${UC2}.org-${ORG}.${DOMAIN}`;
const HTML = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8';
const SESSION_TTL = 7200;

interface Seen {
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
}

/** An app upstream: HTTP answers with what it saw; websockets echo and record their close codes. */
async function appUpstream(t: Test) {
  const seen: Seen[] = [];
  const wsSeen: Seen[] = [];
  const wsCloses: number[] = [];
  const server = http.createServer((req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    const body = JSON.stringify({ url: req.url, headers: req.headers });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws, req) => {
    wsSeen.push({ url: req.url ?? '', headers: req.headers });
    ws.on('message', (d, binary) => ws.send(d, { binary }));
    ws.on('close', (code) => wsCloses.push(code));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.closeAllConnections();
    server.close();
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, wsSeen, wsCloses };
}

interface Answer {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
  readonly json: Record<string, unknown> | undefined;
  readonly cookies: readonly string[];
}

type Opts = { headers?: Record<string, string>; localAddress?: string; method?: string };

/** One HTTPS request to the appliance, from `localAddress` when given. */
function get(ta: Pick<TestAppliance, 'httpsPort' | 'caPem'>, host: string, path: string, opts: Opts = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: ta.httpsPort,
        path,
        method: opts.method ?? 'GET',
        ca: [ta.caPem],
        servername: host,
        headers: { host, ...opts.headers },
        agent: false,
        ...(opts.localAddress !== undefined ? { localAddress: opts.localAddress } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString();
          let json: Record<string, unknown> | undefined;
          try {
            json = JSON.parse(body) as Record<string, unknown>;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json, cookies: res.headers['set-cookie'] ?? [] });
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** Opens a websocket through the appliance; resolves with it, or rejects with the HTTP status that refused it. */
function openWs(t: Test, ta: Pick<TestAppliance, 'httpsPort' | 'caPem'>, host: string, path: string, opts: Opts = {}): Promise<WebSocket> {
  const ws = new WebSocket(`wss://127.0.0.1:${ta.httpsPort}${path}`, {
    ca: ta.caPem,
    servername: host,
    headers: { host, ...opts.headers },
    ...(opts.localAddress !== undefined ? { localAddress: opts.localAddress } : {}),
  } as WebSocket.ClientOptions);
  t.teardown(() => ws.terminate());
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => reject(Object.assign(new Error(`upgrade answered ${res.statusCode}`), { status: res.statusCode, body: Buffer.concat(chunks).toString() })));
    });
  });
}

async function refusedWs(t: Test, ta: Pick<TestAppliance, 'httpsPort' | 'caPem'>, host: string, path: string, opts: Opts = {}): Promise<{ status: number; body: string }> {
  try {
    await openWs(t, ta, host, path, opts);
  } catch (e) {
    const err = e as { status?: number; body?: string };
    if (err.status !== undefined) return { status: err.status, body: err.body ?? '' };
    throw e;
  }
  throw new Error('the upgrade was accepted');
}

function sign(payload: Record<string, unknown>, secret = SECRET): string {
  return jsonwebtoken.sign(payload, secret, { algorithm: 'HS256' });
}

/** `name=value` of the Set-Cookie that sets `name`, with its attributes. */
function setCookie(a: Answer, name: string): string | undefined {
  return a.cookies.find((c) => c.startsWith(`${name}=`));
}

function cookieValue(a: Answer, name: string): string {
  const c = setCookie(a, name);
  if (c === undefined) throw new Error(`no Set-Cookie ${name}`);
  return c.slice(name.length + 1, c.indexOf(';'));
}

const ta = await startTestAppliance(t, {
  auth: {
    jwt: { secret: SECRET },
    login_url: LOGIN,
    handoff_max_ttl_s: 60,
    session_ttl_s: SESSION_TTL,
    fail_limit: { max_failures: 100_000 },
  },
});
const up = await appUpstream(t);
const ORG_MEMBER = `org:${ORG}:member`;
const alice = await userToken(ta, 'alice', [ORG_MEMBER]);
const bob = await userToken(ta, 'bob', [`org:${ORG2}:member`]);
const carol = await userToken(ta, 'carol', [ORG_MEMBER, `uc:${UC}:access`]);
const now = Math.floor(Date.now() / 1000);
const badSig = sign({ type: 'user', sub: 'alice', scope: [ORG_MEMBER], exp: now + 600 }, 'another-secret-0123456789abcdefghijkl');
const expired = sign({ type: 'user', sub: 'alice', scope: [ORG_MEMBER], iat: now - 600, exp: now - 120 });
const platform = ta.platformToken;

for (const [host, entry] of [
  [ORG_HOST, {
    locations: [
      { path: '/', upstream: up.url },
      { path: '/pub', upstream: up.url, access: 'public' },
      { path: '/any', upstream: up.url, access: 'user' },
      { path: '/alice', upstream: up.url, access: { users: ['alice'] } },
      { path: '/by-host', upstream: up.url, access: { scope: 'host:{host}' } },
      { path: '/uc-only', upstream: up.url, access: { scope: 'uc:{uc_id}:access' } },
    ],
  }],
  [UC_HOST, { locations: [{ path: '/', upstream: up.url }] }],
  [UC2_HOST, { access: 'user', locations: [{ path: '/', upstream: up.url }] }],
  [ORG2_HOST, { locations: [{ path: '/', upstream: up.url }] }],
] as const) {
  const r = await admin(ta, 'PUT', `/v1/hosts/${host}`, { host, ...entry });
  if (r.status !== 201) throw new Error(`PUT ${host}: ${r.status} ${JSON.stringify(r.json)}`);
}

const bearer = (tok: string): Opts => ({ headers: { authorization: `Bearer ${tok}` } });

// Subtests are registered only after the top-level awaits: tap ends the root
// test (and runs its teardowns) once it has no subtest pending.
t.test('pieces: session key file, session cookies, limiter keys, own parameters and cookies', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'edgeway-session-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const data = join(dir, 'data');
  // Processes starting together (workers) must all end up with the one key.
  const keys = await Promise.all(Array.from({ length: 8 }, () => loadSessionKey(data)));
  t.ok(keys.every((k) => k.equals(keys[0]!)), 'one key for every concurrent loader');
  t.equal(keys[0]!.length, 32);
  t.equal((await stat(join(data, 'session.key'))).mode & 0o777, 0o600, 'session.key is 0600');
  t.ok((await loadSessionKey(data)).equals(keys[0]!), 'the same key after a restart');

  let now = 1_000_000_000_000;
  const s = new SessionCookies(keys[0]!, 60, () => now);
  const set = s.mint('a.test', 'u1', ['x'], ['a.test'])!;
  const value = set.slice('edgeway_token='.length, set.indexOf(';'));
  t.has(s.verify(value, 'a.test'), { sub: 'u1', scope: ['x'], expMs: now + 60_000, viaAuthorization: false });
  t.equal(s.verify(value, 'b.test'), 'session_host');
  t.equal(s.verify(value.slice(0, -2) + 'AA', 'a.test'), 'session_invalid', 'a changed MAC');
  t.equal(s.verify('no-dot', 'a.test'), 'session_invalid');
  t.equal(new SessionCookies(randomKey(), 60, () => now).verify(value, 'a.test'), 'session_invalid', 'another key');
  now += 60_000;
  t.equal(s.verify(value, 'a.test'), 'session_expired', 'expired at exp, cached or not');
  const many = Array.from({ length: 400 }, (_, i) => `org:7f3a0000-0000-4000-8000-${String(i).padStart(12, '0')}:member`);
  const big = s.mint('a.test', 'u1', [...many, 'org:ORGX:member'], ['a.test', 'ORGX'])!;
  t.ok(big.length < 4096, 'a huge scope list is cut to the scopes naming this host');
  t.ok(big.includes('.'), 'still a session');
  t.equal(s.mint('a.test', 'u1', many.map((m) => m + 'a.test'), ['a.test']), undefined, 'refused when even that does not fit');

  t.equal(keyOf('10.1.2.3'), '10.1.2.3');
  t.equal(keyOf('::ffff:10.1.2.3'), '10.1.2.3', 'IPv4-mapped is the IPv4 address');
  t.equal(keyOf('2001:db8:0:1:aaaa::1'), '2001:db8:0:1::/64', 'IPv6 by /64');
  t.equal(keyOf('2001:0db8::ffff'), '2001:db8:0:0::/64');
  t.equal(keyOf('::1'), '0:0:0:0::/64');
  const lim = new FailLimiter({ max_failures: 2, window_s: 10, ban_s: 5 });
  t.equal(lim.bannedFor('1.2.3.4', 0), 0);
  t.notOk(lim.fail('1.2.3.4', 0));
  t.notOk(lim.fail('1.2.3.4', 11_000), 'the window ended: counting starts again');
  t.ok(lim.fail('1.2.3.4', 12_000), 'two within the window: banned');
  t.equal(lim.bannedFor('1.2.3.4', 12_000), 5);
  t.equal(lim.bannedFor('1.2.3.5', 12_000), 0, 'another address');
  t.equal(lim.bannedFor('1.2.3.4', 17_000), 0, 'the ban ends');
  t.notOk(new FailLimiter({ max_failures: 0, window_s: 1, ban_s: 1 }).fail('x', 0), 'max_failures 0: off');

  t.equal(ownQuery('/a?b=edgeway'), undefined, 'edgeway in a value only: unchanged');
  t.equal(ownQuery('/a?x=1'), undefined);
  t.same(ownQuery('/a?edgeway_token=t%2B1&x=1&edgeway_state=s&edgeway_token=t2'), { token: 't+1', state: 's', url: '/a?x=1' });
  t.same(ownQuery('/a?edgeway_state'), { token: undefined, state: '', url: '/a' });
  t.equal(withoutOwnCookies('a=1; b=2'), 'a=1; b=2');
  t.equal(withoutOwnCookies('edgeway_token=x;a=1;  edgeway_state=y ;b=edgeway_token'), 'a=1; b=edgeway_token');
  t.equal(withoutOwnCookies('edgeway_token=x'), '');
});

function randomKey(): Buffer {
  return Buffer.from(Array.from({ length: 32 }, (_, i) => (i * 7 + 3) & 0xff));
}


t.test('HTTP matrix: no token, bad signature, expired, wrong scope, right scope', async (t) => {
  const before = up.seen.length;
  const none = await get(ta, ORG_HOST, '/app');
  t.equal(none.status, 401, 'no token, API client: 401');
  t.equal(none.headers['content-type'], 'application/json');
  t.equal(none.headers['www-authenticate'], 'Bearer realm="edgeway"');
  t.has(none.json, { error: 'unauthorized', reason: 'no_token' });
  const star = await get(ta, ORG_HOST, '/app', { headers: { accept: '*/*' } });
  t.equal(star.status, 401, '*/* alone is not a browser');

  const bad = await get(ta, ORG_HOST, '/app', bearer(badSig));
  t.equal(bad.status, 401, 'bad signature');
  t.equal(bad.json?.['reason'], 'signature');
  t.match(bad.headers['www-authenticate'], /error="invalid_token"/);
  const old = await get(ta, ORG_HOST, '/app', bearer(expired));
  t.equal(old.status, 401, 'expired');
  t.equal(old.json?.['reason'], 'expired');
  t.equal(old.json?.['message'], 'the token has expired');
  const plat = await get(ta, ORG_HOST, '/app', bearer(platform));
  t.equal(plat.status, 401, 'a platform token is not a user token');

  const wrong = await get(ta, ORG_HOST, '/app', bearer(bob));
  t.equal(wrong.status, 403, 'another org: 403');
  t.has(wrong.json, { error: 'forbidden', reason: 'scope' });
  t.match(wrong.headers['www-authenticate'], /insufficient_scope/);
  const wrongHtml = await get(ta, ORG_HOST, '/app', { headers: { ...bearer(bob).headers, accept: HTML } });
  t.equal(wrongHtml.status, 403, 'browsers get 403 too, never a login loop');
  t.match(wrongHtml.headers['content-type'], /^text\/html/);
  t.match(wrongHtml.body, /403 Forbidden/);
  t.equal(up.seen.length, before, 'nothing reached the upstream');

  const ok = await get(ta, ORG_HOST, '/app?x=1', bearer(alice));
  t.equal(ok.status, 200, 'org member on the org host');
  t.equal(ok.json?.['url'], '/app?x=1');
  t.notOk((ok.json?.['headers'] as Record<string, string>)['authorization'], 'the accepted Authorization is not forwarded');

  t.equal((await get(ta, UC_HOST, '/', bearer(alice))).status, 403, 'a member is not the container owner');
  t.equal((await get(ta, UC_HOST, '/', bearer(carol))).status, 200, 'uc:{uc_id}:access opens the container');
  t.equal((await get(ta, ORG_HOST, '/uc-only', bearer(carol))).status, 403, '{uc_id} on an org host grants nothing');
  t.equal((await get(ta, ORG2_HOST, '/', bearer(bob))).status, 200, 'org 2 member on org 2');
  t.equal((await get(ta, ORG2_HOST, '/', bearer(alice))).status, 403, 'org 1 member on org 2');
});

t.test('user, users, {host} and public policies', async (t) => {
  t.equal((await get(ta, ORG_HOST, '/any')).status, 401, 'user: no token');
  t.equal((await get(ta, ORG_HOST, '/any', bearer(bob))).status, 200, 'user: any valid user token');
  t.equal((await get(ta, ORG_HOST, '/alice', bearer(alice))).status, 200, 'users: listed');
  const notListed = await get(ta, ORG_HOST, '/alice', bearer(carol));
  t.equal(notListed.status, 403, 'users: not listed');
  t.equal(notListed.json?.['reason'], 'users');
  const hostTok = await userToken(ta, 'dan', [`host:${ORG_HOST}`]);
  t.equal((await get(ta, ORG_HOST, '/by-host', bearer(hostTok))).status, 200, '{host} substituted');
  t.equal((await get(ta, ORG_HOST, '/by-host', bearer(alice))).status, 403);
  t.equal((await get(ta, ORG_HOST, '/pub')).status, 200, 'public: no token needed');
  t.equal((await get(ta, ORG_HOST, '/pub', { headers: { accept: HTML } })).status, 200, 'public: no redirect');
});

t.test('a browser without a token is sent to the login with a state nonce', async (t) => {
  // Browsers send the port in Host (RFC 9110 §7.2); return_to keeps it.
  const withPort = `${ORG_HOST}:${ta.httpsPort}`;
  const r = await get(ta, ORG_HOST, '/app/page?x=1&y=%20z', { headers: { accept: HTML, host: withPort } });
  t.equal(r.status, 302);
  const loc = r.headers.location ?? '';
  const prefix = 'https://login.example.test/signin?return_to=';
  t.ok(loc.startsWith(prefix), loc);
  const returnTo = decodeURIComponent(loc.slice(prefix.length));
  const nonce = cookieValue(r, 'edgeway_state');
  t.match(nonce, /^[A-Za-z0-9_-]{22}$/);
  t.equal(returnTo, `https://${ORG_HOST}:${ta.httpsPort}/app/page?x=1&y=%20z&edgeway_state=${nonce}`);
  const c = setCookie(r, 'edgeway_state')!;
  for (const attr of ['Path=/', 'Secure', 'HttpOnly', 'SameSite=Lax', 'Max-Age=600']) t.ok(c.split('; ').includes(attr), attr);
  t.notMatch(c, /Domain=/i, 'host-only');
  t.equal(r.headers['cache-control'], 'no-store');
  const again = await get(ta, ORG_HOST, '/app', { headers: { accept: HTML } });
  t.not(cookieValue(again, 'edgeway_state'), nonce, 'a fresh nonce each time');
  const noQuery = await get(ta, ORG_HOST, '/', { headers: { accept: HTML } });
  t.ok(decodeURIComponent(noQuery.headers.location!).endsWith(`${ORG_HOST}/?edgeway_state=${cookieValue(noQuery, 'edgeway_state')}`), 'no query: ?edgeway_state');
  const bad = await get(ta, ORG_HOST, '/app', { headers: { accept: HTML, cookie: 'edgeway_token=forged.x' } });
  t.equal(bad.status, 302, 'an invalid session cookie also goes to the login');
});

/** Steps 1–3 of the login: the state from a redirect, then the handoff with `token`. */
async function login(host: string, path: string, token: string) {
  const first = await get(ta, host, path, { headers: { accept: HTML } });
  const nonce = cookieValue(first, 'edgeway_state');
  const back = decodeURIComponent(first.headers.location!.split('return_to=')[1]!);
  const target = back.slice(back.indexOf('/', 'https://'.length)) + `&edgeway_token=${token}`;
  return { nonce, target, handoff: (opts: Opts = {}) => get(ta, host, target, opts) };
}

t.test('the handoff needs the matching state and a short-lived token', async (t) => {
  const short = await userToken(ta, 'alice', [ORG_MEMBER], 30);
  const { nonce, target } = await login(ORG_HOST, '/app?x=1', short);
  const html = { accept: HTML };
  const cases: Array<[string, string, Record<string, string>, string]> = [
    ['wrong state', target.replace(nonce, 'A'.repeat(22)), { cookie: `edgeway_state=${nonce}` }, 'handoff_state'],
    ['missing state cookie', target, {}, 'handoff_state'],
    ['missing state param', target.replace(`edgeway_state=${nonce}&`, ''), { cookie: `edgeway_state=${nonce}` }, 'handoff_state'],
    ['empty state', target.replace(nonce, ''), { cookie: 'edgeway_state=' }, 'handoff_state'],
  ];
  for (const [name, path, headers, reason] of cases) {
    const r = await get(ta, ORG_HOST, path, { headers });
    t.equal(r.status, 401, name);
    t.equal(r.json?.['reason'], reason, name);
    t.equal(setCookie(r, 'edgeway_token'), undefined, `${name}: no session`);
    const page = await get(ta, ORG_HOST, path, { headers: { ...headers, ...html } });
    t.equal(page.status, 401, `${name}: a browser gets a page, not a login loop`);
    t.match(page.body, /edgeway_state/);
  }
  const long = await userToken(ta, 'alice', [ORG_MEMBER], 3600);
  const r = await get(ta, ORG_HOST, target.replace(short, long), { headers: { cookie: `edgeway_state=${nonce}` } });
  t.equal(r.status, 401, 'a long-lived token in the query is refused');
  t.equal(r.json?.['reason'], 'handoff_ttl');
  t.match(String(r.json?.['message']), /handoff_max_ttl_s/, 'and the answer says why');
  for (const [name, tok, reason] of [['bad signature', badSig, 'signature'], ['expired', expired, 'expired'], ['platform', platform, 'not_user']] as const) {
    const x = await get(ta, ORG_HOST, target.replace(short, tok), { headers: { cookie: `edgeway_state=${nonce}` } });
    t.equal(x.status, 401, `handoff with a ${name} token`);
    t.equal(x.json?.['reason'], reason);
  }
});

t.test('handoff success: session cookie, clean 302, and the cookie opens the next request', async (t) => {
  const short = await userToken(ta, 'alice', [ORG_MEMBER], 30);
  const { nonce, handoff } = await login(ORG_HOST, '/app/x?x=1&y=2', short);
  const before = up.seen.length;
  const r = await handoff({ headers: { cookie: `theme=dark; edgeway_state=${nonce}` } });
  t.equal(r.status, 302);
  t.equal(r.headers.location, '/app/x?x=1&y=2', 'back to the original URL without edgeway_token and edgeway_state');
  const session = setCookie(r, 'edgeway_token')!;
  for (const attr of ['Path=/', 'Secure', 'HttpOnly', 'SameSite=Lax', `Max-Age=${SESSION_TTL}`]) t.ok(session.split('; ').includes(attr), attr);
  t.notMatch(session, /Domain=/i, 'host-only');
  t.notOk(session.includes(short), 'the session is not the platform token');
  t.match(setCookie(r, 'edgeway_state'), /^edgeway_state=; Max-Age=0/, 'state cleared');
  t.equal(r.headers['referrer-policy'], 'no-referrer');
  t.equal(up.seen.length, before, 'the handoff itself reaches no upstream');

  const cookie = cookieValue(r, 'edgeway_token');
  const next = await get(ta, ORG_HOST, '/app/x?x=1&y=2', { headers: { cookie: `theme=dark; edgeway_token=${cookie}` } });
  t.equal(next.status, 200, 'the session cookie works');
  const seen = next.json?.['headers'] as Record<string, string>;
  t.equal(seen['cookie'], 'theme=dark', "edgeway's cookie removed, the app's kept");
  t.equal((await get(ta, ORG_HOST, '/alice', { headers: { cookie: `edgeway_token=${cookie}` } })).status, 200, 'sub carried');
  t.equal((await get(ta, ORG_HOST, '/uc-only', { headers: { cookie: `edgeway_token=${cookie}` } })).status, 403, 'scope carried, no more');

  const replay = await get(ta, UC2_HOST, '/', { headers: { cookie: `edgeway_token=${cookie}` } });
  t.equal(replay.status, 401, 'host A session replayed on host B (access: user) is refused');
  t.equal(replay.json?.['reason'], 'session_host');
  const dot = cookie.lastIndexOf('.');
  const payload = JSON.parse(Buffer.from(cookie.slice(0, dot), 'base64url').toString()) as Record<string, unknown>;
  t.equal(payload['h'], ORG_HOST, 'bound to the host');
  t.ok(Math.abs(Number(payload['e']) - (Date.now() / 1000 + SESSION_TTL)) < 60, 'valid session_ttl_s');
  const forged = Buffer.from(JSON.stringify({ ...payload, h: UC2_HOST })).toString('base64url') + cookie.slice(dot);
  const f = await get(ta, UC2_HOST, '/', { headers: { cookie: `edgeway_token=${forged}` } });
  t.equal(f.status, 401, 'rebinding the payload breaks the signature');
  t.equal(f.json?.['reason'], 'session_invalid');
  const later = await get(ta, UC2_HOST, '/', { headers: { cookie: `edgeway_token=${forged}`, authorization: `Bearer ${bob}` } });
  t.equal(later.status, 200, 'an invalid cookie does not hide a valid Bearer');
});

t.test("the app's own Authorization passes untouched; edgeway's credentials never reach the upstream", async (t) => {
  const sessionCookie = await (async () => {
    const { nonce, handoff } = await login(ORG_HOST, '/', await userToken(ta, 'alice', [ORG_MEMBER], 30));
    return cookieValue(await handoff({ headers: { cookie: `edgeway_state=${nonce}` } }), 'edgeway_token');
  })();
  for (const auth of ['Bearer app-token', 'Basic YWxpY2U6c2VjcmV0', `Bearer ${badSig}`]) {
    const pub = await get(ta, ORG_HOST, '/pub', { headers: { authorization: auth } });
    t.equal((pub.json?.['headers'] as Record<string, string>)['authorization'], auth, `public: ${auth.slice(0, 12)}… untouched`);
    const prot = await get(ta, ORG_HOST, '/app', { headers: { authorization: auth, cookie: `edgeway_token=${sessionCookie}` } });
    t.equal(prot.status, 200);
    t.equal((prot.json?.['headers'] as Record<string, string>)['authorization'], auth, `protected with a session: ${auth.slice(0, 12)}… untouched`);
  }
  const cookies = `a=1; edgeway_token=${sessionCookie}; edgeway_state=s1; b=2`;
  const r = await get(ta, ORG_HOST, '/app?q=1&edgeway_state=s2&z=%20', { headers: { cookie: cookies } });
  t.equal(r.status, 200);
  t.equal(r.json?.['url'], '/app?q=1&z=%20', 'query parameters removed, the rest kept in order');
  t.equal((r.json?.['headers'] as Record<string, string>)['cookie'], 'a=1; b=2');
  const onlyOwn = await get(ta, ORG_HOST, '/pub/x?edgeway_token=abc&edgeway%5Fstate=d', { headers: { cookie: 'edgeway_token=x; edgeway_state=y' } });
  t.equal(onlyOwn.json?.['url'], '/pub/x', 'removed on public locations too (encoded names as well)');
  t.notOk((onlyOwn.json?.['headers'] as Record<string, string>)['cookie'], 'no Cookie header left');
  const accepted = await get(ta, ORG_HOST, '/app', { headers: { authorization: `Bearer ${alice}`, cookie: 'k=v' } });
  t.notOk((accepted.json?.['headers'] as Record<string, string>)['authorization'], 'the accepted Bearer is removed');
  t.equal((accepted.json?.['headers'] as Record<string, string>)['cookie'], 'k=v');
  // Nothing edgeway accepted or issued appears anywhere in what the upstream saw.
  const everything = JSON.stringify(up.seen);
  for (const secret of [sessionCookie, alice, carol, 's1', 's2']) t.notOk(everything.includes(`=${secret}`) || everything.includes(`Bearer ${secret}`), 'upstream never saw an edgeway credential');
});

t.test('websocket upgrades: 401/403 over HTTP and never upgraded; query, Bearer and cookie tokens accepted', async (t) => {
  const before = up.wsSeen.length;
  const none = await refusedWs(t, ta, ORG_HOST, '/ws');
  t.equal(none.status, 401, 'no token');
  t.equal((JSON.parse(none.body) as { reason: string }).reason, 'no_token');
  t.equal((await refusedWs(t, ta, ORG_HOST, '/ws', { headers: { accept: HTML } })).status, 401, 'upgrades never redirect');
  t.equal((await refusedWs(t, ta, ORG_HOST, `/ws?edgeway_token=${badSig}`)).status, 401, 'bad signature in the query');
  t.equal((await refusedWs(t, ta, ORG_HOST, `/ws?edgeway_token=${expired}`)).status, 401, 'expired');
  t.equal((await refusedWs(t, ta, ORG_HOST, `/ws?edgeway_token=${bob}`)).status, 403, 'wrong scope');
  t.equal((await refusedWs(t, ta, UC_HOST, '/', bearer(alice))).status, 403, 'member on a container');
  t.equal(up.wsSeen.length, before, 'no refused upgrade reached the upstream');

  const q = await openWs(t, ta, ORG_HOST, `/ws?a=1&edgeway_token=${alice}`);
  q.send('hi');
  t.equal(String((await new Promise<WebSocket.RawData>((r) => q.once('message', r)))), 'hi', 'query token: upgraded and echoing');
  const head = up.wsSeen[up.wsSeen.length - 1]!;
  t.equal(head.url, '/ws?a=1', 'the query token does not reach the upstream');
  q.close();
  await openWs(t, ta, UC_HOST, '/', bearer(carol));
  t.notOk(up.wsSeen[up.wsSeen.length - 1]!.headers.authorization, 'accepted Bearer removed on upgrades');
  const { nonce, handoff } = await login(ORG_HOST, '/', await userToken(ta, 'alice', [ORG_MEMBER], 30));
  const cookie = cookieValue(await handoff({ headers: { cookie: `edgeway_state=${nonce}` } }), 'edgeway_token');
  await openWs(t, ta, ORG_HOST, '/ws', { headers: { cookie: `x=y; edgeway_token=${cookie}`, authorization: 'Bearer app-token' } });
  const h = up.wsSeen[up.wsSeen.length - 1]!.headers;
  t.equal(h.cookie, 'x=y', 'session cookie removed on upgrades, the app cookie kept');
  t.equal(h.authorization, 'Bearer app-token', "the app's Authorization passes");
  t.equal((await refusedWs(t, ta, UC2_HOST, '/', { headers: { cookie: `edgeway_token=${cookie}` } })).status, 401, 'cookie of host A on host B');
  const pub = await openWs(t, ta, ORG_HOST, '/pub/ws');
  t.ok(pub, 'public upgrade needs no token');
});

t.test('a websocket is closed when its token expires: 4401 to the client, 1008 to the upstream', async (t) => {
  const short = await userToken(ta, 'alice', [ORG_MEMBER], 3);
  const exp = (jsonwebtoken.decode(short) as { exp: number }).exp * 1000;
  const longLived = await openWs(t, ta, ORG_HOST, `/ws?edgeway_token=${alice}`);
  const ws = await openWs(t, ta, ORG_HOST, `/ws?edgeway_token=${short}`);
  const closesBefore = up.wsCloses.length;
  const closed = await new Promise<{ code: number; at: number }>((resolve) => ws.once('close', (code) => resolve({ code, at: Date.now() })));
  t.equal(closed.code, 4401, 'client close code');
  t.ok(closed.at >= exp, `not before exp (${closed.at - exp} ms after)`);
  t.ok(closed.at - exp < 3000, `soon after exp (${closed.at - exp} ms)`);
  const deadline = Date.now() + 3000;
  while (up.wsCloses.length === closesBefore && Date.now() < deadline) await sleep(20);
  t.same(up.wsCloses.slice(closesBefore), [1008], 'upstream got 1008');
  t.equal(longLived.readyState, WebSocket.OPEN, 'a websocket with a longer token stays open');
});

t.test('repeated failures from one address get 429; other addresses are not affected', async (t) => {
  const lim = await startTestAppliance(t, { auth: { jwt: { secret: SECRET }, fail_limit: { max_failures: 3, window_s: 60, ban_s: 2 } } });
  const u = await appUpstream(t);
  await admin(lim, 'PUT', `/v1/hosts/${ORG_HOST}`, { host: ORG_HOST, locations: [{ path: '/', upstream: u.url }, { path: '/pub', upstream: u.url, access: 'public' }] });
  const A = { localAddress: '127.0.0.1' };
  const B = { localAddress: '127.0.0.2' };
  for (let i = 0; i < 5; i++) t.equal((await get(lim, ORG_HOST, '/', { ...A })).status, 401, 'no token does not count');
  t.equal((await get(lim, ORG_HOST, '/', { ...A, ...bearer(expired) })).status, 401, 'an expired token does not count');
  for (let i = 0; i < 3; i++) t.equal((await get(lim, ORG_HOST, '/', { ...A, ...bearer(badSig) })).status, 401, `bad signature ${i + 1}`);
  const banned = await get(lim, ORG_HOST, '/', { ...A, ...bearer(alice) });
  t.equal(banned.status, 429, 'the address is banned, even with a valid token');
  t.match(banned.headers['retry-after'], /^[12]$/);
  t.equal(banned.json?.['error'], 'too_many_requests');
  t.equal((await refusedWs(t, lim, ORG_HOST, `/ws?edgeway_token=${alice}`, A)).status, 429, 'upgrades too');
  t.equal((await get(lim, ORG_HOST, '/', { ...B, ...bearer(alice) })).status, 200, 'another address is fine');
  t.equal((await get(lim, ORG_HOST, '/', { ...B, ...bearer(badSig) })).status, 401, 'and is judged on its own');
  t.equal((await get(lim, ORG_HOST, '/pub', A)).status, 200, 'public locations stay open');
  await sleep(2100);
  t.equal((await get(lim, ORG_HOST, '/', { ...A, ...bearer(alice) })).status, 200, 'the ban ends after ban_s');
});

t.test('no token, cookie or parameter reaches the logs (spawned, two workers, trace level)', async (t) => {
  const { file } = await writeTestConfig({
    workers: 2,
    log: { level: 'trace', access_log: true },
    auth: { jwt: { secret: SECRET }, login_url: LOGIN },
  });
  const p = new EdgewayProcess(['--config', file]);
  t.teardown(async () => {
    if (p.exit === undefined) p.child.kill('SIGKILL');
    await p.exited;
  });
  const listening = await p.waitFor((l) => l.msg === 'edgeway listening', { timeoutMs: 30_000, what: 'listening' });
  const cfg = await loadConfig(file);
  const keys = await loadJwtKeys(cfg);
  const sp = {
    httpsPort: Number(String(listening['https']).split(':').pop()),
    caPem: await readFile(join(cfg.data_dir, 'ca', 'edgeway-local-ca.crt'), 'utf8'),
    adminUrl: `http://${String(listening['admin'])}`,
    platformToken: signToken(keys, cfg.auth.jwt, { type: 'platform', scope: ['edge:admin'] }, 3600),
  };
  const u = await appUpstream(t);
  t.equal((await admin(sp, 'PUT', `/v1/hosts/${ORG_HOST}`, { host: ORG_HOST, locations: [{ path: '/', upstream: u.url }] })).status, 201);
  const used: string[] = [sp.platformToken, alice, badSig, expired];
  const short = signToken(keys, cfg.auth.jwt, { type: 'user', sub: 'alice', scope: [ORG_MEMBER] }, 30);
  used.push(short);
  const first = await get(sp, ORG_HOST, '/app?code=c0de1&state=st4te&access_token=acc355&token=t0k3n', { headers: { accept: HTML } });
  const nonce = cookieValue(first, 'edgeway_state');
  used.push(nonce, 'c0de1', 'st4te', 'acc355', 't0k3n');
  const back = await get(sp, ORG_HOST, `/app?x=1&edgeway_state=${nonce}&edgeway_token=${short}`, { headers: { cookie: `edgeway_state=${nonce}` } });
  t.equal(back.status, 302);
  const session = cookieValue(back, 'edgeway_token');
  used.push(session);
  // New connections each: the kernel spreads them over both workers, which must share the session key.
  for (let i = 0; i < 8; i++) {
    t.equal((await get(sp, ORG_HOST, `/app?i=${i}`, { headers: { cookie: `edgeway_token=${session}` } })).status, 200, `session on connection ${i}`);
  }
  await get(sp, ORG_HOST, '/app', bearer(alice));
  await get(sp, ORG_HOST, '/app', bearer(badSig));
  await get(sp, ORG_HOST, '/app', bearer(expired));
  await get(sp, ORG_HOST, `/app?edgeway_token=${alice}&edgeway_state=nope`, { headers: { cookie: 'edgeway_state=other' } });
  await refusedWs(t, sp, ORG_HOST, `/ws?edgeway_token=${badSig}`);
  const ws = await openWs(t, sp, ORG_HOST, `/ws?edgeway_token=${alice}`);
  ws.close();
  await sleep(300);
  const log = p.lines.map((l) => JSON.stringify(l)).join('\n') + p.rawLines.join('\n') + p.stderr;
  t.ok(p.lines.length > 0, `the run logged ${p.lines.length} lines`);
  for (const s of used) t.notOk(log.includes(s), `not in the logs: a ${s.length}-character credential`);
});
