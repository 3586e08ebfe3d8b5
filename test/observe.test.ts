// Observability (issue 3 point 7): the RequestObserver on a small real server
// that routes like the data plane (metrics, access log, activity), the
// certificate and lease metrics, and the cluster path (a primary and two
// workers, spawned from test/helpers/observe-cluster.mjs, which runs dist/).

import t, { type Test } from 'tap';
import http from 'node:http';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import WebSocket, { WebSocketServer } from 'ws';
import type { Config } from '../src/config/types.js';
import { normalizeHost } from '../src/hosts/hostname.js';
import { createObservability, type Observability } from '../src/observe/observer.js';
import { kRequestId, kUser, type ActivityReport, type RequestMarks } from '../src/observe/types.js';
import { sendError, sendRawError } from '../src/proxy/failure.js';
import { RouteTable } from '../src/routes/table.js';
import type { HostEntry } from '../src/routes/types.js';
import { listen } from './helpers/upstreams.js';

const DOMAIN = 'example.test';
const ORG = '7f3a0000-0000-4000-8000-000000000002';
const UC = '1b4e8f0a-0000-4000-8000-000000000001';
const ORG_HOST = `org-${ORG}.${DOMAIN}`;
const UC_HOST = `uc-${UC}.${ORG_HOST}`;
const API_HOST = `api.${DOMAIN}`;
const SECRETS = ['SECRET1', 'SECRET2', 'SECRET3', 'SECRET4'];

function entries(): HostEntry[] {
  return [
    { host: ORG_HOST, locations: [{ path: '/', upstream: 'http://10.1.2.3:8080' }], source: 'api' },
    { host: UC_HOST, locations: [{ path: '/', upstream: 'http://10.1.2.4:8888/base' }], source: 'api' },
    { host: API_HOST, locations: [{ path: '/', static: { root: '/srv/www' } }], source: 'static' },
  ];
}

interface Bench {
  readonly port: number;
  readonly obs: Observability;
  readonly table: RouteTable;
  readonly lines: string[];
}

/** The data plane's observer calls in miniature: route, observe, answer (or fail through failure.ts). */
async function bench(t: Test): Promise<Bench> {
  const table = new RouteTable(DOMAIN);
  for (const e of entries()) table.put(e);
  const lines: string[] = [];
  // The process logger at `silent`: access lines must come out anyway (their own level).
  const parent = pino({ level: 'silent' }, { write: (s: string) => void lines.push(s) });
  const obs = createObservability({
    config: { log: { level: 'silent', access_log: true } } as Config,
    log: parent,
    table,
    processMetrics: false,
  });
  t.teardown(() => obs.close());
  const server = http.createServer((req, res) => {
    const host = normalizeHost(req.headers.host);
    const m = host === undefined ? undefined : table.match(host, req.url!);
    if (m === undefined) {
      obs.observer.request(req, res, undefined, undefined);
      return sendError(req, res, 'HOST_NOT_FOUND');
    }
    obs.observer.request(req, res, m.host, m.location);
    // What the access gate does once a token verified.
    if (req.headers['x-test-user'] !== undefined) (req as RequestMarks)[kUser] = String(req.headers['x-test-user']);
    if (req.url!.startsWith('/fail')) return sendError(req, res, 'UPSTREAM_REFUSED');
    req.resume();
    req.on('end', () => res.end(`id ${(req as RequestMarks)[kRequestId]}`));
  });
  const wss = new WebSocketServer({ noServer: true });
  t.teardown(() => wss.close());
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const host = normalizeHost(req.headers.host);
    const m = host === undefined ? undefined : table.match(host, req.url!);
    obs.observer.upgrade(req, socket, m?.host, m?.location);
    if (m === undefined) return sendRawError(socket, 'HOST_NOT_FOUND');
    if (req.url!.startsWith('/fail')) return sendRawError(socket, 'UPSTREAM_TIMEOUT');
    wss.handleUpgrade(req, socket, head, (ws) => ws.on('message', (d) => ws.send(d)));
  });
  const port = await listen(t, server);
  return { port, obs, table, lines };
}

interface Reply {
  readonly status: number;
  readonly body: string;
}

function request(port: number, host: string, path: string, opts: { headers?: http.OutgoingHttpHeaders; agent?: http.Agent; body?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path, method: opts.body === undefined ? 'GET' : 'POST', headers: { host, ...opts.headers }, agent: opts.agent ?? false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Prometheus text → { 'name{labels}': value }. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return out;
}

async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < deadline) {
    last = await fn();
    if (last !== undefined && last !== false) return last;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function metric(obs: Observability, key: string): Promise<number | undefined> {
  return samples(await obs.metrics.metrics()).get(key);
}

function waitMetric(obs: Observability, key: string, value: number): Promise<true> {
  return until(`${key} = ${value}`, async () => ((await metric(obs, key)) === value ? true : undefined));
}

const REQ = (cls: string, kind: string, status: number): string =>
  `edgeway_requests_total{host_class="${cls}",location_kind="${kind}",status="${status}"}`;

t.test('requests by class, kind and status; latency; upstream errors; access log without secrets', async (t) => {
  const b = await bench(t);
  const secretQuery = '?edgeway_token=SECRET1&code=SECRET2&state=x&access_token=y&token=z';
  const secretHeaders = { cookie: 'edgeway_token=SECRET3; edgeway_state=n', authorization: 'Bearer SECRET4' };
  t.equal((await request(b.port, ORG_HOST, `/a/b${secretQuery}`, { headers: { ...secretHeaders, 'x-test-user': 'user-42' } })).status, 200);
  t.equal((await request(b.port, ORG_HOST, '/c', { body: 'x'.repeat(1000) })).status, 200);
  t.equal((await request(b.port, UC_HOST, `/${secretQuery}`, { headers: secretHeaders })).status, 200);
  t.equal((await request(b.port, API_HOST, '/index.html')).status, 200);
  t.equal((await request(b.port, ORG_HOST, `/fail${secretQuery}`, { headers: secretHeaders })).status, 502);
  t.equal((await request(b.port, `nowhere.${DOMAIN}`, '/x')).status, 404);

  await waitMetric(b.obs, REQ('none', 'none', 404), 1);
  const s = samples(await b.obs.metrics.metrics());
  t.equal(s.get(REQ('org', 'proxy', 200)), 2);
  t.equal(s.get(REQ('org', 'proxy', 502)), 1);
  t.equal(s.get(REQ('uc', 'proxy', 200)), 1);
  t.equal(s.get(REQ('named', 'static', 200)), 1);
  t.equal(s.get('edgeway_request_duration_seconds_count{host_class="org",location_kind="proxy"}'), 3);
  t.equal(s.get('edgeway_request_duration_seconds_bucket{host_class="org",location_kind="proxy",le="+Inf"}'), 3);
  t.equal(s.get('edgeway_request_duration_seconds_bucket{host_class="org",location_kind="proxy",le="60"}'), 3);
  t.ok(s.get('edgeway_request_duration_seconds_sum{host_class="org",location_kind="proxy"}')! > 0);
  t.equal(s.get('edgeway_upstream_errors_total{cause="upstream_refused"}'), 1);
  t.equal(s.get('edgeway_route_table_hosts'), 3);
  t.notOk([...s.keys()].some((k) => k.includes(DOMAIN)), 'no host name is a label');
  t.equal(b.obs.metrics.contentType, 'text/plain; version=0.0.4; charset=utf-8');

  t.equal(b.lines.length, 6, 'one access line per request');
  const all = b.lines.join('');
  for (const secret of SECRETS) t.notOk(all.includes(secret), `${secret} never logged`);
  t.notOk(all.includes('?'), 'no query string');
  const recs = b.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  const first = recs[0]!;
  t.match(first, {
    msg: 'access',
    host: ORG_HOST,
    method: 'GET',
    path: '/a/b',
    status: 200,
    upstream: 'http://10.1.2.3:8080',
    user: 'user-42',
  });
  t.type(first['id'], 'string');
  t.type(first['ms'], 'number');
  t.ok((first['bytes_in'] as number) > 0 && (first['bytes_out'] as number) > 0);
  t.ok((recs[1]!['bytes_in'] as number) > 1000, 'the body counts as bytes in');
  t.not(recs[0]!['id'], recs[1]!['id'], 'ids differ');
  t.equal(recs[2]!['upstream'], 'http://10.1.2.4:8888', 'origin only: no path');
  t.equal(recs[3]!['upstream'], undefined, 'static: no upstream');
  t.match(recs[4]!, { status: 502, error: 'upstream_refused', path: '/fail' });
  t.match(recs[5]!, { status: 404, error: 'host_not_found' });

  // Switched off by a reloaded config.
  b.obs.applyConfig({ log: { level: 'info', access_log: false } } as Config);
  await request(b.port, ORG_HOST, '/quiet');
  await waitMetric(b.obs, REQ('org', 'proxy', 200), 3);
  t.equal(b.lines.length, 6, 'access_log: false writes nothing');
});

t.test('activity per host and per org; open connections follow the last request; pruning', async (t) => {
  const b = await bench(t);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  // One keep-alive connection: the org host, then the uc host (it moves), then a 404 (it stays).
  await request(b.port, ORG_HOST, '/', { agent });
  await request(b.port, ORG_HOST, '/', { agent });
  await request(b.port, UC_HOST, '/', { agent });
  await request(b.port, `nowhere.${DOMAIN}`, '/', { agent });
  await request(b.port, API_HOST, '/'); // own connection, closed after

  const report = await until('the api connection to close', async () => {
    const r = await b.obs.activity.activity();
    return r.hosts.find((h) => h.host === API_HOST)!.open_connections === 0 && r.hosts.find((h) => h.host === UC_HOST)!.requests === 1 ? r : undefined;
  });
  const host = (name: string) => report.hosts.find((h) => h.host === name)!;
  t.equal(report.hosts.length, 3, 'every host of the table, idle or not');
  t.match(host(ORG_HOST), { org_id: ORG, requests: 2, open_connections: 0, open_websockets: 0 });
  t.match(host(UC_HOST), { org_id: ORG, requests: 1, open_connections: 1 });
  t.match(host(API_HOST), { org_id: null, requests: 1, open_connections: 0 });
  t.ok(host(ORG_HOST).bytes_in > 0 && host(ORG_HOST).bytes_out > 0);
  t.ok(Date.now() - Date.parse(host(UC_HOST).last_request_at!) < 10_000);
  t.equal(report.orgs.length, 1);
  const org = report.orgs[0]!;
  t.match(org, { org_id: ORG, hosts: 2, requests: 3, open_connections: 1, open_websockets: 0 });
  t.equal(org.bytes_in, host(ORG_HOST).bytes_in + host(UC_HOST).bytes_in);
  t.equal(org.last_request_at, host(UC_HOST).last_request_at);
  t.equal(report.workers_missing, 0);
  t.equal(await metric(b.obs, 'edgeway_open_connections'), 1);

  agent.destroy();
  await until('connections to close', async () => ((await b.obs.activity.activity()).orgs[0]!.open_connections === 0 ? true : undefined));
  await waitMetric(b.obs, 'edgeway_open_connections', 0);

  // A host that leaves the table leaves the report and, on the next prune, memory.
  b.table.delete(UC_HOST);
  const after = await b.obs.activity.activity();
  t.equal(after.hosts.length, 2);
  t.match(after.orgs[0], { hosts: 1, requests: 2 });
  t.equal(b.obs.activityRows().length, 2, 'pruned');
});

t.test('websockets: gauges up and down, per host; refused upgrades counted by cause', async (t) => {
  const b = await bench(t);
  const ws = new WebSocket(`ws://127.0.0.1:${b.port}/term?edgeway_token=SECRET1`, { headers: { host: UC_HOST, cookie: 'edgeway_token=SECRET3' } });
  t.teardown(() => ws.terminate());
  await once(ws, 'open');
  ws.send('ping');
  await once(ws, 'message');
  t.equal(await metric(b.obs, 'edgeway_open_websockets'), 1);
  const during = await b.obs.activity.activity();
  t.match(during.hosts.find((h) => h.host === UC_HOST), { open_websockets: 1, open_connections: 1, requests: 1 });
  t.match(during.orgs[0], { open_websockets: 1 });

  ws.close();
  await waitMetric(b.obs, 'edgeway_open_websockets', 0);
  await waitMetric(b.obs, REQ('uc', 'proxy', 101), 1);
  const after = await b.obs.activity.activity();
  const uc = after.hosts.find((h) => h.host === UC_HOST)!;
  t.match(uc, { open_websockets: 0, open_connections: 0 });
  t.ok(uc.bytes_in > 0 && uc.bytes_out > 0, 'websocket bytes count for the host');

  // Refused: an upstream timeout, and no route at all.
  const refused = async (host: string, path: string): Promise<number> => {
    const c = new WebSocket(`ws://127.0.0.1:${b.port}${path}`, { headers: { host } });
    c.on('error', () => undefined); // the refusal aborts the handshake
    t.teardown(() => c.terminate());
    const [, res] = (await once(c, 'unexpected-response')) as [unknown, http.IncomingMessage];
    return res.statusCode!;
  };
  t.equal(await refused(ORG_HOST, '/fail'), 504);
  t.equal(await refused(`nowhere.${DOMAIN}`, '/'), 404);
  await waitMetric(b.obs, 'edgeway_upstream_errors_total{cause="upstream_timeout"}', 1);
  await waitMetric(b.obs, REQ('none', 'none', 404), 1);
  await waitMetric(b.obs, 'edgeway_open_websockets', 0);
  await waitMetric(b.obs, REQ('org', 'proxy', 504), 1);

  await until('3 access lines', () => (b.lines.length === 3 ? true : undefined));
  const recs = b.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  t.match(recs[0], { status: 101, ws: true, path: '/term', host: UC_HOST });
  t.match(recs[1], { status: 504, error: 'upstream_timeout' });
  for (const secret of SECRETS) t.notOk(b.lines.join('').includes(secret), `${secret} never logged`);
});

t.test('auth failures, lease expiries and certificate expiry', async (t) => {
  const table = new RouteTable(DOMAIN);
  const now = Date.now();
  const day = 86_400_000;
  const obs = createObservability({
    config: { log: { level: 'info', access_log: false } } as Config,
    log: pino({ level: 'silent' }),
    table,
    processMetrics: true,
    certificates: () => [
      { names: [DOMAIN, `*.${DOMAIN}`], issuer: 'test', notAfter: new Date(now + 30 * day) },
      { names: [`*.${ORG_HOST}`], issuer: 'test', notAfter: new Date(now + 5 * day) },
      { names: [UC_HOST], issuer: 'test', notAfter: new Date(now + 9 * day) },
    ],
  });
  t.teardown(() => obs.close());
  obs.observer.authFailure('expired');
  obs.observer.authFailure('expired');
  obs.observer.authFailure('scope');
  for (let i = 0; i < 40; i++) obs.observer.authFailure(`weird-${i}`);
  obs.metrics.leaseExpired();
  const s = samples(await obs.metrics.metrics());
  t.equal(s.get('edgeway_auth_failures_total{reason="expired"}'), 2);
  t.equal(s.get('edgeway_auth_failures_total{reason="scope"}'), 1);
  t.equal(s.get('edgeway_auth_failures_total{reason="other"}'), 10, 'reasons past 32 distinct are folded');
  t.equal(s.get('edgeway_lease_expiries_total'), 1);
  const apex = s.get(`edgeway_certificate_expiry_seconds{certificate="${DOMAIN},*.${DOMAIN}"}`)!;
  t.ok(Math.abs(apex - 30 * 86_400) < 60, 'operator certificate: seconds to notAfter');
  t.ok(Math.abs(s.get('edgeway_tenant_certificate_expiry_min_seconds')! - 5 * 86_400) < 60, 'tenant: the soonest');
  t.equal(s.get('edgeway_tenant_certificates'), 2);
  t.notOk([...s.keys()].some((k) => k.includes(ORG)), 'no tenant name is a label');
  t.ok(s.has('process_cpu_user_seconds_total'), 'process metrics');
  t.equal(s.get('edgeway_open_connections'), 0);
});

// ---- the cluster path: a primary and two workers ----

const HELPER = fileURLToPath(new URL('./helpers/observe-cluster.mjs', import.meta.url));

interface ClusterInfo {
  readonly primary: number;
  readonly workers: { readonly pid: number; readonly port: number }[];
}

t.test('cluster: the primary merges both workers, skips a stuck one and says so', async (t) => {
  const proc = spawn(process.execPath, [HELPER], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stopped: number | undefined;
  t.teardown(() => {
    if (stopped !== undefined) process.kill(stopped, 'SIGCONT');
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
  });
  let stderr = '';
  proc.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  let out = '';
  proc.stdout!.setEncoding('utf8');
  const info = await new Promise<ClusterInfo>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`helper did not start; stderr: ${stderr}`)), 20_000);
    proc.stdout!.on('data', (c: string) => {
      out += c;
      const nl = out.indexOf('\n');
      if (nl === -1) return;
      clearTimeout(timer);
      resolve(JSON.parse(out.slice(0, nl)) as ClusterInfo);
    });
    proc.once('exit', (code) => reject(new Error(`helper exited ${code}; stderr: ${stderr}`)));
  });
  t.equal(info.workers.length, 2);
  const [w1, w2] = info.workers as [ClusterInfo['workers'][0], ClusterInfo['workers'][0]];
  for (let i = 0; i < 2; i++) t.equal((await request(w1.port, ORG_HOST, '/')).status, 200);
  for (let i = 0; i < 3; i++) t.equal((await request(w2.port, UC_HOST, '/')).status, 200);
  await request(w2.port, ORG_HOST, '/fail');

  const primary = async (path: string): Promise<string> => (await request(info.primary, 'primary', path)).body;
  const m = await until('both workers counted', async () => {
    const s = samples(await primary('/metrics'));
    return s.get(REQ('uc', 'proxy', 200)) === 3 && s.get(REQ('org', 'proxy', 502)) === 1 ? s : undefined;
  });
  t.equal(m.get(REQ('org', 'proxy', 200)), 2);
  t.equal(m.get('edgeway_request_duration_seconds_count{host_class="org",location_kind="proxy"}'), 3, 'histograms merge');
  t.equal(m.get('edgeway_upstream_errors_total{cause="upstream_refused"}'), 1);
  t.equal(m.get('edgeway_route_table_hosts'), 3, 'the table size once, from the primary');
  t.equal(m.get('edgeway_stats_workers_missing'), 0);
  const act = JSON.parse(await primary('/activity')) as ActivityReport;
  t.equal(act.workers_missing, 0);
  t.match(act.orgs, [{ org_id: ORG, hosts: 2, requests: 6 }]);
  t.match(act.hosts.find((h) => h.host === UC_HOST), { requests: 3 });
  t.match(act.hosts.find((h) => h.host === API_HOST), { requests: 0, last_request_at: null });

  // A stopped worker: the scrape still answers (after the timeout), without its share.
  process.kill(w2.pid, 'SIGSTOP');
  stopped = w2.pid;
  const started = Date.now();
  const partial = samples(await primary('/metrics'));
  t.ok(Date.now() - started < 10_000, 'answered despite the stuck worker');
  t.equal(partial.get('edgeway_stats_workers_missing'), 1);
  t.equal(partial.get(REQ('org', 'proxy', 200)), 2, "the live worker's share");
  t.equal(partial.get(REQ('uc', 'proxy', 200)), undefined, "the stuck worker's share is missing");
  const partialAct = JSON.parse(await primary('/activity')) as ActivityReport;
  t.equal(partialAct.workers_missing, 1);
  process.kill(w2.pid, 'SIGCONT');
  stopped = undefined;
  await until('the worker to answer again', async () => (samples(await primary('/metrics')).get('edgeway_stats_workers_missing') === 0 ? true : undefined), 10_000);
});
