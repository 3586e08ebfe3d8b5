import t from 'tap';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileSync } from 'node:fs';
import { loadConfig, deepFreeze } from '../src/config/load.js';
import { validateConfig } from '../src/config/validate.js';
import { EdgewayError } from '../src/errors.js';

const EXAMPLE = fileURLToPath(new URL('../config.example.yaml', import.meta.url));
const FILE = '/etc/edgeway/config.yaml';

/** Validates `raw` and returns the CONFIG_INVALID error it must throw. */
function refuse(raw: unknown): EdgewayError {
  try {
    validateConfig(raw, FILE);
  } catch (e) {
    if (e instanceof EdgewayError && e.code === 'CONFIG_INVALID') return e;
    throw e;
  }
  throw new Error(`accepted: ${JSON.stringify(raw)}`);
}

function defaults(dir: string, domain: string, port: number) {
  return {
    domain,
    listen: {
      https: { kind: 'tcp', host: '0.0.0.0', port: 8443 },
      http: { kind: 'tcp', host: '0.0.0.0', port: 8080 },
      admin: { kind: 'tcp', host: '127.0.0.1', port: 9900 },
    },
    workers: Math.min(256, availableParallelism()),
    data_dir: join(dir, 'data'),
    routes_dir: join(dir, 'routes'),
    public_port: port,
    tls: {
      mode: 'self-signed',
      certs_dir: join(dir, 'data', 'certs'),
      leaf_days: 30,
      acme: {
        directory_url: 'https://acme-v02.api.letsencrypt.org/directory',
        email: undefined,
        ca_file: undefined,
        dns01: { provider: 'webhook', url: undefined, command: undefined, propagation_wait_s: 60 },
        renew_at: 2 / 3,
        max_names: 1,
        release_after_s: 86400,
        batch_wait_ms: 2000,
        retry_min_s: 60,
        retry_max_s: 3600,
        budget: { certificates_per_week: 50, orders_per_3h: 300 },
      },
    },
    auth: {
      jwt: {
        algorithms: ['HS256'],
        secret: undefined,
        secret_file: join(dir, 'data', 'jwt.secret'),
        public_key_file: undefined,
        issuer: undefined,
        audience: undefined,
      },
      login_url: `https://${domain}:${port}/login?return_to={return_to}`,
      handoff_max_ttl_s: 300,
      session_ttl_s: 43200,
      fail_limit: { max_failures: 20, window_s: 60, ban_s: 300 },
    },
    admin: {
      allowed_upstreams: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '127.0.0.0/8', 'fc00::/7', '::1/128'],
    },
    limits: {
      header_timeout_ms: 10000,
      request_timeout_ms: 0,
      idle_timeout_ms: 120000,
      keepalive_timeout_ms: 65000,
      max_header_bytes: 16384,
      drain_timeout_ms: 10000,
    },
    proxy: { timeout_ms: 60000, connect_timeout_ms: 5000, pool_connections: 128, max_fails: 3, eject_ms: 10000, forwarder: 'lean', fast_lane: true },
    oauth: { code_ttl_s: 60, access_token_ttl_s: 3600, refresh_token_ttl_s: 2_592_000, max_param_bytes: 2048, max_body_bytes: 16_384, sweep_interval_s: 60 },
    collab: { max_payload_bytes: 16777216, send_buffer_limit_bytes: 4194304, ping_interval_ms: 30000, unload_grace_ms: 30000, compact_after_updates: 500 },
    log: { level: 'info', access_log: true },
  };
}

t.test('config.example.yaml loads as is, with the documented defaults', async (t) => {
  const cfg = await loadConfig(EXAMPLE);
  const dir = dirname(EXAMPLE);
  t.strictSame(cfg, { config_file: EXAMPLE, ...defaults(dir, 'localhost', 8443) });
  // The example's explicit values are the defaults: dropping them changes nothing.
  t.strictSame(validateConfig({ domain: 'localhost' }, EXAMPLE), cfg);
});

t.test('a minimal config gets every default', async (t) => {
  const cfg = validateConfig({ domain: 'x.test' }, FILE);
  t.strictSame(cfg, { config_file: FILE, ...defaults('/etc/edgeway', 'x.test', 8443) });
});

t.test('unknown keys are named by their dotted path', async (t) => {
  t.equal(refuse({ domain: 'x.test', bogus: 1 }).message, 'bogus: unknown key');
  const e = refuse({ domain: 'x.test', limits: { bogus: 1 } });
  t.equal(e.message, 'limits.bogus: unknown key');
  t.equal(e.field, 'limits.bogus');
  t.equal(refuse({ domain: 'x.test', tls: { acme: { dns01: { urll: 'x' } } } }).field, 'tls.acme.dns01.urll');
  t.equal(refuse({ domain: 'x.test', auth: { jwt: { secrets: 'x' } } }).field, 'auth.jwt.secrets');
});

t.test('every problem is reported, one per line, field naming the first', async (t) => {
  const e = refuse({ domain: 'x.test', listen: { https: '8443' }, workers: 0, log: { level: 'loud', x: 1 } });
  t.equal(e.field, 'listen.https');
  t.strictSame(e.message.split('\n').map((l) => l.split(':')[0]), ['listen.https', 'workers', 'log.level', 'log.x']);
  t.equal(e.message.split('\n')[0], 'listen.https: expected HOST:PORT, got "8443"');
});

t.test('bad values name their key and what was expected', async (t) => {
  const d = { domain: 'x.test' };
  const acme = { ...d, tls: { mode: 'acme' } };
  const secret = 'a'.repeat(32);
  const cases: Array<[string, unknown, string, RegExp?]> = [
    ['domain missing', {}, 'domain', /got nothing/],
    ['domain with underscore', { domain: 'x_y.test' }, 'domain'],
    ['domain as IP', { domain: '127.0.0.1' }, 'domain'],
    ['domain wildcard', { domain: '*.x.test' }, 'domain'],
    ['domain too long', { domain: `${'a'.repeat(60)}.${'b'.repeat(60)}.${'c'.repeat(60)}.test` }, 'domain'],
    ['top level list', [1], '(top level)'],
    ['listen.https port only', { ...d, listen: { https: '8443' } }, 'listen.https', /got "8443"/],
    ['listen.https number', { ...d, listen: { https: 8443 } }, 'listen.https', /got 8443$/],
    ['listen.http port too big', { ...d, listen: { http: '0.0.0.0:65536' } }, 'listen.http'],
    ['listen.http bad IPv6', { ...d, listen: { http: '[::g]:80' } }, 'listen.http'],
    ['listen.http IPv6 without brackets', { ...d, listen: { http: ':::80' } }, 'listen.http'],
    ['listen.http same port as https', { ...d, listen: { http: '0.0.0.0:8443' } }, 'listen.http'],
    ['listen.admin relative unix', { ...d, listen: { admin: 'unix:relative' } }, 'listen.admin', /unix:\/absolute\/path, got "unix:relative"/],
    ['listen not a mapping', { ...d, listen: 'x' }, 'listen', /expected a mapping/],
    ['workers 0', { ...d, workers: 0 }, 'workers', /auto or an integer 1-256, got 0/],
    ['workers many', { ...d, workers: 'many' }, 'workers'],
    ['workers fraction', { ...d, workers: 1.5 }, 'workers'],
    ['data_dir number', { ...d, data_dir: 5 }, 'data_dir'],
    ['public_port 0', { ...d, public_port: 0 }, 'public_port'],
    ['tls.mode selfsigned', { ...d, tls: { mode: 'selfsigned' } }, 'tls.mode', /^tls\.mode: expected one of self-signed, acme, files, got "selfsigned"$/],
    ['tls.leaf_days 0', { ...d, tls: { leaf_days: 0 } }, 'tls.leaf_days'],
    ['acme without dns01.url', acme, 'tls.acme.dns01.url'],
    ['acme exec without command', { ...d, tls: { mode: 'acme', acme: { dns01: { provider: 'exec' } } } }, 'tls.acme.dns01.command'],
    ['acme provider', { ...d, tls: { acme: { dns01: { provider: 'route53' } } } }, 'tls.acme.dns01.provider'],
    ['acme directory over http', { ...d, tls: { acme: { directory_url: 'http://ca.test/dir' } } }, 'tls.acme.directory_url'],
    ['acme webhook url', { ...d, tls: { acme: { dns01: { url: 'not a url' } } } }, 'tls.acme.dns01.url'],
    ['acme renew_at 1', { ...d, tls: { acme: { renew_at: 1 } } }, 'tls.acme.renew_at'],
    ['acme max_names 101', { ...d, tls: { acme: { max_names: 101 } } }, 'tls.acme.max_names'],
    ['acme propagation_wait_s', { ...d, tls: { acme: { dns01: { propagation_wait_s: -1 } } } }, 'tls.acme.dns01.propagation_wait_s'],
    ['acme email', { ...d, tls: { acme: { email: 'nobody' } } }, 'tls.acme.email'],
    ['acme retry_max_s below min', { ...d, tls: { acme: { retry_min_s: 10, retry_max_s: 5 } } }, 'tls.acme.retry_max_s'],
    ['acme budget', { ...d, tls: { acme: { budget: { orders_per_3h: 0 } } } }, 'tls.acme.budget.orders_per_3h'],
    ['jwt none', { ...d, auth: { jwt: { algorithms: ['none'] } } }, 'auth.jwt.algorithms', /got "none"/],
    ['jwt empty list', { ...d, auth: { jwt: { algorithms: [] } } }, 'auth.jwt.algorithms'],
    ['jwt HS and RS', { ...d, auth: { jwt: { algorithms: ['HS256', 'RS256'], secret } } }, 'auth.jwt.algorithms'],
    ['jwt RS and ES', { ...d, auth: { jwt: { algorithms: ['RS256', 'ES256'], public_key_file: 'k.pem' } } }, 'auth.jwt.algorithms'],
    ['jwt short secret', { ...d, auth: { jwt: { secret: 'short-secret' } } }, 'auth.jwt.secret', /got 12 characters$/],
    ['jwt secret and secret_file', { ...d, auth: { jwt: { secret, secret_file: 's' } } }, 'auth.jwt.secret_file', /got secret and secret_file/],
    ['jwt HMAC with public key', { ...d, auth: { jwt: { public_key_file: 'k.pem' } } }, 'auth.jwt.public_key_file'],
    ['jwt RS256 with secret', { ...d, auth: { jwt: { algorithms: ['RS256'], secret } } }, 'auth.jwt.secret'],
    ['jwt RS256 without key', { ...d, auth: { jwt: { algorithms: ['RS256'] } } }, 'auth.jwt.public_key_file'],
    ['jwt issuer empty', { ...d, auth: { jwt: { issuer: '' } } }, 'auth.jwt.issuer'],
    ['login_url without return_to', { ...d, auth: { login_url: 'https://x.test/login' } }, 'auth.login_url'],
    ['login_url not a URL', { ...d, auth: { login_url: '/login?r={return_to}' } }, 'auth.login_url'],
    ['handoff ttl 0', { ...d, auth: { handoff_max_ttl_s: 0 } }, 'auth.handoff_max_ttl_s'],
    ['fail_limit negative', { ...d, auth: { fail_limit: { max_failures: -1 } } }, 'auth.fail_limit.max_failures'],
    ['fail_limit window 0', { ...d, auth: { fail_limit: { window_s: 0 } } }, 'auth.fail_limit.window_s'],
    ['fail_limit ban text', { ...d, auth: { fail_limit: { ban_s: '5m' } } }, 'auth.fail_limit.ban_s'],
    ['fail_limit unknown key', { ...d, auth: { fail_limit: { bans: 1 } } }, 'auth.fail_limit.bans'],
    ['allowed_upstreams /33', { ...d, admin: { allowed_upstreams: ['10.0.0.0/33'] } }, 'admin.allowed_upstreams[0]', /got "10\.0\.0\.0\/33"/],
    ['allowed_upstreams bare IP', { ...d, admin: { allowed_upstreams: ['10.0.0.0/8', '10.1.2.3'] } }, 'admin.allowed_upstreams[1]'],
    ['allowed_upstreams string', { ...d, admin: { allowed_upstreams: '10.0.0.0/8' } }, 'admin.allowed_upstreams'],
    ['max_header_bytes 10', { ...d, limits: { max_header_bytes: 10 } }, 'limits.max_header_bytes', /an integer 1024-1048576, got 10$/],
    ['header timeout string', { ...d, limits: { header_timeout_ms: '10000' } }, 'limits.header_timeout_ms'],
    ['header > request timeout', { ...d, limits: { request_timeout_ms: 5000 } }, 'limits.header_timeout_ms'],
    ['proxy.max_fails 0', { ...d, proxy: { max_fails: 0 } }, 'proxy.max_fails'],
    ['collab.ping_interval_ms 0', { ...d, collab: { ping_interval_ms: 0 } }, 'collab.ping_interval_ms'],
    ['collab.unknown', { ...d, collab: { max_payload: 10 } }, 'collab.max_payload'],
    ['log.level', { ...d, log: { level: 'verbose' } }, 'log.level'],
    ['log.access_log yes', { ...d, log: { access_log: 'yes' } }, 'log.access_log'],
  ];
  for (const [name, raw, key, re] of cases) {
    const e = refuse(raw);
    t.equal(e.field, key, `${name}: field`);
    t.ok(e.message.startsWith(`${key}: `), `${name}: message names ${key}: ${e.message}`);
    t.equal(e.message.split('\n').length, 1, `${name}: exactly one problem`);
    if (re) t.match(e.message, re, `${name}: message`);
  }
});

t.test('the secret never appears in an error', async (t) => {
  const e = refuse({ domain: 'x.test', auth: { jwt: { secret: 'hunter2-is-my-password' } } });
  t.notMatch(e.message, /hunter2/);
  t.notMatch(refuse({ domain: 'x.test', auth: { jwt: { secret: 123456 } } }).message, /123456/);
});

t.test('valid non-default values', async (t) => {
  const cfg = validateConfig(
    {
      domain: 'Example.TEST.',
      listen: { https: '[::]:443', http: '[::1]:0', admin: 'unix:/run/edgeway/admin.sock' },
      workers: 4,
      tls: {
        mode: 'acme',
        acme: {
          directory_url: 'https://localhost:14000/dir',
          email: 'ops@example.test',
          ca_file: 'pebble.pem',
          dns01: { url: 'http://localhost:8055', propagation_wait_s: 0 },
          renew_at: 0.5,
        },
      },
      auth: { jwt: { algorithms: ['RS256', 'PS256'], public_key_file: 'keys/pub.pem', audience: 'edgeway' } },
      admin: { allowed_upstreams: [] },
      log: { level: 'silent', access_log: false },
    },
    FILE,
  );
  t.equal(cfg.domain, 'example.test');
  t.strictSame(cfg.listen, {
    https: { kind: 'tcp', host: '::', port: 443 },
    http: { kind: 'tcp', host: '::1', port: 0 },
    admin: { kind: 'unix', path: '/run/edgeway/admin.sock' },
  });
  t.equal(cfg.workers, 4);
  t.equal(cfg.public_port, 443);
  t.equal(cfg.auth.login_url, 'https://example.test/login?return_to={return_to}', 'no :443');
  t.equal(cfg.tls.acme.ca_file, '/etc/edgeway/pebble.pem');
  t.equal(cfg.tls.acme.dns01.url, 'http://localhost:8055');
  t.equal(cfg.tls.acme.renew_at, 0.5);
  t.strictSame(cfg.auth.jwt, {
    algorithms: ['RS256', 'PS256'], secret: undefined, secret_file: undefined,
    public_key_file: '/etc/edgeway/keys/pub.pem', issuer: undefined, audience: 'edgeway',
  });
  t.strictSame(cfg.admin.allowed_upstreams, []);

  const hs = validateConfig({ domain: 'x.test', auth: { jwt: { algorithms: ['HS512'], secret: 's'.repeat(32) } } }, FILE);
  t.equal(hs.auth.jwt.secret_file, undefined, 'an inline secret replaces the default file');
  const custom = validateConfig(
    { domain: 'x.test', public_port: 9443, auth: { login_url: 'https://accounts.{domain}/in?next={return_to}' } },
    FILE,
  );
  t.equal(custom.auth.login_url, 'https://accounts.x.test/in?next={return_to}');
  t.equal(validateConfig({ domain: 'x.test', public_port: 9443 }, FILE).auth.login_url,
    'https://x.test:9443/login?return_to={return_to}');
  t.equal(validateConfig({ domain: 'x.test', listen: { https: '127.0.0.1:0' } }, FILE).public_port, 0);
  t.equal(validateConfig({ domain: 'x.test', listen: { admin: 'localhost:9901' } }, FILE).listen.admin.kind, 'tcp');
  t.equal(validateConfig({ domain: 'x.test', workers: 'auto' }, FILE).workers >= 1, true);
});

t.test('relative paths resolve against the config file directory', async (t) => {
  const dir = t.testdir({
    'edgeway.yaml': [
      'domain: x.test',
      'data_dir: state',
      'routes_dir: ../routes',
      'tls: { certs_dir: tls/certs }',
      'auth: { jwt: { secret_file: keys/jwt } }',
      '',
    ].join('\n'),
  });
  const cfg = await loadConfig(join(dir, 'edgeway.yaml'));
  t.equal(cfg.config_file, join(dir, 'edgeway.yaml'));
  t.equal(cfg.data_dir, join(dir, 'state'));
  t.equal(cfg.routes_dir, join(dirname(dir), 'routes'));
  t.equal(cfg.tls.certs_dir, join(dir, 'tls/certs'));
  t.equal(cfg.auth.jwt.secret_file, join(dir, 'keys/jwt'));
  const abs = validateConfig({ domain: 'x.test', data_dir: '/var/lib/edgeway' }, FILE);
  t.equal(abs.data_dir, '/var/lib/edgeway');
  t.equal(abs.tls.certs_dir, '/var/lib/edgeway/certs', 'certs_dir defaults under data_dir');
});

t.test('YAML problems name the file, line and column', async (t) => {
  const dir = t.testdir({
    'dup.yaml': 'domain: x.test\nlimits:\n  idle_timeout_ms: 1\n  idle_timeout_ms: 2\n',
    'syntax.yaml': 'domain: x.test\nlisten: [a,\nworkers: 2\n',
    'multi.yaml': 'domain: x.test\n---\ndomain: y.test\n',
    'alias.yaml': 'domain: *nowhere\n',
    'empty.yaml': '',
  });
  const fail = async (name: string): Promise<EdgewayError> => {
    const err = await loadConfig(join(dir, name)).then(
      () => { throw new Error(`${name} loaded`); },
      (e: unknown) => e,
    );
    t.type(err, EdgewayError);
    t.equal((err as EdgewayError).code, 'CONFIG_INVALID');
    return err as EdgewayError;
  };
  t.match((await fail('dup.yaml')).message, `${join(dir, 'dup.yaml')}:4:3: Map keys must be unique`);
  t.match((await fail('syntax.yaml')).message, new RegExp(`^${join(dir, 'syntax.yaml')}:3:\\d+: `));
  t.match((await fail('multi.yaml')).message, `${join(dir, 'multi.yaml')}:2:`);
  t.match((await fail('alias.yaml')).message, join(dir, 'alias.yaml'));
  t.match((await fail('empty.yaml')).message, /^domain: expected .* got nothing$/, 'an empty file lacks domain');
  const missing = await fail('absent.yaml');
  t.match(missing.message, `${join(dir, 'absent.yaml')}: cannot read the config file (ENOENT)`);
});

t.test('the result is deeply frozen', async (t) => {
  const dir = t.testdir({});
  const file = join(dir, 'c.yaml');
  writeFileSync(file, 'domain: x.test\n');
  const cfg = await loadConfig(file);
  t.ok(Object.isFrozen(cfg));
  t.throws(() => { (cfg as { domain: string }).domain = 'y.test'; }, TypeError);
  t.throws(() => { (cfg.limits as { idle_timeout_ms: number }).idle_timeout_ms = 1; }, TypeError);
  t.throws(() => { (cfg.listen.https as { port: number }).port = 1; }, TypeError);
  t.throws(() => { (cfg.admin.allowed_upstreams as string[]).push('0.0.0.0/0'); }, TypeError);
  t.throws(() => { (cfg.tls.acme.dns01 as { url?: string }).url = 'http://evil'; }, TypeError);

  const cyclic: { self?: unknown; list: number[] } = { list: [1] };
  cyclic.self = cyclic;
  deepFreeze(cyclic);
  t.ok(Object.isFrozen(cyclic.list), 'cycles terminate');
});
