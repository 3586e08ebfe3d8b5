import t, { type Test } from 'tap';
import { request as httpRequest, type Server } from 'node:http';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { Agent, request, type Dispatcher } from 'undici';
import jsonwebtoken from 'jsonwebtoken';
import { validateConfig } from '../src/config/validate.js';
import type { Config } from '../src/config/types.js';
import { loadJwtKeys, type JwtKeys } from '../src/auth/keys.js';
import { TokenVerifier, signToken } from '../src/auth/jwt.js';
import { createAdminServer, ADMIN_ERROR_EVENT } from '../src/admin/server.js';
import { MAX_BODY_BYTES } from '../src/admin/body.js';
import type { HostStore, StoredEntry, PutResult, BatchResult } from '../src/admin/host-store.js';
import type { ActivitySource, MetricsSource, ActivityReport } from '../src/observe/types.js';
import type { HostEntry } from '../src/routes/types.js';
import { EdgewayError } from '../src/errors.js';
import { tokenCommand } from '../src/cli/token.js';

const SECRET = 'a-test-secret-that-is-at-least-32-characters-long';
const D = 'example.test';
const ORG = '7f3a0000-0000-4000-8000-000000000002';
const UC = '1b4e8f0a-0000-4000-8000-000000000001';
const ORG_HOST = `org-${ORG}.${D}`;
const UC_HOST = `uc-${UC}.${ORG_HOST}`;

/** In-memory HostStore: a test double of the control plane's interface. */
class MemStore implements HostStore {
  readonly map = new Map<string, StoredEntry>();
  ready = true;
  list(): StoredEntry[] { return [...this.map.values()]; }
  get(host: string): StoredEntry | undefined { return this.map.get(host); }
  async put(entry: HostEntry): Promise<PutResult> {
    const old = this.map.get(entry.host);
    if (old?.entry.source === 'static') throw new EdgewayError('STATIC_ENTRY');
    const expiresAt = entry.lease_ttl_s === undefined ? null : Date.now() + entry.lease_ttl_s * 1000;
    const stored = { entry, version: (old?.version ?? 0) + 1, expiresAt };
    this.map.set(entry.host, stored);
    return { created: old === undefined, stored };
  }
  async delete(host: string): Promise<boolean> {
    const old = this.map.get(host);
    if (old?.entry.source === 'static') throw new EdgewayError('STATIC_ENTRY');
    return this.map.delete(host);
  }
  async heartbeat(host: string): Promise<StoredEntry | undefined> {
    const old = this.map.get(host);
    if (old === undefined) return undefined;
    if (old.entry.source === 'static') throw new EdgewayError('STATIC_ENTRY');
    const ttl = old.entry.lease_ttl_s;
    const stored = { ...old, expiresAt: ttl === undefined ? null : Date.now() + ttl * 1000 };
    this.map.set(host, stored);
    return stored;
  }
  async batch(puts: readonly HostEntry[], deletes: readonly string[]): Promise<BatchResult> {
    // All or nothing: check everything first, as the control plane does.
    for (const e of puts) if (this.map.get(e.host)?.entry.source === 'static') throw new EdgewayError('STATIC_ENTRY');
    for (const h of deletes) {
      const old = this.map.get(h);
      if (old === undefined) throw new EdgewayError('NOT_FOUND');
      if (old.entry.source === 'static') throw new EdgewayError('STATIC_ENTRY');
    }
    const put: PutResult[] = [];
    for (const e of puts) put.push(await this.put(e));
    for (const h of deletes) this.map.delete(h);
    return { put, deleted: [...deletes] };
  }
  health(): { hosts: number; ready: boolean } { return { hosts: this.map.size, ready: this.ready }; }
}

interface Reply { status: number; headers: Record<string, string | string[] | undefined>; body: any }

interface Harness {
  cfg: Config;
  keys: JwtKeys;
  store: MemStore;
  server: Server;
  /** TCP port, 0 on the unix socket. */
  port: number;
  call(method: Dispatcher.HttpMethod, path: string, opts?: { token?: string; body?: unknown; raw?: string; type?: string }): Promise<Reply>;
}

async function harness(
  t: Test,
  admin: Record<string, unknown>,
  listen: 'tcp' | 'unix',
  sources: { activity?: ActivitySource; metrics?: MetricsSource } = {},
): Promise<Harness> {
  const dir = t.testdir();
  const cfg = validateConfig({ domain: D, data_dir: join(dir, 'data'), auth: { jwt: { secret: SECRET } }, admin }, join(dir, 'edgeway.yaml'));
  const keys = await loadJwtKeys(cfg);
  const store = new MemStore();
  store.map.set(D, { entry: { host: D, locations: [{ path: '/', static: { root: '/srv' } }], source: 'static' }, version: 1, expiresAt: null });
  const server: Server = createAdminServer({ config: cfg, store, verifier: new TokenVerifier(keys, cfg.auth.jwt), startedAt: Date.now() - 5000, ...sources });
  let origin: string;
  let dispatcher: Agent;
  let port = 0;
  if (listen === 'tcp') {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
    origin = `http://127.0.0.1:${port}`;
    dispatcher = new Agent();
  } else {
    const socketPath = join(dir, 'admin.sock');
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    origin = 'http://localhost';
    dispatcher = new Agent({ connect: { socketPath } });
  }
  t.teardown(async () => {
    await dispatcher.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  const call: Harness['call'] = async (method, path, opts = {}) => {
    const headers: Record<string, string> = {};
    if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
    let body: string | undefined = opts.raw;
    if (opts.body !== undefined) body = JSON.stringify(opts.body);
    if (body !== undefined) headers['content-type'] = opts.type ?? 'application/json';
    const res = await request(origin + path, { method, headers, body, dispatcher });
    const text = await res.body.text();
    return { status: res.statusCode, headers: res.headers, body: text === '' ? undefined : JSON.parse(text) };
  };
  return { cfg, keys, store, server, port, call };
}

function entry(host: string, upstream = 'http://10.0.0.5:8080'): Record<string, unknown> {
  return { host, locations: [{ path: '/', upstream }, { path: '/collab/yjs', service: 'collab' }] };
}

function checkJsonHeaders(t: Test, r: Reply): void {
  t.equal(r.headers['content-type'], 'application/json');
  t.equal(r.headers['cache-control'], 'no-store');
}

t.test('admin API over TCP', async (t) => {
  const h = await harness(t, { allowed_upstreams: ['10.0.0.0/8', 'fd00::/8'] }, 'tcp');
  const platform = signToken(h.keys, h.cfg.auth.jwt, { type: 'platform', scope: ['edge:admin'] }, 600);

  t.test('health needs no token', async (t) => {
    const r = await h.call('GET', '/v1/health');
    t.equal(r.status, 200);
    t.same(r.body, { status: 'ok', hosts: 1, uptime_s: 5 });
    checkJsonHeaders(t, r);
    h.store.ready = false;
    const s = await h.call('GET', '/v1/health');
    h.store.ready = true;
    t.equal(s.status, 503);
    t.equal(s.body.status, 'starting');
  });

  t.test('tokens', async (t) => {
    const wrongKey = jsonwebtoken.sign({ type: 'platform', scope: ['edge:admin'] }, 'another-secret-that-is-at-least-32-chars!!', { expiresIn: 60 });
    for (const token of [undefined, 'garbage', wrongKey]) {
      const r = await h.call('GET', '/v1/hosts', token === undefined ? {} : { token });
      t.equal(r.status, 401);
      t.equal(r.body.error, 'unauthorized');
      t.equal(r.headers['www-authenticate'], 'Bearer');
      checkJsonHeaders(t, r);
    }
    // Organization tokens: see test/tenancy.test.ts.
    const user = signToken(h.keys, h.cfg.auth.jwt, { type: 'user', sub: 'u', scope: ['edge:admin'] }, 60);
    const noScope = signToken(h.keys, h.cfg.auth.jwt, { type: 'platform', scope: [] }, 60);
    for (const token of [user, noScope]) {
      t.equal((await h.call('GET', '/v1/hosts', { token })).status, 403);
      t.equal((await h.call('PUT', `/v1/hosts/${ORG_HOST}`, { token, body: entry(ORG_HOST) })).body.error, 'forbidden');
      t.equal((await h.call('DELETE', `/v1/hosts/${ORG_HOST}`, { token })).status, 403);
      t.equal((await h.call('POST', `/v1/hosts/${ORG_HOST}/heartbeat`, { token })).status, 403);
      t.equal((await h.call('POST', '/v1/batch', { token, body: { put: [entry(ORG_HOST)] } })).status, 403);
      t.equal((await h.call('GET', `/v1/resolve?url=https://${ORG_HOST}/`, { token })).status, 403);
      t.equal((await h.call('GET', '/v1/hosts/%E0%A4%A', { token })).status, 403, 'a malformed host is 403 without the right');
    }
    t.equal((await h.call('GET', '/v1/hosts/%E0%A4%A')).status, 401, 'and 401 without a token');
    t.equal(h.store.map.has(ORG_HOST), false, 'nothing was stored');
  });

  t.test('put, get, list, delete', async (t) => {
    const a = await h.call('PUT', `/v1/hosts/${ORG_HOST}`, { token: platform, body: entry(ORG_HOST) });
    t.equal(a.status, 201, 'created');
    checkJsonHeaders(t, a);
    t.match(a.body, { host: ORG_HOST, source: 'api', version: 1, expires_at: null });
    t.same(a.body.locations, entry(ORG_HOST).locations);

    const b = await h.call('PUT', `/v1/hosts/${ORG_HOST.toUpperCase()}.`, { token: platform, body: { ...entry(ORG_HOST), lease_ttl_s: 30 } });
    t.equal(b.status, 200, 'replaced (path host normalized)');
    t.equal(b.body.version, 2);
    t.ok(Math.abs(Date.parse(b.body.expires_at) - Date.now() - 30_000) < 2000, 'expires_at is an ISO time');

    const wild = `*.${ORG_HOST}`;
    const w = await h.call('PUT', `/v1/hosts/${encodeURIComponent(wild)}`, { token: platform, body: { locations: [{ path: '/', upstream: 'http://[fd00::1]:80' }] } });
    t.equal(w.status, 201, 'wildcard path host, host taken from the path');
    t.equal(w.body.host, wild);
    t.equal((await h.call('GET', `/v1/hosts/*.${ORG_HOST}`, { token: platform })).body.host, wild);

    const g = await h.call('GET', `/v1/hosts/${ORG_HOST}`, { token: platform });
    t.equal(g.status, 200);
    t.match(g.body, { host: ORG_HOST, version: 2, lease_ttl_s: 30 });

    const l = await h.call('GET', '/v1/hosts', { token: platform });
    t.equal(l.status, 200);
    t.same(l.body.map((e: { host: string }) => e.host), [wild, D, ORG_HOST], 'all entries, sorted');
    t.match(l.body[1], { source: 'static', version: 1, expires_at: null });

    const d = await h.call('DELETE', `/v1/hosts/${ORG_HOST}`, { token: platform });
    t.equal(d.status, 204);
    t.equal(d.body, undefined);
    t.equal(h.store.map.has(ORG_HOST), false);
    for (const method of ['GET', 'DELETE'] as const) {
      const r = await h.call(method, `/v1/hosts/${ORG_HOST}`, { token: platform });
      t.equal(r.status, 404, `${method} of an absent host`);
      t.equal(r.body.error, 'not_found');
    }
  });

  t.test('static entries are 409', async (t) => {
    const p = await h.call('PUT', `/v1/hosts/${D}`, { token: platform, body: entry(D) });
    t.equal(p.status, 409);
    t.equal(p.body.error, 'static_entry');
    t.equal((await h.call('DELETE', `/v1/hosts/${D}`, { token: platform })).status, 409);
    t.equal(h.store.map.get(D)?.entry.source, 'static');
  });

  t.test('bad entries name the field', async (t) => {
    const cases: Array<[unknown, string]> = [
      [{ host: 'other.test', locations: [{ path: '/', upstream: 'http://10.0.0.1' }] }, 'host'],
      [{ locations: [] }, 'locations'],
      [{ locations: [{ path: 'x', upstream: 'http://10.0.0.1' }] }, 'locations[0].path'],
      [{ locations: [{ path: '/', upstream: 'ftp://10.0.0.1' }] }, 'locations[0].upstream'],
      [{ locations: [{ path: '/', service: 'collab' }, { path: '/a', service: 'mail' }] }, 'locations[1].service'],
      [{ locations: [{ path: '/', static: { root: '/etc' } }] }, 'locations[0].static'],
      [{ locations: [{ path: '/', service: 'oauth' }], lease_ttl_s: -1 }, 'lease_ttl_s'],
      [{ locations: [{ path: '/', service: 'oauth' }], access: 'everyone' }, 'access'],
      [{ locations: [{ path: '/', service: 'oauth' }], extra: 1 }, 'extra'],
      [[1, 2], 'entry'],
    ];
    for (const [body, field] of cases) {
      const r = await h.call('PUT', `/v1/hosts/${UC_HOST}`, { token: platform, body });
      t.equal(r.status, 400, field);
      t.equal(r.body.error, 'invalid_field');
      t.equal(r.body.field, field);
      t.type(r.body.message, 'string');
    }
    const bad = await h.call('GET', '/v1/hosts/under_score.test', { token: platform });
    t.match(bad, { status: 400, body: { error: 'invalid_field', field: 'host' } }, 'bad path host');
    t.equal((await h.call('GET', `/v1/hosts/${ORG_HOST}:80`, { token: platform })).status, 400, 'no port in a path host');
    t.equal((await h.call('GET', '/v1/hosts/%E0%A4%A', { token: platform })).status, 400, 'malformed escape');
    t.equal(h.store.map.has(UC_HOST), false);
  });

  t.test('upstreams must fall inside admin.allowed_upstreams', async (t) => {
    const cases: Array<[unknown[], string]> = [
      [[{ path: '/', upstream: 'http://192.168.1.1:80' }], 'locations[0].upstream'],
      [[{ path: '/', service: 'collab' }, { path: '/a', upstream: 'http://127.0.0.1:9900' }], 'locations[1].upstream'],
      [[{ path: '/', upstreams: ['http://10.0.0.1', 'http://[::1]:80'] }], 'locations[0].upstreams[1]'],
      [[{ path: '/', upstream: 'http://[::ffff:7f00:1]' }], 'locations[0].upstream'],
      [[{ path: '/', upstream: 'http://0x7f.1:80' }], 'locations[0].upstream'],
      [[{ path: '/', upstream: 'http://localhost:8080' }], 'locations[0].upstream'],
      [[{ path: '/', upstream: 'http://no-such-host.invalid' }], 'locations[0].upstream'],
    ];
    for (const [locations, field] of cases) {
      const r = await h.call('PUT', `/v1/hosts/${UC_HOST}`, { token: platform, body: { locations } });
      t.equal(r.status, 400, JSON.stringify(locations));
      t.match(r.body, { error: 'invalid_field', field });
    }
    const inside = await h.call('PUT', `/v1/hosts/${UC_HOST}`, { token: platform, body: { locations: [{ path: '/', upstreams: ['http://10.9.9.9', 'https://[::ffff:10.0.0.1]:8443'] }] } });
    t.equal(inside.status, 201, 'literal addresses inside pass (IPv4-mapped too)');
  });

  t.test('bodies', async (t) => {
    const url = `/v1/hosts/${UC_HOST}`;
    const text = await h.call('PUT', url, { token: platform, raw: JSON.stringify(entry(UC_HOST)), type: 'text/plain' });
    t.match(text, { status: 415, body: { error: 'unsupported_media_type' } });
    const none = await h.call('PUT', url, { token: platform });
    t.equal(none.status, 415, 'no body, no content type');
    t.match(await h.call('PUT', url, { token: platform, raw: '{"locations": [' }), { status: 400, body: { error: 'invalid_json' } });
    t.match(await h.call('PUT', url, { token: platform, raw: '' }), { status: 400, body: { error: 'invalid_json' } });
    const charset = await h.call('PUT', url, { token: platform, raw: JSON.stringify(entry(UC_HOST)), type: 'Application/JSON; charset=utf-8' });
    t.equal(charset.status, 200, 'media type parameters are fine');
  });

  t.test('413 past 1 MiB, declared or chunked', async (t) => {
    const url = `/v1/hosts/${UC_HOST}`;
    const json = Buffer.from(JSON.stringify(entry(UC_HOST)));
    const padded = (size: number): Buffer => Buffer.concat([json, Buffer.alloc(size - json.length, 0x20)]);
    for (const chunked of [false, true]) {
      const how = chunked ? 'chunked' : 'content-length';
      const big = await rawPut(h, url, platform, padded(2 * 1024 * 1024), chunked);
      t.equal(big.status, 413, `2 MiB, ${how}`);
      t.equal(big.body.error, 'payload_too_large');
      t.equal(big.connection, 'close', 'the connection is not reused');
      t.equal((await rawPut(h, url, platform, padded(MAX_BODY_BYTES + 1), chunked)).status, 413, `1 MiB + 1, ${how}`);
      t.equal((await rawPut(h, url, platform, padded(MAX_BODY_BYTES), chunked)).status, 200, `exactly 1 MiB is fine, ${how}`);
    }
    t.equal((await h.call('GET', '/v1/health')).status, 200, 'server still serves');
  });

  t.test('unknown path 404, wrong method 405 with Allow', async (t) => {
    const r = await h.call('GET', '/v1/nope', { token: platform });
    t.match(r, { status: 404, body: { error: 'not_found' } });
    t.equal((await h.call('GET', '/v1/hosts/', { token: platform })).status, 404);
    const m = await h.call('POST', '/v1/hosts', { token: platform });
    t.equal(m.status, 405);
    t.equal(m.headers.allow, 'GET');
    t.equal(m.body.error, 'method_not_allowed');
    const n = await h.call('PATCH', `/v1/hosts/${ORG_HOST}`, { token: platform });
    t.equal(n.headers.allow, 'GET, PUT, DELETE');
    checkJsonHeaders(t, n);
  });

  t.test('tokenCommand output verifies against the server', async (t) => {
    const token = await tokenCommand(['--platform', '--ttl', '120'], h.cfg);
    t.equal((await h.call('GET', '/v1/hosts', { token })).status, 200);
    const org = await tokenCommand(['--org', ORG, '--allowed-upstream', '10.1.0.0/16'], h.cfg);
    const orgList = await h.call('GET', '/v1/hosts', { token: org });
    t.equal(orgList.status, 200, 'org token: authenticated and authorized');
    const seen = orgList.body.map((e: { host: string }) => e.host);
    t.ok(seen.length > 0 && seen.every((host: string) => host === ORG_HOST || host.endsWith(`.${ORG_HOST}`)), 'it sees only hosts of its org');
    t.notOk(seen.includes(D), 'not the apex');
    const v = new TokenVerifier(h.keys, h.cfg.auth.jwt);
    t.match(v.verify(org), { type: 'organization_token', organization_id: ORG, allowed_upstreams: ['10.1.0.0/16'] });
    t.match(v.verify(await tokenCommand(['--user', 'u-1', '--scope', 'a', '--scope', 'b'], h.cfg)), { type: 'user', sub: 'u-1', scope: ['a', 'b'] });
    const exp = v.verify(token)!.exp!;
    t.ok(exp * 1000 - Date.now() <= 120_000 && exp * 1000 - Date.now() > 110_000, '--ttl applies');
    for (const bad of [[], ['--platform', '--org', ORG], ['--org', 'x'], ['--scope', 'a', '--platform'], ['--platform', '--ttl', '0'], ['--platform', 'extra'], ['--nope'], ['--org', ORG, '--allowed-upstream', '10/8']]) {
      await t.rejects(tokenCommand(bad, h.cfg), /usage: edgeway token/, bad.join(' '));
    }
  });
});

t.test('admin API over a unix socket', async (t) => {
  // Default allowed_upstreams: private ranges and loopback.
  const h = await harness(t, {}, 'unix');
  const platform = signToken(h.keys, h.cfg.auth.jwt, { type: 'platform', scope: ['edge:admin'] }, 600);
  t.equal((await h.call('GET', '/v1/health')).status, 200);
  t.equal((await h.call('GET', '/v1/hosts')).status, 401);
  const p = await h.call('PUT', `/v1/hosts/${UC_HOST}`, { token: platform, body: entry(UC_HOST, 'http://localhost:9000') });
  t.equal(p.status, 201, 'a name that resolves inside the list passes');
  t.equal((await h.call('GET', `/v1/hosts/${UC_HOST}`, { token: platform })).body.version, 1);
  t.equal((await h.call('DELETE', `/v1/hosts/${UC_HOST}`, { token: platform })).status, 204);

  // An unexpected failure is a 500 that tells nothing, and the error goes to main's logger.
  const seen: unknown[] = [];
  h.server.on(ADMIN_ERROR_EVENT, (e: unknown) => seen.push(e));
  h.store.put = async () => { throw new Error('disk full at /var/lib/secret-path'); };
  const r = await h.call('PUT', `/v1/hosts/${UC_HOST}`, { token: platform, body: entry(UC_HOST) });
  t.same(r.body, { error: 'internal', message: 'internal error' });
  t.equal(r.status, 500);
  t.equal(seen.length, 1);
});

t.test('activity and metrics', async (t) => {
  const ORG2 = '7f3a0000-0000-4000-8000-000000000003';
  const ORG2_HOST = `org-${ORG2}.${D}`;
  const row = (host: string, org: string | null) => ({
    host, org_id: org, last_request_at: null, open_connections: 1, open_websockets: 0, requests: 2, bytes_in: 3, bytes_out: 4,
  });
  const orgRow = (org: string) => ({ org_id: org, hosts: 1, last_request_at: null, open_connections: 1, open_websockets: 0, requests: 2, bytes_in: 3, bytes_out: 4 });
  const report: ActivityReport = {
    hosts: [row(ORG_HOST, ORG), row(UC_HOST, ORG), row(ORG2_HOST, ORG2), row(D, null)],
    orgs: [orgRow(ORG), orgRow(ORG2)],
  };
  const metrics: MetricsSource = { contentType: 'text/plain; version=0.0.4; charset=utf-8', metrics: async () => 'edgeway_hosts 3\n' };
  const activity: ActivitySource = { activity: async () => report };

  const h = await harness(t, {}, 'tcp', { activity, metrics });
  const sign = (claims: Parameters<typeof signToken>[2]): string => signToken(h.keys, h.cfg.auth.jwt, claims, 600);
  const platform = sign({ type: 'platform', scope: ['edge:admin'] });
  const org = sign({ type: 'organization_token', organization_id: ORG });
  const user = sign({ type: 'user', sub: 'u', scope: [] });

  const all = await h.call('GET', '/v1/activity', { token: platform });
  t.equal(all.status, 200);
  t.same(all.body, report, 'a platform token sees every host and org');
  const mine = await h.call('GET', '/v1/activity', { token: org });
  t.same(mine.body.hosts.map((r: { host: string }) => r.host), [ORG_HOST, UC_HOST], 'an org token sees its own hosts only');
  t.same(mine.body.orgs.map((r: { org_id: string }) => r.org_id), [ORG], 'and its own org only');
  t.equal((await h.call('GET', '/v1/activity', { token: user })).status, 403);
  t.equal((await h.call('GET', '/v1/activity')).status, 401);

  // A raw request: the body is Prometheus text, not JSON.
  const m = await request(`http://127.0.0.1:${h.port}/metrics`, { headers: { authorization: `Bearer ${platform}` } });
  t.equal(m.statusCode, 200);
  t.equal(m.headers['content-type'], metrics.contentType);
  t.equal(await m.body.text(), 'edgeway_hosts 3\n');
  t.equal((await h.call('GET', '/metrics')).status, 401, '/metrics needs a token');
  t.equal((await h.call('GET', '/metrics', { token: org })).status, 403, 'an org token may not read metrics (they span every tenant)');
  t.equal((await h.call('GET', '/metrics', { token: user })).status, 403);

  const bare = await harness(t, {}, 'tcp');
  const a = await bare.call('GET', '/v1/activity', { token: platform });
  t.match(a, { status: 503, body: { error: 'service_unavailable' } }, 'no activity source: 503');
  t.match(await bare.call('GET', '/metrics', { token: platform }), { status: 503, body: { error: 'service_unavailable' } }, 'no metrics source: 503');
  t.equal((await bare.call('GET', '/metrics', { token: org })).status, 403, 'the right is checked before availability');
});

/** PUT through node:http, reading the response even while the body is still being written. */
function rawPut(h: Harness, path: string, token: string, body: Buffer, chunked: boolean): Promise<{ status: number; body: any; connection: string | undefined }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    if (!chunked) headers['content-length'] = String(body.length);
    const req = httpRequest({ host: '127.0.0.1', port: h.port, method: 'PUT', path, headers, agent: false });
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text), connection: res.headers.connection }));
      res.on('error', reject);
    });
    req.on('error', reject);
    // 64 KiB writes, so a chunked body crosses the limit part-way.
    let offset = 0;
    const pump = (): void => {
      while (offset < body.length) {
        const end = Math.min(offset + 64 * 1024, body.length);
        const more = req.write(body.subarray(offset, end));
        offset = end;
        if (!more) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}
