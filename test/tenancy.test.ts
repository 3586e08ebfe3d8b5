// Tenancy through the admin API of a real appliance (DESIGN.md "Tokens",
// "Admin API"): the attack matrix of an organization token against every kind
// of host and spelling, the bad-payload matrix, heartbeat, all-or-nothing
// batches, and /v1/resolve cross-checked against real requests.

import t from 'tap';
import { request as httpRequest } from 'node:http';
import { loadJwtKeys } from '../src/auth/keys.js';
import { signToken, type TokenClaims } from '../src/auth/jwt.js';
import { MAX_BODY_BYTES } from '../src/admin/body.js';
import { DOMAIN as D, ORG, ORG2, ORG_HOST as A_HOST, ORG2_HOST as B_HOST, UC, echoUpstream, httpsGet, startTestAppliance } from './helpers/appliance.js';

const UC2 = '1b4e8f0a-0000-4000-8000-000000000009';
const UC3 = '1b4e8f0a-0000-4000-8000-00000000000a';
const A_UC = `uc-${UC}.${A_HOST}`;
const A_STATIC = `uc-${UC2}.${A_HOST}`;
const B_UC = `uc-${UC}.${B_HOST}`;

interface Reply { status: number; json: any; headers: Headers }

t.test('tenancy', async (t) => {
  const up = await echoUpstream(t, 'up');
  const upstream = up.url; // http://127.0.0.1:PORT, inside the default allowed_upstreams
  const unrouted = 'http://127.0.0.1:9';
  const ta = await startTestAppliance(t, {}, {
    'apex.yaml': { host: D, locations: [{ path: '/', upstream: unrouted }] },
    'api.yaml': { host: `api.${D}`, locations: [{ path: '/', upstream: unrouted }] },
    'a-static.yaml': { host: A_STATIC, access: 'public', locations: [{ path: '/', upstream }] },
  });
  const keys = await loadJwtKeys(ta.cfg);
  const sign = (claims: TokenClaims): string => signToken(keys, ta.cfg.auth.jwt, claims, 600);
  const platform = ta.platformToken;
  const orgA = sign({ type: 'organization_token', organization_id: ORG });
  const orgB = sign({ type: 'organization_token', organization_id: ORG2 });
  const orgA10 = sign({ type: 'organization_token', organization_id: ORG, allowed_upstreams: ['10.0.0.0/8'] });
  const user = sign({ type: 'user', sub: 'u-1', scope: [`org:${ORG}:member`, 'edge:admin'] });

  const call = async (token: string | undefined, method: string, path: string, body?: unknown, opts: { raw?: string; type?: string } = {}): Promise<Reply> => {
    const headers: Record<string, string> = {};
    if (token !== undefined) headers.authorization = `Bearer ${token}`;
    const text = opts.raw ?? (body === undefined ? undefined : JSON.stringify(body));
    if (text !== undefined) headers['content-type'] = opts.type ?? 'application/json';
    const res = await fetch(ta.adminUrl + path, { method, headers, body: text });
    const out = await res.text();
    return { status: res.status, json: out === '' ? undefined : JSON.parse(out), headers: res.headers };
  };
  const entry = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({ access: 'public', locations: [{ path: '/', upstream }], ...extra });
  /** Every entry as the platform sees it: what "nothing changed" compares. */
  const snapshot = async (): Promise<string> => JSON.stringify((await call(platform, 'GET', '/v1/hosts')).json);

  // Org B's hosts exist, so a 403 cannot be told apart from a 404 by their presence.
  for (const h of [B_HOST, B_UC, `*.${B_HOST}`]) t.equal((await call(platform, 'PUT', `/v1/hosts/${h}`, entry())).status, 201, `platform puts ${h}`);

  t.test('what an org token may manage', async (t) => {
    const own: Array<[string, string, number]> = [
      ['its org host', A_HOST, 201],
      ['a uc host of its org', A_UC, 201],
      ['its wildcard', `*.${A_HOST}`, 201],
      ['one label under its org host', `jupyter.${A_HOST}`, 201],
      ['its own host in upper case with a trailing dot (the same host)', `${A_HOST.toUpperCase()}.`, 200],
    ];
    for (const [label, path, status] of own) {
      const p = await call(orgA, 'PUT', `/v1/hosts/${path}`, entry());
      t.equal(p.status, status, `PUT ${label}`);
      const host = p.json.host as string;
      t.equal((await call(orgA, 'GET', `/v1/hosts/${path}`)).status, 200, `GET ${label}`);
      t.equal((await call(orgA, 'POST', `/v1/hosts/${path}/heartbeat`)).status, 200, `heartbeat ${label}`);
      t.equal((await call(platform, 'GET', `/v1/hosts/${host}`)).json.host, host, 'stored under the normalized host');
    }
    t.equal((await call(orgA, 'DELETE', `/v1/hosts/jupyter.${A_HOST}`)).status, 204, 'DELETE its own');

    const list = await call(orgA, 'GET', '/v1/hosts');
    t.same(list.json.map((e: { host: string }) => e.host), [`*.${A_HOST}`, A_HOST, A_UC, A_STATIC], 'GET /v1/hosts: only its hosts (static ones of its org too)');
    const listB = await call(orgB, 'GET', '/v1/hosts');
    t.same(listB.json.map((e: { host: string }) => e.host), [`*.${B_HOST}`, B_HOST, B_UC], 'and org B sees only its own');
  });

  t.test('the attack matrix: everything else is 403 and changes nothing', async (t) => {
    const before = await snapshot();
    const attacks: Array<[string, string]> = [
      ["another org's host", B_HOST],
      ["another org's uc host", B_UC],
      ["another org's wildcard", `*.${B_HOST}`],
      ['the apex', D],
      ['a named static host', `api.${D}`],
      ['a named host nobody registered', `www.${D}`],
      ['the domain wildcard', `*.${D}`],
      ['a look-alike with another org host in front', `org-${ORG2}.${D}.${A_HOST}`],
      ['its host under a foreign domain', `${A_HOST}.evil.com`],
      ["another org's host in upper case", B_HOST.toUpperCase()],
      ["another org's host with a trailing dot", `${B_HOST}.`],
      ['punycode look-alike of another org', `xn--org-${ORG2}-9ja.${D}`],
      ['punycode label spelling its own org label', `xn--rg-${ORG}-xyz.${D}`],
      ['unicode look-alike of its own host (Cyrillic о)', encodeURIComponent(`\u043erg-${ORG}.${D}`)],
      ['its own host with a port', `${A_HOST}:443`],
      ["another org's host with a port", `${B_HOST}:443`],
      ['percent-encoded dot', `org-${ORG2}%2E${D}`],
      ['percent-encoded letter', `%6Frg-${ORG2}.${D}`],
      ['encoded slashes and dot segments', `${A_HOST}%2F..%2F${B_HOST}`],
      ['a malformed escape', '%E0%A4%A'],
      ['two labels under its org host', `a.b.${A_HOST}`],
      ['an org label under its org host', `org-${ORG2}.${A_HOST}`],
      ['a wildcard below its org host', `*.jupyter.${A_HOST}`],
      ['another org and no org', `${B_HOST}.${D}`],
    ];
    for (const [label, path] of attacks) {
      const url = `/v1/hosts/${path}`;
      for (const [method, body] of [['PUT', entry()], ['GET'], ['DELETE'], ['POST']] as const) {
        const r = await call(orgA, method, method === 'POST' ? `${url}/heartbeat` : url, body);
        t.equal(r.status, 403, `${method} ${label}`);
        t.equal(r.json.error, 'forbidden');
      }
    }
    t.equal(await snapshot(), before, 'nothing changed');

    // The same malformed names are plain bad input for a platform token.
    for (const path of [encodeURIComponent(`\u043erg-${ORG}.${D}`), `${A_HOST}:443`, '%E0%A4%A', `${A_HOST}%2F..%2F${B_HOST}`]) {
      t.match(await call(platform, 'GET', `/v1/hosts/${path}`), { status: 400, json: { error: 'invalid_field', field: 'host' } }, `platform: 400 for ${path}`);
    }
  });

  t.test('static entries: 409 for whoever may manage the host, 403 for anyone else', async (t) => {
    const before = await snapshot();
    for (const [token, who] of [[orgA, 'org A'], [platform, 'platform']] as const) {
      t.equal((await call(token, 'PUT', `/v1/hosts/${A_STATIC}`, entry())).status, 409, `${who} PUT its static host`);
      t.equal((await call(token, 'DELETE', `/v1/hosts/${A_STATIC}`)).status, 409, `${who} DELETE`);
      t.equal((await call(token, 'POST', `/v1/hosts/${A_STATIC}/heartbeat`)).status, 409, `${who} heartbeat`);
      t.equal((await call(token, 'GET', `/v1/hosts/${A_STATIC}`)).json.source, 'static', `${who} may read it`);
    }
    t.equal((await call(platform, 'PUT', `/v1/hosts/api.${D}`, entry())).status, 409, 'platform on a named static host: 409');
    t.equal((await call(orgA, 'PUT', `/v1/hosts/api.${D}`, entry())).status, 403, 'org token on a static host outside its org: 403 (authorization first)');
    t.equal((await call(orgB, 'PUT', `/v1/hosts/${A_STATIC}`, entry())).status, 403, "org B on org A's static host: 403");
    t.equal(await snapshot(), before);
  });

  t.test('user tokens and platform tokens without edge:admin get nothing', async (t) => {
    const noScope = sign({ type: 'platform', scope: ['edge:read'] });
    for (const token of [user, noScope]) {
      t.equal((await call(token, 'GET', '/v1/hosts')).status, 403);
      t.equal((await call(token, 'PUT', `/v1/hosts/${A_UC}`, entry())).status, 403);
      t.equal((await call(token, 'POST', '/v1/batch', { delete: [A_UC] })).status, 403);
      t.equal((await call(token, 'GET', `/v1/resolve?url=https://${A_HOST}/`)).status, 403);
    }
  });

  t.test("upstreams inside the token's allowed_upstreams claim", async (t) => {
    const host = `uc-${UC3}.${A_HOST}`;
    const out = await call(orgA10, 'PUT', `/v1/hosts/${host}`, entry());
    t.match(out, { status: 403, json: { error: 'forbidden', field: 'locations[0].upstream' } }, 'inside admin.allowed_upstreams, outside the claim: 403 naming the field');
    const group = await call(orgA10, 'PUT', `/v1/hosts/${host}`, { locations: [{ path: '/', upstreams: ['http://10.1.2.3:80', upstream] }] });
    t.match(group, { status: 403, json: { field: 'locations[0].upstreams[1]' } });
    t.match(await call(orgA10, 'PUT', `/v1/hosts/${host}`, { locations: [{ path: '/', upstream: 'http://192.0.2.1' }] }), { status: 400, json: { field: 'locations[0].upstream' } }, 'outside admin.allowed_upstreams: 400');
    t.equal((await call(orgA10, 'GET', `/v1/hosts/${host}`)).status, 404, 'nothing stored');
    t.equal((await call(orgA10, 'PUT', `/v1/hosts/${host}`, { locations: [{ path: '/', upstream: 'http://10.1.2.3:80' }] })).status, 201, 'inside both');
    t.equal((await call(orgA, 'PUT', `/v1/hosts/${host}`, entry())).status, 200, 'a token without the claim: admin.allowed_upstreams alone');
    t.equal((await call(platform, 'DELETE', `/v1/hosts/${host}`)).status, 204);
  });

  t.test('bad payloads name the field', async (t) => {
    const url = `/v1/hosts/${A_UC}`;
    const loc = { path: '/', upstream };
    const cases: Array<[unknown, string]> = [
      ['a string', 'entry'],
      [{ host: B_HOST, locations: [loc] }, 'host'],
      [{ host: 7, locations: [loc] }, 'host'],
      [{ access: 'everyone', locations: [loc] }, 'access'],
      [{ access: { scope: '' }, locations: [loc] }, 'access.scope'],
      [{ access: { users: ['a', 2] }, locations: [loc] }, 'access.users[1]'],
      [{ access: { scope: 'x', extra: 1 }, locations: [loc] }, 'access.extra'],
      [{}, 'locations'],
      [{ locations: {} }, 'locations'],
      [{ locations: ['/'] }, 'locations[0]'],
      [{ locations: [{ path: '/' }] }, 'locations[0]'],
      [{ locations: [{ path: 'relative', upstream }] }, 'locations[0].path'],
      [{ locations: [{ path: '/a/../b', upstream }] }, 'locations[0].path'],
      [{ locations: [loc, { path: '/', upstream }] }, 'locations[1].path'],
      [{ locations: [{ path: '/', upstream: 'ftp://10.0.0.1' }] }, 'locations[0].upstream'],
      [{ locations: [{ path: '/', upstream: 'http://user:pw@10.0.0.1' }] }, 'locations[0].upstream'],
      [{ locations: [{ path: '/', upstreams: [] }] }, 'locations[0].upstreams'],
      [{ locations: [{ path: '/', upstreams: [upstream, 'nope'] }] }, 'locations[0].upstreams[1]'],
      [{ locations: [{ path: '/', service: 'mail' }] }, 'locations[0].service'],
      [{ locations: [{ path: '/', static: { root: '/etc' } }] }, 'locations[0].static'],
      [{ locations: [{ ...loc, strip_prefix: 'yes' }] }, 'locations[0].strip_prefix'],
      [{ locations: [{ ...loc, timeout_ms: 0 }] }, 'locations[0].timeout_ms'],
      [{ locations: [{ ...loc, access: 'x' }] }, 'locations[0].access'],
      [{ locations: [{ ...loc, nope: 1 }] }, 'locations[0].nope'],
      [{ locations: [loc], lease_ttl_s: 0 }, 'lease_ttl_s'],
      [{ locations: [loc], lease_ttl_s: 1.5 }, 'lease_ttl_s'],
      [{ locations: [loc], extra: true }, 'extra'],
    ];
    const before = await snapshot();
    for (const [body, field] of cases) {
      const r = await call(orgA, 'PUT', url, body);
      t.equal(r.status, 400, `${field}: ${JSON.stringify(body)}`);
      t.equal(r.json.field, field);
      t.match(r.json.message, new RegExp(`^${field.replace(/[[\].]/g, '\\$&')}: `), 'the message names it too');
    }
    t.match(await call(orgA, 'PUT', url, undefined, { raw: '{"locations": [' }), { status: 400, json: { error: 'invalid_json' } });
    t.match(await call(orgA, 'PUT', url, undefined, { raw: JSON.stringify(entry()), type: 'text/plain' }), { status: 415, json: { error: 'unsupported_media_type' } });
    t.match(await call(orgA, 'POST', '/v1/batch', undefined, { raw: '{}', type: 'application/x-www-form-urlencoded' }), { status: 415 }, 'batch: 415 too');
    const big = JSON.stringify({ ...entry(), pad: 'x'.repeat(MAX_BODY_BYTES) });
    t.equal(await rawStatus(ta.adminUrl, orgA, 'PUT', url, big), 413, 'over 1 MiB: 413');
    t.equal(await rawStatus(ta.adminUrl, orgA, 'POST', '/v1/batch', big), 413, 'batch over 1 MiB: 413');
    t.equal(await snapshot(), before, 'nothing changed');
  });

  t.test('heartbeat renews the lease', async (t) => {
    const host = `uc-${UC3}.${A_HOST}`;
    const p = await call(orgA, 'PUT', `/v1/hosts/${host}`, entry({ lease_ttl_s: 2 }));
    t.equal(p.status, 201);
    const first = Date.parse(p.json.expires_at);
    await sleep(300);
    const hb = await call(orgA, 'POST', `/v1/hosts/${host}/heartbeat`);
    t.equal(hb.status, 200);
    t.equal(hb.json.version, p.json.version, 'a heartbeat is not a new version');
    t.equal(hb.json.lease_ttl_s, 2);
    t.ok(Date.parse(hb.json.expires_at) >= first + 250, 'expires_at moved forward');
    t.ok(Math.abs(Date.parse(hb.json.expires_at) - Date.now() - 2000) < 1000, 'a full lease_ttl_s from now');
    // Kept alive past its first deadline by heartbeats alone.
    for (let i = 0; i < 4; i++) {
      await sleep(700);
      t.equal((await call(orgA, 'POST', `/v1/hosts/${host}/heartbeat`)).status, 200, `heartbeat ${i + 1}`);
    }
    t.ok(Date.now() > first + 500, 'past the first deadline');
    t.equal((await call(orgA, 'GET', `/v1/hosts/${host}`)).status, 200, 'still there');
    // Without heartbeats it goes (the deadline plus the expiry sweep, tolerant on a busy machine).
    let status = 200;
    for (let i = 0; i < 40 && status === 200; i++) {
      await sleep(200);
      status = (await call(orgA, 'GET', `/v1/hosts/${host}`)).status;
    }
    t.equal(status, 404, 'expired without heartbeats');
    t.match(await call(orgA, 'POST', `/v1/hosts/${host}/heartbeat`), { status: 404, json: { error: 'not_found' } }, 'heartbeat of an absent host: 404');
    const plain = await call(orgA, 'POST', `/v1/hosts/${A_UC}/heartbeat`);
    t.match(plain, { status: 200, json: { host: A_UC, expires_at: null } }, 'an entry without a lease: 200, nothing to renew');
  });

  t.test('batch: all or nothing', async (t) => {
    const one = `uc-${UC3}.${A_HOST}`;
    const two = `two.${A_HOST}`;
    const before = await snapshot();

    const mixed = await call(orgA, 'POST', '/v1/batch', { put: [{ host: one, ...entry() }, { host: B_UC, ...entry() }] });
    t.match(mixed, { status: 403, json: { error: 'forbidden', field: 'put[1].host' } }, 'one forbidden put: 403 naming it');
    const del = await call(orgA, 'POST', '/v1/batch', { put: [{ host: one, ...entry() }], delete: [A_UC, B_HOST] });
    t.match(del, { status: 403, json: { error: 'forbidden' } }, 'one forbidden delete: 403');
    t.equal((await call(orgA, 'POST', '/v1/batch', { put: [{ ...entry() }] })).status, 403, 'an org token naming no host: 403');
    t.equal((await call(orgA, 'POST', '/v1/batch', { delete: [`${B_HOST}:443`] })).status, 403, 'a malformed delete from an org token: 403');
    t.match(await call(orgA10, 'POST', '/v1/batch', { put: [{ host: one, locations: [{ path: '/', upstream: 'http://10.0.0.1' }] }, { host: two, ...entry() }] }),
      { status: 403, json: { field: 'put[1].locations[0].upstream' } }, 'upstream outside the claim, in the second entry');

    const bad = await call(platform, 'POST', '/v1/batch', {
      put: [{ host: one, ...entry() }, { host: two, locations: [{ path: '/', upstream }] }, { host: `three.${A_HOST}`, locations: [{ path: '/', upstream: 'ftp://x' }] }, { host: `four.${A_HOST}`, ...entry() }],
    });
    t.match(bad, { status: 400, json: { error: 'invalid_field', field: 'put[2].locations[0].upstream' } }, 'one bad entry in the middle: 400 naming it');
    t.match(bad.json.message, /^put\[2\]\.locations\[0\]\.upstream: /);
    t.match(await call(platform, 'POST', '/v1/batch', { put: [{ host: one, ...entry() }, { host: two, locations: [{ path: '/', upstream: 'http://192.0.2.1' }] }] }),
      { status: 400, json: { field: 'put[1].locations[0].upstream' } }, 'an upstream outside admin.allowed_upstreams');
    const shapes: Array<[unknown, string]> = [
      [[], 'batch'],
      [{ put: {} }, 'put'],
      [{ delete: 'x' }, 'delete'],
      [{ delete: [3] }, 'delete[0]'],
      [{ delete: ['bad host'] }, 'delete[0]'],
      [{ remove: [] }, 'remove'],
      [{ put: [{ locations: [{ path: '/', upstream }] }] }, 'put[0].host'],
      [{ put: [7] }, 'put[0]'],
      [{ put: [{ host: one, ...entry() }, { host: one.toUpperCase(), ...entry() }] }, 'put[1].host'],
      [{ put: [{ host: one, ...entry() }], delete: [one] }, 'delete[0]'],
    ];
    for (const [body, field] of shapes) t.match(await call(platform, 'POST', '/v1/batch', body), { status: 400, json: { field } }, `400 naming ${field}`);
    t.match(await call(platform, 'POST', '/v1/batch', { put: [{ host: one, ...entry() }], delete: [`api.${D}`] }), { status: 409 }, 'a static delete: 409');
    t.match(await call(platform, 'POST', '/v1/batch', { put: [{ host: one, ...entry() }, { host: A_STATIC, ...entry() }] }), { status: 409 }, 'a static put: 409');
    t.match(await call(platform, 'POST', '/v1/batch', { put: [{ host: one, ...entry() }], delete: [`absent.${A_HOST}`] }), { status: 404 }, 'an absent delete: 404');
    t.equal(await snapshot(), before, 'after every refused batch, nothing changed');
    t.equal((await call(platform, 'GET', `/v1/hosts/${one}`)).status, 404);

    const ok = await call(orgA, 'POST', '/v1/batch', { put: [{ host: one, ...entry() }, { host: `${two.toUpperCase()}.`, ...entry({ lease_ttl_s: 60 }) }], delete: [A_UC] });
    t.equal(ok.status, 200);
    t.same(ok.json.put.map((e: { host: string; created: boolean }) => [e.host, e.created]), [[one, true], [two, true]]);
    t.ok(ok.json.put[1].expires_at !== null, 'leases apply');
    t.same(ok.json.deleted, [A_UC]);
    t.equal((await call(orgA, 'GET', `/v1/hosts/${A_UC}`)).status, 404, 'the delete applied');
    const served = await httpsGet(ta, two, '/x');
    t.equal(served.status, 200, 'the next request is served by the new entry');
    t.equal(JSON.parse(served.body).url, '/x');
    t.equal((await call(orgA, 'POST', '/v1/batch', { delete: [one, two] })).status, 200);
    t.equal((await call(platform, 'POST', '/v1/batch', {})).status, 200, 'an empty batch is a no-op');
  });

  t.test('resolve: which entry, which location, which rule', async (t) => {
    const o = await echoUpstream(t, 'other');
    t.equal((await call(orgA, 'PUT', `/v1/hosts/${A_HOST}`, {
      access: 'public',
      locations: [{ path: '/', upstream }, { path: '/api', upstream: `${o.url}/base`, strip_prefix: true }, { path: '/collab/yjs', service: 'collab', access: { scope: 'room:{org_id}:{room}' } }],
    })).status, 200);
    t.equal((await call(orgA, 'PUT', `/v1/hosts/*.${A_HOST}`, { locations: [{ path: '/', upstream: o.url }] })).status, 200);
    t.equal((await call(orgA, 'PUT', `/v1/hosts/${A_UC}`, { access: 'public', locations: [{ path: '/only', upstream }] })).status, 201);
    const resolve = async (url: string, token = orgA, sni?: string): Promise<any> => {
      const r = await call(token, 'GET', `/v1/resolve?url=${encodeURIComponent(url)}${sni === undefined ? '' : `&sni=${encodeURIComponent(sni)}`}`);
      t.equal(r.status, 200, `resolve ${url}`);
      return r.json;
    };

    const exact = await resolve(`https://${A_HOST}/api/x/../users?q=1`);
    t.match(exact, {
      decision: 'routed', status: null, host: A_HOST, path: '/api/users?q=1',
      entry: { host: A_HOST, matched_by: 'exact host', source: 'api' },
      location: { path: '/api', matched_by: "longest prefix '/api'", kind: 'proxy', upstreams: [`${o.url}/base`], forwarded_path: '/base/users?q=1', strip_prefix: true },
      access: { configured: 'public', effective: 'public' },
    });
    t.same(exact.locations, ['/collab/yjs', '/api', '/'], 'the locations, longest first');
    const real = await httpsGet(ta, A_HOST, '/api/x/../users?q=1');
    t.equal(JSON.parse(real.body).name, 'other', 'a real request goes where resolve said');
    t.equal(JSON.parse(real.body).url, exact.location.forwarded_path, 'with the path resolve said');

    const withToken = await resolve(`https://${A_HOST}/api/u?edgeway_token=SECRET-TOKEN&x=1&edgeway_state=S`);
    t.equal(withToken.location.forwarded_path, '/base/u?x=1', "edgeway's own parameters are not forwarded");
    t.notMatch(JSON.stringify(withToken), /SECRET-TOKEN|edgeway_state/, 'nor echoed');

    const root = await resolve(`https://${A_HOST}/apix`);
    t.match(root.location, { path: '/', matched_by: "the root location '/'" }, "'/apix' is not under '/api'");

    const wild = await resolve(`https://Foo.${A_HOST}.:8443/`);
    t.match(wild, { decision: 'routed', host: `foo.${A_HOST}`, entry: { host: `*.${A_HOST}`, matched_by: new RegExp(`^wildcard entry`) } });
    t.same(wild.access.effective, { scope: `org:${ORG}:member` }, 'the default access of an org wildcard, placeholders filled in');
    t.equal(wild.access.configured.scope, 'org:{org_id}:member');
    const collab = await resolve(`https://${A_HOST}/collab/yjs/notes`);
    t.match(collab.location, { kind: 'service', service: 'collab' });
    t.same(collab.access.effective, { scope: `room:${ORG}:notes` }, '{room} filled in on a collab location');

    const noLoc = await resolve(`https://${A_UC}/elsewhere`);
    t.match(noLoc, { decision: 'not_found', status: 404, entry: { host: A_UC }, location: null });
    t.match(noLoc.reason, /no location/);
    t.equal((await httpsGet(ta, A_UC, '/elsewhere')).status, 404, 'a real request: 404 too');

    const noHost = await resolve(`https://${B_HOST.replace(ORG2, '7f3a0000-0000-4000-8000-0000000000ff')}/`, platform);
    t.match(noHost, { decision: 'host_not_found', status: 404, entry: null });
    const climb = await resolve(`https://${A_HOST}/../etc`);
    t.match(climb, { decision: 'not_found', status: 404, path: null });
    const badHost = await resolve('https://bad_host.example.test/', orgA);
    t.match(badHost, { decision: 'bad_host', status: 400, host: null }, 'a malformed host: what the data plane answers 400');

    const mis = await resolve(`https://${A_HOST}/`, orgA, A_UC);
    t.match(mis, { decision: 'misdirected', status: 421, sni: A_UC });
    t.equal((await httpsGet(ta, A_HOST, '/', { servername: A_UC })).status, 421, 'a real request with that SNI: 421');
    const sameEntry = await resolve(`https://bar.${A_HOST}/`, orgA, `foo.${A_HOST}`);
    t.equal(sameEntry.decision, 'routed', 'an SNI routed to the same (wildcard) entry: no 421');
    const unroutedSni = await resolve(`https://${A_HOST}/`, platform, `nothing.${D}`);
    t.equal(unroutedSni.decision, 'routed', 'an SNI that is not routed: the Host decides');

    t.equal((await call(orgB, 'GET', `/v1/resolve?url=${encodeURIComponent(`https://${A_HOST}/`)}`)).status, 403, "org B may not resolve org A's hosts");
    t.equal((await call(orgB, 'GET', `/v1/resolve?url=${encodeURIComponent(`https://${B_HOST}/`)}&sni=${A_HOST}`)).status, 403, "nor name org A's host as SNI");
    t.match(await call(orgA, 'GET', '/v1/resolve'), { status: 400, json: { field: 'url' } }, 'url is required');
    t.match(await call(orgA, 'GET', `/v1/resolve?url=${encodeURIComponent(`ftp://${A_HOST}/`)}`), { status: 400, json: { field: 'url' } });
  });
});

/** A request whose body may be cut off by the server's 413 while it is still being written. */
function rawStatus(adminUrl: string, token: string, method: string, path: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const u = new URL(adminUrl);
    const req = httpRequest({ host: u.hostname, port: u.port, method, path, agent: false, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } });
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end(body);
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
