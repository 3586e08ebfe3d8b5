import t, { type Test } from 'tap';
import { EdgewayError } from '../src/errors.js';
import { compileEntry, matchLocation, stripLocationPrefix } from '../src/routes/compile.js';
import { RouteTable } from '../src/routes/table.js';
import type { HostEntry } from '../src/routes/types.js';
import { validateEntry } from '../src/routes/validate-entry.js';

const D = 'example.test';
const ORG = '7f3a0000-0000-4000-8000-000000000002';
const UC = '1b4e8f0a-0000-4000-8000-000000000001';
const ORG_HOST = `org-${ORG}.${D}`;
const UC_HOST = `uc-${UC}.org-${ORG}.${D}`;
const WILD_HOST = `*.org-${ORG}.${D}`;

const api = (raw: unknown, pathHost?: string): HostEntry =>
  validateEntry(raw, pathHost === undefined ? { source: 'api' } : { source: 'api', pathHost });

const entry = (host: string, ...paths: string[]): HostEntry =>
  api({ host, locations: paths.map((path, i) => ({ path, upstream: `http://10.0.0.${i + 1}:8080` })) });

/** Asserts validation fails with INVALID_FIELD naming exactly `field`. */
function refuses(t: Test, raw: unknown, field: string, opts: { source: 'api' | 'static'; pathHost?: string } = { source: 'api' }): void {
  let caught: unknown;
  try {
    validateEntry(raw, opts);
  } catch (err) {
    caught = err;
  }
  if (!(caught instanceof EdgewayError)) {
    t.fail(`expected an EdgewayError naming ${field}, got ${String(caught)}`);
    return;
  }
  t.equal(caught.code, 'INVALID_FIELD');
  t.equal(caught.field, field);
  t.equal(caught.status, 400);
}

t.test('validateEntry normalizes and freezes', async (t) => {
  const e = validateEntry(
    {
      source: 'static',
      lease_ttl_s: 30,
      locations: [
        { path: '/app/', upstream: 'http://172.16.1.2:8888/base/', strip_prefix: true, timeout_ms: 5000, access: 'user' },
        { path: '/', upstreams: ['https://a.internal', 'http://[::1]:9000'] },
        { path: '/collab/yjs', service: 'collab', access: { scope: 'org:{org_id}:member' } },
        { path: '/oauth', service: 'oauth', access: { users: ['u1', 'u2'] } },
      ],
      access: 'public',
      host: `${UC_HOST.toUpperCase()}.`,
    },
    { source: 'api' },
  );
  t.same(e, {
    host: UC_HOST,
    access: 'public',
    locations: [
      { path: '/app', upstream: 'http://172.16.1.2:8888/base/', strip_prefix: true, timeout_ms: 5000, access: 'user' },
      { path: '/', upstreams: ['https://a.internal', 'http://[::1]:9000'] },
      { path: '/collab/yjs', service: 'collab', access: { scope: 'org:{org_id}:member' } },
      { path: '/oauth', service: 'oauth', access: { users: ['u1', 'u2'] } },
    ],
    lease_ttl_s: 30,
    source: 'api',
  });
  t.same(Object.keys(e), ['host', 'access', 'locations', 'lease_ttl_s', 'source']);
  t.ok(Object.isFrozen(e) && Object.isFrozen(e.locations) && Object.isFrozen(e.locations[0]));
  t.ok(Object.isFrozen(e.locations[1]!.upstreams) && Object.isFrozen(e.locations[3]!.access));
  const minimal = api({ host: D, locations: [{ path: '/', upstream: 'http://a' }] });
  t.same(Object.keys(minimal), ['host', 'locations', 'source']);
  t.same(Object.keys(minimal.locations[0]!), ['path', 'upstream']);
});

t.test('validateEntry host and pathHost', async (t) => {
  const locations = [{ path: '/', upstream: 'http://a' }];
  t.equal(api({ locations }, ORG_HOST).host, ORG_HOST);
  t.equal(api({ host: ORG_HOST.toUpperCase() + '.', locations }, ORG_HOST).host, ORG_HOST);
  t.equal(api({ host: ORG_HOST, locations }, ORG_HOST.toUpperCase() + '.').host, ORG_HOST);
  refuses(t, { host: ORG_HOST, locations }, 'host', { source: 'api', pathHost: `other.${D}` });
  refuses(t, { locations }, 'host');
  refuses(t, { locations }, 'host', { source: 'api', pathHost: 'bad_host' });
  t.equal(api({ host: WILD_HOST, locations }).host, WILD_HOST);
});

t.test('validateEntry names the offending field', async (t) => {
  const ok = { path: '/', upstream: 'http://10.0.0.1:80' };
  const cases: Array<[string, unknown, string]> = [
    ['not an object', 'x', 'entry'],
    ['array body', [], 'entry'],
    ['host type', { host: 5, locations: [ok] }, 'host'],
    ['host port', { host: `${D}:80`, locations: [ok] }, 'host'],
    ['host star inside', { host: `a.*.${D}`, locations: [ok] }, 'host'],
    ['host underscore', { host: `a_b.${D}`, locations: [ok] }, 'host'],
    ['unknown top key', { host: D, locations: [ok], extra: 1 }, 'extra'],
    ['locations missing', { host: D }, 'locations'],
    ['locations empty', { host: D, locations: [] }, 'locations'],
    ['locations too many', { host: D, locations: Array.from({ length: 65 }, (_, i) => ({ path: `/p${i}`, upstream: 'http://a' })) }, 'locations'],
    ['location not object', { host: D, locations: [ok, 'x'] }, 'locations[1]'],
    ['unknown location key', { host: D, locations: [ok, { path: '/x', upsteam: 'http://a' }] }, 'locations[1].upsteam'],
    ['no target', { host: D, locations: [{ path: '/' }] }, 'locations[0]'],
    ['two targets', { host: D, locations: [{ path: '/', upstream: 'http://a', service: 'oauth' }] }, 'locations[0]'],
    ['path missing', { host: D, locations: [{ upstream: 'http://a' }] }, 'locations[0].path'],
    ['path relative', { host: D, locations: [{ path: 'x', upstream: 'http://a' }] }, 'locations[0].path'],
    ['path dotdot', { host: D, locations: [{ path: '/a/../b', upstream: 'http://a' }] }, 'locations[0].path'],
    ['path dot', { host: D, locations: [{ path: '/a/./b', upstream: 'http://a' }] }, 'locations[0].path'],
    ['path double slash', { host: D, locations: [{ path: '/a//b', upstream: 'http://a' }] }, 'locations[0].path'],
    ['path only slashes', { host: D, locations: [{ path: '//', upstream: 'http://a' }] }, 'locations[0].path'],
    ['path query', { host: D, locations: [{ path: '/a?b', upstream: 'http://a' }] }, 'locations[0].path'],
    ['path fragment', { host: D, locations: [{ path: '/a#b', upstream: 'http://a' }] }, 'locations[0].path'],
    ['path percent', { host: D, locations: [{ path: '/a%20b', upstream: 'http://a' }] }, 'locations[0].path'],
    ['path space', { host: D, locations: [{ path: '/a b', upstream: 'http://a' }] }, 'locations[0].path'],
    ['path duplicate after normalization', { host: D, locations: [ok, { path: '/a', upstream: 'http://a' }, { path: '/a/', upstream: 'http://a' }] }, 'locations[2].path'],
    ['upstream not a URL', { host: D, locations: [ok, { path: '/y', upstream: 'http://a' }, { path: '/x', upstream: 'nope' }] }, 'locations[2].upstream'],
    ['upstream scheme', { host: D, locations: [{ path: '/', upstream: 'ftp://a' }] }, 'locations[0].upstream'],
    ['upstream credentials', { host: D, locations: [{ path: '/', upstream: 'http://u:p@a' }] }, 'locations[0].upstream'],
    ['upstream query', { host: D, locations: [{ path: '/', upstream: 'http://a/?x=1' }] }, 'locations[0].upstream'],
    ['upstream empty query', { host: D, locations: [{ path: '/', upstream: 'http://a/?' }] }, 'locations[0].upstream'],
    ['upstream fragment', { host: D, locations: [{ path: '/', upstream: 'http://a/#x' }] }, 'locations[0].upstream'],
    ['upstream sloppy', { host: D, locations: [{ path: '/', upstream: 'http:a' }] }, 'locations[0].upstream'],
    ['upstream no host', { host: D, locations: [{ path: '/', upstream: 'http://' }] }, 'locations[0].upstream'],
    ['upstream bad port', { host: D, locations: [{ path: '/', upstream: 'http://a:99999' }] }, 'locations[0].upstream'],
    ['upstream type', { host: D, locations: [{ path: '/', upstream: 5 }] }, 'locations[0].upstream'],
    ['upstreams empty', { host: D, locations: [{ path: '/', upstreams: [] }] }, 'locations[0].upstreams'],
    ['upstreams too many', { host: D, locations: [{ path: '/', upstreams: Array.from({ length: 33 }, () => 'http://a') }] }, 'locations[0].upstreams'],
    ['upstreams item', { host: D, locations: [{ path: '/', upstreams: ['http://a', 'gopher://b'] }] }, 'locations[0].upstreams[1]'],
    ['service', { host: D, locations: [{ path: '/', service: 'ftp' }] }, 'locations[0].service'],
    ['strip_prefix', { host: D, locations: [{ ...ok, strip_prefix: 'yes' }] }, 'locations[0].strip_prefix'],
    ['timeout_ms zero', { host: D, locations: [{ ...ok, timeout_ms: 0 }] }, 'locations[0].timeout_ms'],
    ['timeout_ms fraction', { host: D, locations: [{ ...ok, timeout_ms: 1.5 }] }, 'locations[0].timeout_ms'],
    ['timeout_ms too big', { host: D, locations: [{ ...ok, timeout_ms: 3_600_001 }] }, 'locations[0].timeout_ms'],
    ['location access', { host: D, locations: [{ ...ok, access: 'everyone' }] }, 'locations[0].access'],
    ['access string', { host: D, access: 'admin', locations: [ok] }, 'access'],
    ['access empty scope', { host: D, access: { scope: '' }, locations: [ok] }, 'access.scope'],
    ['access scope type', { host: D, access: { scope: ['a'] }, locations: [ok] }, 'access.scope'],
    ['access both', { host: D, access: { scope: 'a', users: ['b'] }, locations: [ok] }, 'access'],
    ['access neither', { host: D, access: {}, locations: [ok] }, 'access'],
    ['access unknown key', { host: D, access: { scope: 'a', role: 'x' }, locations: [ok] }, 'access.role'],
    ['access users empty', { host: D, access: { users: [] }, locations: [ok] }, 'access.users'],
    ['access users item', { host: D, access: { users: ['a', ''] }, locations: [ok] }, 'access.users[1]'],
    ['lease zero', { host: D, locations: [ok], lease_ttl_s: 0 }, 'lease_ttl_s'],
    ['lease too long', { host: D, locations: [ok], lease_ttl_s: 86_401 }, 'lease_ttl_s'],
    ['lease string', { host: D, locations: [ok], lease_ttl_s: '30' }, 'lease_ttl_s'],
    ['static from the API', { host: D, locations: [{ path: '/', static: { root: '/srv' } }] }, 'locations[0].static'],
  ];
  for (const [name, raw, field] of cases) t.test(name, async (t) => refuses(t, raw, field));
  t.test('the message names the field too', async (t) => {
    t.throws(() => api({ host: D, locations: [ok, { path: '/x', upstream: 'nope' }] }), {
      message: /^locations\[1\]\.upstream: expected an http or https URL/,
      status: 400,
    });
  });
});

t.test('validateEntry for routes/ files', async (t) => {
  const e = validateEntry({ host: D, locations: [{ path: '/', static: { root: 'www', spa: true } }] }, { source: 'static' });
  t.same(e.locations[0]!.static, { root: 'www', spa: true });
  t.equal(e.source, 'static');
  const s = { source: 'static' } as const;
  refuses(t, { host: D, locations: [{ path: '/', static: { root: '' } }] }, 'locations[0].static.root', s);
  refuses(t, { host: D, locations: [{ path: '/', static: { root: 'www', spa: 'yes' } }] }, 'locations[0].static.spa', s);
  refuses(t, { host: D, locations: [{ path: '/', static: { root: 'www', index: 'x' } }] }, 'locations[0].static.index', s);
  refuses(t, { host: D, locations: [{ path: '/', static: 'www' }] }, 'locations[0].static', s);
  refuses(t, { host: D, locations: [{ path: '/', upstream: 'http://a' }], lease_ttl_s: 30 }, 'lease_ttl_s', s);
  // One path prefix per upstream group: the forwarded path is built before round-robin picks a target.
  refuses(t, { host: D, locations: [{ path: '/', upstreams: ['http://a/x', 'http://b/y'] }] }, 'locations[0].upstreams[1]', s);
});

t.test('compileEntry', async (t) => {
  const c = compileEntry(
    api({
      host: UC_HOST,
      locations: [
        { path: '/', upstream: 'http://172.16.1.2:8888' },
        { path: '/collab/yjs', service: 'collab', access: 'user' },
        { path: '/api', upstreams: ['https://b.internal/v1/', 'http://[::1]:9000/v1'], strip_prefix: true, timeout_ms: 100 },
      ],
    }),
    D,
  );
  t.same(c.info, { kind: 'uc', orgId: ORG, ucId: UC });
  t.same(c.locations.map((l) => l.path), ['/collab/yjs', '/api', '/']);
  const [collab, apiLoc, root] = c.locations;
  t.equal(collab!.kind, 'service');
  t.equal(collab!.service, 'collab');
  t.equal(collab!.access, 'user');
  t.same(root!.upstreams, [{ origin: 'http://172.16.1.2:8888', protocol: 'http:', hostname: '172.16.1.2', port: 8888, basePath: '' }]);
  t.same(root!.access, { scope: 'uc:{uc_id}:access' });
  t.equal(root!.stripPrefix, false);
  t.equal(root!.timeoutMs, undefined);
  t.same(apiLoc!.upstreams, [
    { origin: 'https://b.internal', protocol: 'https:', hostname: 'b.internal', port: 443, basePath: '/v1' },
    { origin: 'http://[::1]:9000', protocol: 'http:', hostname: '::1', port: 9000, basePath: '/v1' },
  ]);
  t.equal(apiLoc!.stripPrefix, true);
  t.equal(apiLoc!.timeoutMs, 100);
  t.equal(new Set(c.locations.map((l) => l.id)).size, 3);

  t.ok(Object.isFrozen(c) && Object.isFrozen(c.locations));
  t.throws(() => {
    (root as { path: string }).path = '/x';
  });
  root!.runtime = { group: 1 };
  t.same(root!.runtime, { group: 1 });
  t.throws(() => {
    (root as unknown as Record<string, unknown>).extra = 1;
  });

  const byKind = (host: string, access?: unknown) =>
    compileEntry(api({ host, ...(access === undefined ? {} : { access }), locations: [{ path: '/', upstream: 'http://a' }] }), D).locations[0]!.access;
  t.same(byKind(ORG_HOST), { scope: 'org:{org_id}:member' });
  t.same(byKind(WILD_HOST), { scope: 'org:{org_id}:member' });
  t.equal(byKind(D), 'public');
  t.equal(byKind(`api.${D}`), 'public');
  t.equal(byKind(`org-${ORG}.elsewhere.test`), 'public');
  t.equal(byKind(ORG_HOST, 'user'), 'user');
  t.equal(compileEntry(api({ host: ORG_HOST, locations: [{ path: '/', upstream: 'http://a' }] }), D).entry.host, ORG_HOST);
});

t.test('matchLocation: longest prefix on / boundaries, query ignored', async (t) => {
  const c = compileEntry(entry(D, '/', '/foo', '/foo/bar', '/foobar/baz'), D);
  const at = (path: string) => matchLocation(c, path)?.path;
  t.equal(at('/'), '/');
  t.equal(at('/foo'), '/foo');
  t.equal(at('/foo/'), '/foo');
  t.equal(at('/foo/x'), '/foo');
  t.equal(at('/foo?x=/foo/bar'), '/foo');
  t.equal(at('/foobar'), '/');
  t.equal(at('/foobar/baz/1'), '/foobar/baz');
  t.equal(at('/foo/bar'), '/foo/bar');
  t.equal(at('/foo/bar/'), '/foo/bar');
  t.equal(at('/foo/barn'), '/foo');
  t.equal(at('/foo/bar?q'), '/foo/bar');
  t.equal(at('/?foo'), '/');
  t.equal(at('/x?/foo/bar'), '/');

  const noRoot = compileEntry(entry(D, '/api'), D);
  t.equal(matchLocation(noRoot, '/'), undefined);
  t.equal(matchLocation(noRoot, '/apix'), undefined);
  t.equal(matchLocation(noRoot, '/api?x')?.path, '/api');
});

t.test('stripLocationPrefix', async (t) => {
  const c = compileEntry(entry(D, '/', '/foo'), D);
  const foo = matchLocation(c, '/foo')!;
  const root = matchLocation(c, '/')!;
  t.equal(stripLocationPrefix(foo, '/foo/x?q'), '/x?q');
  t.equal(stripLocationPrefix(foo, '/foo/x'), '/x');
  t.equal(stripLocationPrefix(foo, '/foo'), '/');
  t.equal(stripLocationPrefix(foo, '/foo/'), '/');
  t.equal(stripLocationPrefix(foo, '/foo?q'), '/?q');
  t.equal(stripLocationPrefix(root, '/a/b?c'), '/a/b?c');
});

t.test('RouteTable lookups', async (t) => {
  const table = new RouteTable('Example.Test.');
  t.equal(table.domain, D);
  const other = `uc-${'2'.repeat(8)}-0000-4000-8000-000000000000.org-${ORG}.${D}`;
  table.put(entry(WILD_HOST, '/', '/w'));
  table.put(entry(UC_HOST, '/', '/u'));
  table.put(entry(D, '/'));
  t.equal(table.size, 3);

  const exact = table.match(UC_HOST, '/u/1');
  t.equal(exact?.host.host, UC_HOST, 'exact beats wildcard');
  t.equal(exact?.location.path, '/u');
  t.equal(exact?.wildcard, false);
  t.same(table.lookupHost(UC_HOST), { host: table.get(UC_HOST), wildcard: false });

  const wild = table.match(other, '/w?x');
  t.equal(wild?.host.host, WILD_HOST);
  t.equal(wild?.location.path, '/w');
  t.equal(wild?.wildcard, true);
  t.equal(table.lookupHost(other)?.wildcard, true);

  t.equal(table.lookupHost(`a.${UC_HOST}`), undefined, 'wildcard covers one label only');
  t.equal(table.lookupHost(`a.b.org-${ORG}.${D}`), undefined);
  t.equal(table.lookupHost(ORG_HOST), undefined, 'wildcard does not cover its parent');
  t.equal(table.lookupHost(`api.${D}`), undefined);
  t.equal(table.lookupHost('localhost'), undefined);
  t.equal(table.match(`nope.${D}`, '/'), undefined);

  t.equal(table.match(UC_HOST, '/x'), table.match(UC_HOST, '/y'), 'precomputed: same object for the same location');

  const noRoot = new RouteTable(D);
  noRoot.put(entry(D, '/api'));
  t.equal(noRoot.match(D, '/other'), undefined, 'host without a matching location');
  t.ok(noRoot.match(D, '/api/x'));

  t.equal(table.get(WILD_HOST)?.host, WILD_HOST, 'get names the wildcard entry itself');
  t.equal(table.get(other), undefined, 'get is exact only');
});

t.test('RouteTable put, delete, version, replaceAll', async (t) => {
  const table = new RouteTable(D);
  t.equal(table.version, 0);
  const first = table.put(entry(ORG_HOST, '/'));
  t.equal(table.version, 1);
  const second = table.put(entry(ORG_HOST, '/', '/v2'));
  t.equal(table.version, 2);
  t.equal(table.size, 1, 'put replaces');
  t.equal(table.get(ORG_HOST), second);
  t.not(first, second);
  t.equal(table.match(ORG_HOST, '/v2/x')?.location.path, '/v2');

  table.put(entry(WILD_HOST, '/'));
  t.equal(table.delete(WILD_HOST)?.host, WILD_HOST);
  t.equal(table.lookupHost(UC_HOST), undefined, 'wildcard gone');
  t.equal(table.version, 4);
  t.equal(table.delete(WILD_HOST), undefined);
  t.equal(table.version, 4, 'no change, no new version');

  // Bulk hand-overs compile at first lookup (a 100,000-host restart is ready
  // at once); a malformed entry, which validation never lets in, routes
  // nowhere instead of throwing on the request path.
  table.replaceAll([entry(D, '/'), { host: `x.${D}`, locations: [{ path: '/', upstream: 'not a url' }], source: 'api' }]);
  t.equal(table.version, 5);
  t.equal(table.size, 2, 'both stored, neither compiled yet');
  t.same([...table.compiledEntries()], [], 'nothing compiled before a lookup');
  t.equal(table.match(`x.${D}`, '/'), undefined, 'the malformed entry routes nowhere');
  t.equal(table.match(D, '/a')?.location.path, '/', 'a good entry compiles at its first lookup');
  t.same([...table.compiledEntries()].map((h) => h.host), [D]);
  const firstHit = table.match(D, '/a');
  t.equal(table.match(D, '/a'), firstHit, 'compiled once, then the same precomputed answer');

  table.replaceAll([entry(D, '/'), entry(WILD_HOST, '/'), entry(D, '/', '/later')]);
  t.equal(table.version, 6);
  t.equal(table.size, 2);
  t.equal(table.get(ORG_HOST), undefined, 'old entries gone');
  t.equal(table.match(D, '/later')?.location.path, '/later', 'a later entry of the same host wins');
  t.equal(table.lookupHost(UC_HOST)?.wildcard, true);
  t.same([...table.entries()].map((c) => c.host).sort(), [WILD_HOST, D].sort());
});
