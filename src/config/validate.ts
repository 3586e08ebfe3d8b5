// Turns the parsed YAML into a Config, or fails naming every bad key
// (DESIGN.md "Configuration (contract)"). Validation happens once, at start
// and on SIGHUP; everything downstream trusts the result and never re-checks.
// Defaults live here and are documented, one by one, in config.example.yaml.
//
// Choices worth knowing:
// - `domain` is lower-cased and a trailing dot dropped (like request hosts);
//   it must leave room for `uc-{uuid}.org-{uuid}.` under 253 characters.
// - Relative paths resolve against the config file's directory, never the
//   process cwd, so `edgeway --config /etc/edgeway/config.yaml` means the same
//   from anywhere (systemd starts with cwd `/`).
// - Without key material, HMAC tokens use `<data_dir>/jwt.secret`, which the
//   appliance creates with random bytes at first start.

import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { EdgewayError } from '../errors.js';
import type { AcmeConfig, Config, JwtConfig, ListenAddress } from './types.js';
import { Issues, Section, isCidr, isDnsName, isMapping, isUrl, parseHostPort, shown } from './schema.js';

type Tcp = ListenAddress & { kind: 'tcp' };

export const DEFAULT_ALLOWED_UPSTREAMS: readonly string[] = [
  '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '127.0.0.0/8', 'fc00::/7', '::1/128',
];
export const LETS_ENCRYPT_DIRECTORY = 'https://acme-v02.api.letsencrypt.org/directory';

// Key families: one configured key can only verify one family, and mixing
// HMAC with asymmetric algorithms is the classic key-confusion hole.
const FAMILIES = {
  HS256: 'hmac', HS384: 'hmac', HS512: 'hmac',
  RS256: 'rsa', RS384: 'rsa', RS512: 'rsa', PS256: 'rsa', PS384: 'rsa', PS512: 'rsa',
  ES256: 'ec', ES384: 'ec', ES512: 'ec',
} as const;
type Algorithm = keyof typeof FAMILIES;
const ALGORITHMS = Object.keys(FAMILIES) as Algorithm[];
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
// `uc-{uuid}.org-{uuid}.` is 81 characters; a DNS name has at most 253.
const MAX_DOMAIN = 253 - 81;
const DAY_MS = 86_400_000;

export function validateConfig(raw: unknown, configFile: string): Config {
  const issues = new Issues();
  if (raw !== undefined && raw !== null && !isMapping(raw)) {
    issues.expected('(top level)', 'a mapping of keys', shown(raw));
    throw toError(issues);
  }
  const top = new Section(issues, '', raw ?? {});
  const base = dirname(configFile);
  const path = (s: Section, name: string, def: string): string => resolve(base, s.str(name) ?? def);

  const domain = readDomain(top);
  const listen = readListen(top.section('listen'));
  const workers = readWorkers(top);
  const data_dir = path(top, 'data_dir', 'data');
  const routes_dir = path(top, 'routes_dir', 'routes');
  const public_port = top.int('public_port', listen.https.port, 1, 65535);

  const tlsSec = top.section('tls');
  const mode = tlsSec.oneOf('mode', ['self-signed', 'acme', 'files'] as const, 'self-signed');
  const tls = {
    mode,
    certs_dir: resolve(base, tlsSec.str('certs_dir') ?? join(data_dir, 'certs')),
    leaf_days: tlsSec.int('leaf_days', 30, 1, 365),
    acme: readAcme(tlsSec.section('acme'), mode === 'acme', base),
  };
  tlsSec.done();

  const authSec = top.section('auth');
  const auth = {
    jwt: readJwt(authSec.section('jwt'), base, data_dir),
    login_url: readLoginUrl(authSec, domain, public_port),
    handoff_max_ttl_s: authSec.int('handoff_max_ttl_s', 300, 1, 3600),
    session_ttl_s: authSec.int('session_ttl_s', 43_200, 60, 30 * 86_400),
    fail_limit: readFailLimit(authSec.section('fail_limit')),
  };
  authSec.done();

  const adminSec = top.section('admin');
  const admin = { allowed_upstreams: readCidrs(adminSec, 'allowed_upstreams') };
  adminSec.done();

  const lim = top.section('limits');
  const limits = {
    header_timeout_ms: lim.int('header_timeout_ms', 10_000, 1, 600_000),
    request_timeout_ms: lim.int('request_timeout_ms', 0, 0, DAY_MS),
    idle_timeout_ms: lim.int('idle_timeout_ms', 120_000, 0, DAY_MS),
    keepalive_timeout_ms: lim.int('keepalive_timeout_ms', 65_000, 1, 600_000),
    max_header_bytes: lim.int('max_header_bytes', 16_384, 1024, 1_048_576),
    drain_timeout_ms: lim.int('drain_timeout_ms', 10_000, 0, 600_000),
  };
  // node:http refuses a headers timeout longer than a non-zero request timeout.
  if (limits.request_timeout_ms > 0 && limits.header_timeout_ms > limits.request_timeout_ms) {
    issues.expected('limits.header_timeout_ms', `at most limits.request_timeout_ms (${limits.request_timeout_ms})`, String(limits.header_timeout_ms));
  }
  lim.done();

  const prx = top.section('proxy');
  const proxy = {
    timeout_ms: prx.int('timeout_ms', 60_000, 1, DAY_MS),
    connect_timeout_ms: prx.int('connect_timeout_ms', 5_000, 1, 600_000),
    pool_connections: prx.int('pool_connections', 128, 1, 65_536),
    max_fails: prx.int('max_fails', 3, 1, 1000),
    eject_ms: prx.int('eject_ms', 10_000, 1, 3_600_000),
    forwarder: prx.oneOf('forwarder', ['lean', 'undici'] as const, 'lean'),
    fast_lane: prx.bool('fast_lane', true),
  };
  prx.done();

  const oa = top.section('oauth');
  const oauth = {
    code_ttl_s: oa.int('code_ttl_s', 60, 1, 60),
    access_token_ttl_s: oa.int('access_token_ttl_s', 3600, 60, 86_400),
    refresh_token_ttl_s: oa.int('refresh_token_ttl_s', 30 * 86_400, 300, 365 * 86_400),
    max_param_bytes: oa.int('max_param_bytes', 2048, 256, 65_536),
    max_body_bytes: oa.int('max_body_bytes', 16_384, 1024, 1_048_576),
    sweep_interval_s: oa.int('sweep_interval_s', 60, 1, 3600),
  };
  oa.done();

  const col = top.section('collab');
  const collab = {
    max_payload_bytes: col.int('max_payload_bytes', 16_777_216, 1024, 268_435_456),
    send_buffer_limit_bytes: col.int('send_buffer_limit_bytes', 4_194_304, 1024, 268_435_456),
    ping_interval_ms: col.int('ping_interval_ms', 30_000, 100, 600_000),
    unload_grace_ms: col.int('unload_grace_ms', 30_000, 0, DAY_MS),
    compact_after_updates: col.int('compact_after_updates', 500, 1, 1_000_000),
  };
  col.done();

  const logSec = top.section('log');
  const log = {
    level: logSec.oneOf('level', LOG_LEVELS, 'info'),
    access_log: logSec.bool('access_log', true),
  };
  logSec.done();
  top.done();

  if (issues.list.length > 0) throw toError(issues);
  return {
    config_file: configFile, domain, listen, workers, data_dir, routes_dir, public_port,
    tls, auth, admin, limits, proxy, oauth, collab, log,
  };
}

/** One error for all issues: a line each, `field` naming the first. */
function toError(issues: Issues): EdgewayError {
  return new EdgewayError('CONFIG_INVALID', issues.list.map((i) => i.message).join('\n'), {
    field: issues.list[0]?.key,
  });
}

function readDomain(top: Section): string {
  const v = top.raw('domain');
  const what = `a lower-case DNS name of at most ${MAX_DOMAIN} characters such as example.test`;
  if (typeof v !== 'string') {
    top.issues.expected('domain', what, shown(v));
    return 'invalid.invalid';
  }
  const d = v.toLowerCase().replace(/\.$/, '');
  if (!isDnsName(d) || d.length > MAX_DOMAIN) top.issues.expected('domain', what, shown(v));
  return d;
}

function readListen(s: Section): Config['listen'] {
  const tcp = (name: string, def: string): Tcp => {
    const v = s.raw(name) ?? def;
    const hp = typeof v === 'string' ? parseHostPort(v) : undefined;
    if (hp) return { kind: 'tcp', ...hp };
    s.issues.expected(s.key(name), 'HOST:PORT', shown(v));
    return { kind: 'tcp', host: '127.0.0.1', port: 0 };
  };
  const https = tcp('https', '0.0.0.0:8443');
  const http = tcp('http', '0.0.0.0:8080');
  let admin: ListenAddress;
  const a = s.raw('admin');
  if (typeof a === 'string' && a.startsWith('unix:')) {
    const p = a.slice('unix:'.length);
    if (p.startsWith('/') && p.length > 1) admin = { kind: 'unix', path: p };
    else {
      s.issues.expected(s.key('admin'), 'HOST:PORT or unix:/absolute/path', shown(a));
      admin = { kind: 'unix', path: '/invalid' };
    }
  } else {
    admin = tcp('admin', '127.0.0.1:9900');
  }
  // Catch the typo that would otherwise surface as EADDRINUSE after start-up.
  const clash = (x: Tcp, y: ListenAddress, name: string, other: string): void => {
    if (y.kind !== 'tcp' || x.port === 0 || x.port !== y.port) return;
    const any = (h: string): boolean => h === '0.0.0.0' || h === '::';
    if (x.host === y.host || any(x.host) || any(y.host)) {
      s.issues.expected(s.key(name), `a port other than listen.${other}'s`, shown(`${x.host}:${x.port}`));
    }
  };
  clash(http, https, 'http', 'https');
  if (admin.kind === 'tcp') {
    clash(admin, https, 'admin', 'https');
    clash(admin, http, 'admin', 'http');
  }
  s.done();
  return { https, http, admin };
}

function readWorkers(top: Section): number {
  const v = top.raw('workers');
  if (v === undefined || v === 'auto') return Math.min(256, availableParallelism());
  if (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 256) return v;
  top.issues.expected('workers', 'auto or an integer 1-256', shown(v));
  return 1;
}

function readAcme(s: Section, active: boolean, base: string): AcmeConfig {
  const url = (sec: Section, name: string, schemes: string[]): string | undefined => {
    const v = sec.str(name);
    if (v !== undefined && !isUrl(v, schemes)) {
      sec.issues.expected(sec.key(name), `an absolute ${schemes.map((x) => x.slice(0, -1)).join(' or ')} URL`, shown(v));
    }
    return v;
  };
  const directory_url = url(s, 'directory_url', ['https:']) ?? LETS_ENCRYPT_DIRECTORY;
  const email = s.str('email');
  if (email !== undefined && !/^[^@\s]+@[^@\s]+$/.test(email)) s.issues.expected(s.key('email'), 'an email address', shown(email));
  const ca = s.str('ca_file');
  const ca_file = ca === undefined ? undefined : resolve(base, ca);

  const d = s.section('dns01');
  const provider = d.oneOf('provider', ['webhook', 'exec'] as const, 'webhook');
  const hookUrl = url(d, 'url', ['http:', 'https:']);
  const command = d.str('command');
  const propagation_wait_s = d.int('propagation_wait_s', 60, 0, 3600);
  // Required only when ACME is on, so an operator can keep them filled in while testing self-signed.
  if (active && provider === 'webhook' && d.raw('url') === undefined) {
    d.issues.expected(d.key('url'), 'the DNS webhook URL when tls.mode is acme and dns01.provider is webhook', 'nothing');
  }
  if (active && provider === 'exec' && d.raw('command') === undefined) {
    d.issues.expected(d.key('command'), 'a command when tls.mode is acme and dns01.provider is exec', 'nothing');
  }
  d.done();

  let renew_at = 2 / 3;
  const r = s.raw('renew_at');
  if (r !== undefined) {
    if (typeof r === 'number' && r > 0 && r < 1) renew_at = r;
    else s.issues.expected(s.key('renew_at'), 'a number between 0 and 1 (exclusive)', shown(r));
  }
  const max_names = s.int('max_names', 1, 1, 100);
  // Issue 5: release, batching, retries, budgets.
  const release_after_s = s.int('release_after_s', 86400, 0, 31_536_000);
  const batch_wait_ms = s.int('batch_wait_ms', 2000, 0, 600_000);
  const retry_min_s = s.int('retry_min_s', 60, 1, 86400);
  const retry_max_s = s.int('retry_max_s', 3600, 1, 604_800);
  if (retry_max_s < retry_min_s) s.issues.expected(s.key('retry_max_s'), `at least retry_min_s (${retry_min_s})`, shown(retry_max_s));
  const b = s.section('budget');
  const budget = { certificates_per_week: b.int('certificates_per_week', 50, 1, 1_000_000), orders_per_3h: b.int('orders_per_3h', 300, 1, 1_000_000) };
  b.done();
  s.done();
  return {
    directory_url, email, ca_file,
    dns01: { provider, url: hookUrl, command, propagation_wait_s },
    renew_at, max_names,
    release_after_s, batch_wait_ms, retry_min_s, retry_max_s, budget,
  };
}

function readJwt(s: Section, base: string, dataDir: string): JwtConfig {
  const list = s.strings('algorithms') ?? ['HS256'];
  const before = s.issues.list.length;
  let algorithms: Algorithm[] = ['HS256'];
  const bad = list.find((a) => !(ALGORITHMS as string[]).includes(a));
  if (list.length === 0) s.issues.expected(s.key('algorithms'), 'a non-empty list', '[]');
  else if (bad !== undefined) s.issues.expected(s.key('algorithms'), `each one of ${ALGORITHMS.join(', ')}`, shown(bad));
  else if (new Set(list.map((a) => FAMILIES[a as Algorithm])).size > 1) {
    s.issues.expected(s.key('algorithms'), 'algorithms of one key type (HS*, RS*/PS* or ES*)', shown(list));
  } else algorithms = [...new Set(list as Algorithm[])];
  const hmac = FAMILIES[algorithms[0]!] === 'hmac';
  // Key checks against a list already reported as wrong would only add noise.
  const algsOk = s.issues.list.length === before;

  // The secret's value is never echoed, not even in an error.
  let secret: string | undefined;
  const sv = s.raw('secret');
  if (typeof sv === 'string' && sv.length >= 32) secret = sv;
  else if (sv !== undefined) {
    const got = typeof sv === 'string' ? `${sv.length} characters` : `a ${Array.isArray(sv) ? 'list' : typeof sv}`;
    s.issues.expected(s.key('secret'), 'a string of at least 32 characters', got);
  }
  const sf = s.str('secret_file');
  const pk = s.str('public_key_file');
  let secret_file = sf === undefined ? undefined : resolve(base, sf);
  const public_key_file = pk === undefined ? undefined : resolve(base, pk);

  const given = (['secret', 'secret_file', 'public_key_file'] as const).filter((k) => s.raw(k) !== undefined);
  const algs = algorithms.join(', ');
  if (given.length > 1) {
    s.issues.expected(s.key(given[1]!), 'at most one of secret, secret_file, public_key_file', `${given[0]} and ${given[1]}`);
  } else if (algsOk && hmac && given[0] === 'public_key_file') {
    s.issues.expected(s.key('public_key_file'), `secret or secret_file instead for ${algs}`, 'public_key_file');
  } else if (algsOk && !hmac && given[0] !== 'public_key_file') {
    if (given[0] === undefined) s.issues.expected(s.key('public_key_file'), `a PEM public key file for ${algs}`, 'nothing');
    else s.issues.expected(s.key(given[0]), `public_key_file instead for ${algs}`, given[0]);
  } else if (hmac && given.length === 0) {
    secret_file = join(dataDir, 'jwt.secret');
  }
  const issuer = s.str('issuer');
  const audience = s.str('audience');
  s.done();
  return { algorithms, secret, secret_file, public_key_file, issuer, audience };
}

function readFailLimit(s: Section): Config['auth']['fail_limit'] {
  const r = {
    max_failures: s.int('max_failures', 20, 0, 1_000_000),
    window_s: s.int('window_s', 60, 1, 86_400),
    ban_s: s.int('ban_s', 300, 1, 86_400),
  };
  s.done();
  return r;
}

function readLoginUrl(s: Section, domain: string, publicPort: number): string {
  // The default points at the platform on the apex, at the port browsers use.
  // Port 0 (tests: the kernel picks) has no meaningful URL form, so it is left out.
  const host = publicPort === 443 || publicPort === 0 ? domain : `${domain}:${publicPort}`;
  const given = s.str('login_url');
  const v = given === undefined
    ? `https://${host}/login?return_to={return_to}`
    : given.replaceAll('{domain}', domain);
  if (!v.includes('{return_to}') || !isUrl(v.replaceAll('{return_to}', 'x'), ['https:', 'http:'])) {
    s.issues.expected(s.key('login_url'), 'an http(s) URL containing {return_to}', shown(v));
  }
  return v;
}

function readCidrs(s: Section, name: string): string[] {
  const list = s.strings(name);
  if (list === undefined) return [...DEFAULT_ALLOWED_UPSTREAMS];
  list.forEach((c, i) => {
    if (!isCidr(c)) s.issues.expected(`${s.key(name)}[${i}]`, 'a CIDR such as 10.0.0.0/8 or fc00::/7', shown(c));
  });
  return list.map((c) => c.toLowerCase());
}
