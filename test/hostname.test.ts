import t from 'tap';
import { classifyHost, isUuid, isValidEntryHost, normalizeHost } from '../src/hosts/hostname.js';

const D = 'example.test';
const ORG = '7f3a0000-0000-4000-8000-000000000002';
const UC = '1b4e8f0a-0000-4000-8000-000000000001';

t.test('normalizeHost accepts and normalizes', async (t) => {
  const cases: Array<[string, string]> = [
    ['example.test', 'example.test'],
    ['Example.TEST', 'example.test'],
    ['example.test:8443', 'example.test'],
    ['EXAMPLE.test:443', 'example.test'],
    ['example.test.', 'example.test'],
    ['example.test.:8443', 'example.test'],
    ['localhost', 'localhost'],
    ['a-b.c0', 'a-b.c0'],
    ['127.0.0.1', '127.0.0.1'],
    ['127.0.0.1:8080', '127.0.0.1'],
    ['[::1]', '[::1]'],
    ['[::1]:8443', '[::1]'],
    ['[FE80::A]:1', '[fe80::a]'],
    ['[::ffff:127.0.0.1]', '[::ffff:127.0.0.1]'],
    ['host:0', 'host'],
    ['host:65535', 'host'],
    [`${'a'.repeat(63)}.test`, `${'a'.repeat(63)}.test`],
    [`uc-${UC}.org-${ORG}.${D}`, `uc-${UC}.org-${ORG}.${D}`],
  ];
  for (const [raw, want] of cases) t.equal(normalizeHost(raw), want, raw);
});

t.test('normalizeHost returns the very input when already normal', async (t) => {
  const raw = `org-${ORG}.${D}`;
  t.equal(normalizeHost(raw), raw);
});

t.test('normalizeHost refuses', async (t) => {
  const bad: Array<string | undefined> = [
    undefined,
    '',
    '.',
    '..',
    ':80',
    'example..test',
    '.example.test',
    'example.test..',
    '*.example.test',
    '*',
    'under_score.test',
    'sp ace.test',
    'tab\t.test',
    'ünicode.test',
    '-lead.test',
    'trail-.test',
    'a.trail-',
    `${'a'.repeat(64)}.test`,
    `test.${'a'.repeat(64)}`,
    'host:99999',
    'host:65536',
    'host:',
    'host:80:80',
    'host:8a',
    'host:123456',
    'ex/ample.test',
    'user@example.test',
    '[::1',
    '[]',
    '[::1]x',
    '[::1]:99999',
    '[1.2.3.4]',
    '[::g]',
    Array.from({ length: 4 }, () => 'a'.repeat(63)).join('.'), // 255 chars
  ];
  for (const raw of bad) t.equal(normalizeHost(raw), undefined, JSON.stringify(raw));
});

t.test('normalizeHost length limit is 253 without the trailing dot', async (t) => {
  const labels = ['a'.repeat(63), 'b'.repeat(63), 'c'.repeat(63), 'd'.repeat(61)];
  const n253 = labels.join('.');
  t.equal(n253.length, 253);
  t.equal(normalizeHost(n253), n253);
  t.equal(normalizeHost(n253 + '.'), n253);
  t.equal(normalizeHost(n253 + ':443'), n253);
  t.equal(normalizeHost('e' + n253), undefined);
});

t.test('isUuid', async (t) => {
  t.ok(isUuid(ORG));
  t.notOk(isUuid(ORG.toUpperCase()));
  t.notOk(isUuid(ORG.slice(1)));
  t.notOk(isUuid(ORG + '0'));
  t.notOk(isUuid(ORG.replace(/-/g, '')));
  t.notOk(isUuid('7f3a0000-0000-4000-8000-00000000000g'));
  t.notOk(isUuid('7f3a0000_0000-4000-8000-000000000002'));
  t.notOk(isUuid(''));
});

t.test('classifyHost kinds', async (t) => {
  t.same(classifyHost(D, D), { kind: 'apex' });
  t.same(classifyHost(`api.${D}`, D), { kind: 'named' });
  t.same(classifyHost(`org-${ORG}.${D}`, D), { kind: 'org', orgId: ORG });
  t.same(classifyHost(`*.org-${ORG}.${D}`, D), { kind: 'org-wildcard', orgId: ORG });
  t.same(classifyHost(`uc-${UC}.org-${ORG}.${D}`, D), { kind: 'uc', orgId: ORG, ucId: UC });
  t.same(classifyHost('localhost', 'localhost'), { kind: 'apex' });
  t.same(classifyHost(`org-${ORG}.localhost`, 'localhost'), { kind: 'org', orgId: ORG });
});

t.test('classifyHost look-alikes are named', async (t) => {
  const named = [
    `org-${ORG}.${D}.evil.com`,
    `org-${ORG}.evil${D}`,
    `org-${ORG}.evil.com`,
    `uc-x.org-${ORG}.${D}`,
    `uc-${UC}.org-x.${D}`,
    `org-${ORG.toUpperCase()}.${D}`,
    `uc-${UC.toUpperCase()}.org-${ORG}.${D}`,
    `org-${ORG}0.${D}`,
    `org-${ORG.slice(1)}.${D}`,
    `xorg-${ORG}.${D}`,
    `a.org-${ORG}.${D}`,
    `a.uc-${UC}.org-${ORG}.${D}`,
    `uc-${UC}.${D}`,
    `uc-${UC}-org-${ORG}.${D}`,
    `*.uc-${UC}.org-${ORG}.${D}`,
    `*.${D}`,
    `*.a.org-${ORG}.${D}`,
    `${D}.evil.com`,
    `x${D}`,
    'test',
  ];
  for (const host of named) t.same(classifyHost(host, D), { kind: 'named' }, host);
});

t.test('isValidEntryHost', async (t) => {
  for (const host of [D, `api.${D}`, `*.org-${ORG}.${D}`, '*.a', 'localhost', `uc-${UC}.org-${ORG}.${D}`]) {
    t.ok(isValidEntryHost(host), host);
  }
  for (const host of ['', '*', '*.', '**.a', 'a.*.b', '*a.b', 'a.*', '*.*.a', 'A.b', 'a.b.', 'a..b', 'a_b.c', 'a.b:80', '-a.b', '[::1]', `${'a'.repeat(64)}.b`]) {
    t.notOk(isValidEntryHost(host), host);
  }
});
