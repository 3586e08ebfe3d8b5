import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import t, { type Test } from 'tap';
import { EdgewayError } from '../src/errors.js';
import { loadRoutesDir } from '../src/routes/load-dir.js';
import { RouteTable } from '../src/routes/table.js';

const SHIPPED = resolve(import.meta.dirname, '..', 'routes');

/** Loads `dir` expecting ROUTES_INVALID; returns the error for further checks. */
async function fails(t: Test, dir: string, message: RegExp, field?: string): Promise<EdgewayError | undefined> {
  try {
    await loadRoutesDir(dir, 'example.test');
  } catch (err) {
    t.ok(err instanceof EdgewayError, 'an EdgewayError');
    const e = err as EdgewayError;
    t.equal(e.code, 'ROUTES_INVALID');
    t.match(e.message, message);
    t.equal(e.field, field, 'field');
    return e;
  }
  t.fail(`expected loading to fail with ${message}`);
  return undefined;
}

t.test('the shipped examples load and route', async (t) => {
  const entries = await loadRoutesDir(SHIPPED, 'example.test');
  t.same(entries.map((e) => e.host), ['example.test', 'api.example.test'], 'sorted by file name: apex.yaml, api.yaml');
  const [apex, api] = entries;
  t.equal(api!.source, 'static');
  t.same(api!.locations, [{ path: '/', upstream: 'http://127.0.0.1:9000' }]);
  t.same(apex!.locations[0]!.static, { root: resolve(SHIPPED, 'www'), spa: true });
  t.ok(Object.isFrozen(apex) && Object.isFrozen(apex!.locations[0]!.static));

  const table = new RouteTable('example.test');
  table.replaceAll(entries);
  t.equal(table.match('example.test', '/settings')?.location.kind, 'static');
  t.equal(table.match('api.example.test', '/v1/x')?.location.upstreams[0]?.port, 9000);
  t.same(table.match('example.test', '/')?.location.access, 'public');

  const local = await loadRoutesDir(SHIPPED, 'localhost');
  t.same(local.map((e) => e.host), ['localhost', 'api.localhost'], '{domain} follows the configured domain');
});

t.test('a missing directory means no static routes', async (t) => {
  t.same(await loadRoutesDir(resolve(t.testdirName, 'nope'), 'example.test'), []);
});

t.test('lists, .yml, {domain}, relative roots, other files ignored', async (t) => {
  const dir = t.testdir({
    'a.yml': `
- host: "{domain}"
  locations: [{ path: /, static: { root: site } }]
- host: "app.{domain}"
  access: user
  locations:
    - { path: /, upstream: "http://10.0.0.1:3000" }
    - { path: /ws, upstreams: ["http://10.0.0.2:3000", "http://10.0.0.3:3000"], strip_prefix: true }
`,
    'b.yaml': 'host: "*.org-7f3a0000-0000-4000-8000-000000000002.{domain}"\nlocations: [{ path: /oauth, service: oauth }]\n',
    'empty.yaml': '# nothing here yet\n',
    'notes.txt': 'not: [yaml',
    'sub': { 'c.yaml': 'not: [yaml' },
    'site': { 'index.html': '<p>hi</p>' },
  });
  const entries = await loadRoutesDir(dir, 'example.test');
  t.same(entries.map((e) => e.host), [
    'example.test',
    'app.example.test',
    '*.org-7f3a0000-0000-4000-8000-000000000002.example.test',
  ]);
  t.equal(entries[0]!.locations[0]!.static!.root, resolve(dir, 'site'));
  t.equal(entries[1]!.access, 'user');
  t.same(entries[1]!.locations[1]!.upstreams, ['http://10.0.0.2:3000', 'http://10.0.0.3:3000']);
  t.ok(entries.every((e) => e.source === 'static'));
  // An absolute root stays as it is.
  const abs = t.testdir({ 'x.yaml': `host: x.test\nlocations: [{ path: /, static: { root: ${JSON.stringify(realpathSync(dir))} } }]\n` });
  t.equal((await loadRoutesDir(abs, 'example.test'))[0]!.locations[0]!.static!.root, realpathSync(dir));
});

t.test('every error names the file and the field', async (t) => {
  const cases: Array<[string, string, RegExp, string]> = [
    ['api.yaml', 'host: "api.{domain}"\nlocations: [{ path: /, upstream: "ftp://x" }]\n', /^api\.yaml: locations\[0\]\.upstream: expected an http or https URL/, 'locations[0].upstream'],
    ['host.yaml', 'host: "bad_host.{domain}"\nlocations: [{ path: /, upstream: "http://a" }]\n', /^host\.yaml: host: /, 'host'],
    ['nohost.yaml', 'locations: [{ path: /, upstream: "http://a" }]\n', /^nohost\.yaml: host: required/, 'host'],
    ['key.yaml', 'host: a.test\nlocation: []\n', /^key\.yaml: location: unknown key/, 'location'],
    ['lease.yaml', 'host: a.test\nlease_ttl_s: 30\nlocations: [{ path: /, upstream: "http://a" }]\n', /^lease\.yaml: lease_ttl_s: not allowed/, 'lease_ttl_s'],
    ['list.yaml', '- host: a.test\n  locations: [{ path: /, upstream: "http://a" }]\n- host: b.test\n  locations: [{ path: x, upstream: "http://a" }]\n', /^list\.yaml: \[1\]\.locations\[0\]\.path: /, '[1].locations[0].path'],
    ['scalar.yaml', 'just a string\n', /^scalar\.yaml: entry: expected an object/, 'entry'],
    ['root.yaml', 'host: a.test\nlocations: [{ path: /, static: { root: missing } }]\n', /^root\.yaml: locations\[0\]\.static\.root: expected an existing directory/, 'locations[0].static.root'],
    ['rootfile.yaml', 'host: a.test\nlocations: [{ path: /, static: { root: rootfile.yaml } }]\n', /^rootfile\.yaml: locations\[0\]\.static\.root: expected an existing directory/, 'locations[0].static.root'],
  ];
  for (const [file, text, message, field] of cases) {
    t.test(file, async (t) => {
      await fails(t, t.testdir({ [file]: text }), message, field);
    });
  }
});

t.test('a host defined twice names both files', async (t) => {
  const dir = t.testdir({
    'a.yaml': 'host: "api.{domain}"\nlocations: [{ path: /, upstream: "http://a" }]\n',
    'b.yaml': 'host: API.example.test.\nlocations: [{ path: /, upstream: "http://b" }]\n',
  });
  await fails(t, dir, /^b\.yaml: host: 'api\.example\.test' is already defined in a\.yaml$/, 'host');
  const same = t.testdir({
    'one.yaml': '- host: a.test\n  locations: [{ path: /, upstream: "http://a" }]\n- host: a.test\n  locations: [{ path: /, upstream: "http://a" }]\n',
  });
  await fails(t, same, /^one\.yaml: \[1\]\.host: 'a\.test' is already defined in one\.yaml$/, '[1].host');
});

t.test('YAML syntax errors name the file and the line', async (t) => {
  await fails(t, t.testdir({ 'bad.yaml': 'host: a.test\nlocations:\n  - path: /\n    upstream: [unclosed\n' }), /^bad\.yaml: line \d+: /);
  const e = await fails(t, t.testdir({ 'tab.yaml': 'host: a.test\nlocations: []\nhost: b.test\n' }), /^tab\.yaml: line 3: .*unique/i);
  t.notMatch(e?.message ?? '', /\n/, 'one line');
});

t.test('unreadable entries are errors naming the file', async (t) => {
  // A directory named *.yaml is skipped; a symlink to one is read and fails.
  await fails(t, t.testdir({ 'sub.yaml': {}, 'link.yaml': t.fixture('symlink', 'sub.yaml') }), /^link\.yaml: cannot read the file$/);
  await fails(t, t.testdir({ 'two.yaml': 'host: a.test\n---\nhost: b.test\n' }), /^two\.yaml: line \d+: /);
});
