// The admin CLI against live instances (DESIGN.md "Command line"): `edgeway
// hosts list|get|put|rm` and `edgeway resolve` as separate processes talking
// to a spawned edgeway, over TCP (address from the config, or --admin) and
// over the unix-socket admin listener; readable tables and --json; the API's
// error message and exit 1 on failure, exit 2 on bad usage, a clear message
// naming the address when the admin API is down; tokens never printed.

import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DOMAIN, ORG, ORG2_HOST, ORG_HOST, UC_HOST, writeTestConfig } from './helpers/appliance.js';
import { freePort, MAIN, startEdgeway, type Running } from './helpers/process.js';
import { CliError } from '../src/cli/admin-client.js';
import { hostsCommand } from '../src/cli/hosts.js';
import { resolveCommand } from '../src/cli/resolve.js';

const WILD = `*.${ORG_HOST}`;
const API_HOST = `api.${DOMAIN}`;

interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** `node dist/src/main.js ARGS`, with `input` on stdin; EDGEWAY_* from the test's own environment never leak in. */
function cli(args: readonly string[], opts: { input?: string; env?: Record<string, string> } = {}): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env };
  for (const k of ['EDGEWAY_TOKEN', 'EDGEWAY_CONFIG']) if (opts.env?.[k] === undefined) delete env[k];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

interface Instance {
  readonly file: string;
  readonly dir: string;
  readonly running: Running;
  /** The admin address as --admin takes it. */
  readonly admin: string;
}

/** A spawned edgeway whose admin API listens on a fixed TCP port or a unix socket (so the config alone finds it). */
async function instance(kind: 'tcp' | 'unix'): Promise<Instance> {
  const sockDir = await mkdtemp(join(tmpdir(), 'edgeway-cli-'));
  t.teardown(() => rm(sockDir, { recursive: true, force: true }));
  const admin = kind === 'tcp' ? `127.0.0.1:${await freePort()}` : `unix:${join(sockDir, 'admin.sock')}`;
  const { dir, file } = await writeTestConfig(
    { listen: { https: '127.0.0.1:0', http: '127.0.0.1:0', admin }, log: { level: 'info', access_log: false } },
    { 'api.yaml': { host: API_HOST, locations: [{ path: '/', upstream: 'http://127.0.0.1:9' }] } },
  );
  // Registered before startEdgeway's own teardown, so it runs after the kill.
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return { file, dir, running: await startEdgeway(t, file), admin };
}

const [tcp, unix] = await Promise.all([instance('tcp'), instance('unix')]);

/** The API's own answer, for comparing with what --json prints. */
async function api(path: string): Promise<unknown> {
  const res = await fetch(tcp.running.adminUrl + path, { headers: { authorization: `Bearer ${tcp.running.platformToken}` } });
  return res.json();
}

const ENTRY = {
  access: 'public',
  locations: [
    { path: '/', upstream: 'http://127.0.0.1:8888' },
    { path: '/collab/yjs', service: 'collab' },
  ],
  lease_ttl_s: 60,
};
const WILD_YAML = `host: "${WILD}"
locations:
  - path: /
    upstream: http://10.1.2.3:80
    strip_prefix: true
    timeout_ms: 5000
`;

t.test('put from a file and from stdin (JSON and YAML)', async (t) => {
  const file = join(tcp.dir, 'entry.json');
  await writeFile(file, JSON.stringify(ENTRY));
  const first = await cli(['hosts', 'put', ORG_HOST, '--file', file, '--config', tcp.file]);
  t.equal(first.code, 0, first.stderr);
  t.match(first.stdout, new RegExp(`^created ${ORG_HOST} \\(version 1, expires in (59|60)s\\)\\n$`));
  const again = await cli(['hosts', 'put', ORG_HOST, '--file', file, '--config', tcp.file]);
  t.match(again.stdout, new RegExp(`^replaced ${ORG_HOST} \\(version 2, `));

  // YAML on stdin; the host comes from the document.
  const wild = await cli(['hosts', 'put', '--file', '-', '--config', tcp.file], { input: WILD_YAML });
  t.equal(wild.code, 0, wild.stderr);
  t.equal(wild.stdout, `created ${WILD} (version 1)\n`);
  t.match(await api(`/v1/hosts/${encodeURIComponent(WILD)}`), { host: WILD, locations: [{ upstream: 'http://10.1.2.3:80', strip_prefix: true, timeout_ms: 5000 }] });

  // What `get --json` prints can be put back as is (version and expires_at are dropped).
  const got = await cli(['hosts', 'get', WILD, '--json', '--config', tcp.file]);
  const back = await cli(['hosts', 'put', WILD, '--file', '-', '--json', '--config', tcp.file], { input: got.stdout });
  t.equal(back.code, 0, back.stderr);
  t.match(JSON.parse(back.stdout), { host: WILD, version: 2, expires_at: null, source: 'api' });
});

t.test('list: a table, and the API JSON with --json', async (t) => {
  const table = await cli(['hosts', 'list', '--config', tcp.file]);
  t.equal(table.code, 0, table.stderr);
  const lines = table.stdout.trimEnd().split('\n');
  t.match(lines[0], /^HOST +SOURCE +ACCESS +LOCATIONS +VERSION +EXPIRES$/);
  t.equal(lines.length, 4, 'header plus three entries');
  const row = (host: string): string[] => (lines.find((l) => l.startsWith(host + ' ')) ?? '').split(/ {2,}/);
  t.same(row(ORG_HOST).slice(0, 5), [ORG_HOST, 'api', 'public', '/ → http://127.0.0.1:8888, /collab/yjs → service:collab', '2']);
  t.match(row(ORG_HOST)[5], /^in \d+s$/);
  t.same(row(WILD), [WILD, 'api', 'default', '/ → http://10.1.2.3:80', '2', '-']);
  t.same(row(API_HOST), [API_HOST, 'static', 'default', '/ → http://127.0.0.1:9', '1', '-']);

  const json = await cli(['hosts', 'list', '--json', '--config', tcp.file]);
  t.equal(json.code, 0, json.stderr);
  t.same(JSON.parse(json.stdout), await api('/v1/hosts'));
});

t.test('get: a readable view, and --json with version and expires_at', async (t) => {
  const view = await cli(['hosts', 'get', ORG_HOST, '--config', tcp.file]);
  t.equal(view.code, 0, view.stderr);
  t.match(view.stdout, new RegExp(`^host: +${ORG_HOST}\\n`));
  t.match(view.stdout, /^version: +2$/m);
  t.match(view.stdout, /^lease: +60s$/m);
  t.match(view.stdout, /^expires: +\d{4}-\d\d-\d\dT[\d:.]+Z \(in \d+s\)$/m);
  t.match(view.stdout, /^PATH +TARGET +ACCESS +OPTIONS\n\/ +http:\/\/127\.0\.0\.1:8888 +- +-\n\/collab\/yjs +service:collab +- +-\n$/m);
  const wild = await cli(['hosts', 'get', WILD, '--config', tcp.file]);
  t.match(wild.stdout, /^\/ +http:\/\/10\.1\.2\.3:80 +- +strip_prefix, timeout 5000ms$/m);

  const json = await cli(['hosts', 'get', ORG_HOST, '--json', '--config', tcp.file]);
  const body = JSON.parse(json.stdout) as Record<string, unknown>;
  t.same(body, await api(`/v1/hosts/${ORG_HOST}`));
  t.equal(body['version'], 2);
  t.type(body['expires_at'], 'string');
});

t.test('resolve: exact, wildcard, no route, SNI mismatch', async (t) => {
  const url = `https://${ORG_HOST}/collab/yjs/room1`;
  const exact = await cli(['resolve', url, '--json', '--config', tcp.file]);
  t.equal(exact.code, 0, exact.stderr);
  t.match(JSON.parse(exact.stdout), {
    url,
    decision: 'routed',
    status: null,
    entry: { host: ORG_HOST, version: 2 },
    location: { path: '/collab/yjs', kind: 'service', service: 'collab' },
  });
  const readable = await cli(['resolve', url, '--config', tcp.file]);
  t.equal(readable.code, 0, readable.stderr);
  t.match(readable.stdout, /^decision: +routed$/m);
  t.match(readable.stdout, new RegExp(`^entry: +${ORG_HOST} \\(version 2; expires in \\d+s\\)$`, 'm'));
  t.match(readable.stdout, /^location\.path: +\/collab\/yjs$/m);
  t.match(readable.stdout, /^access\.effective: +public$/m);

  const wild = await cli(['resolve', `https://foo.${ORG_HOST}/x?y=1`, '--json', '--config', tcp.file]);
  t.equal(wild.code, 0, wild.stderr);
  t.match(JSON.parse(wild.stdout), { decision: 'routed', entry: { host: WILD }, location: { path: '/', kind: 'proxy', timeout_ms: 5000 } });

  // Answers, not failures: exit 0 with the status and why.
  const none = await cli(['resolve', `https://${ORG2_HOST}/`, '--config', tcp.file]);
  t.equal(none.code, 0, none.stderr);
  t.match(none.stdout, /^decision: +host_not_found\nstatus: +404\nreason: +no entry for /m);
  const sni = await cli(['resolve', `https://${ORG_HOST}/`, '--sni', API_HOST, '--json', '--config', tcp.file]);
  t.equal(sni.code, 0, sni.stderr);
  t.match(JSON.parse(sni.stdout), { sni: API_HOST, decision: 'misdirected', status: 421 });

  const bad = await cli(['resolve', 'ftp://x/', '--config', tcp.file]);
  t.equal(bad.code, 1);
  t.equal(bad.stderr, 'edgeway: 400 invalid_field: url: expected an http or https URL\n');
});

t.test('rm, then the host is gone', async (t) => {
  const r = await cli(['hosts', 'rm', WILD, '--config', tcp.file]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, `removed ${WILD}\n`);
  const gone = await cli(['hosts', 'get', WILD, '--config', tcp.file]);
  t.equal(gone.code, 1);
  t.equal(gone.stderr, `edgeway: 404 not_found: no host entry for ${WILD}\n`);
  t.equal(gone.stdout, '');
  const twice = await cli(['hosts', 'rm', WILD, '--json', '--config', tcp.file]);
  t.equal(twice.code, 1);
  t.equal(twice.stderr, `edgeway: 404 not_found: no host entry for ${WILD}\n`);
});

t.test('API errors: exit 1 with the API message, nothing changed', async (t) => {
  const put = (input: string, file = '-'): Promise<CliResult> => cli(['hosts', 'put', UC_HOST, '--file', file, '--config', tcp.file], { input });
  const [bad, lease, outside, fixed, missing, garbled, scalar] = await Promise.all([
    put(JSON.stringify({ locations: [{ path: '/', upstream: 'ftp://10.0.0.1/' }] })),
    put('lease_ttl_s: soon\nlocations: [{path: /, upstream: "http://10.0.0.1"}]\n'),
    put('{"locations":[{"path":"/","upstream":"http://8.8.8.8/"}]}'),
    cli(['hosts', 'rm', API_HOST, '--config', tcp.file]),
    // The file itself: unreadable, not YAML, not an entry.
    put('', join(tcp.dir, 'nope.json')),
    put('{"locations": ['),
    put('42\n'),
  ]);
  t.equal(bad.code, 1);
  t.match(bad.stderr, /^edgeway: 400 invalid_field: locations\[0\]\.upstream: /);
  t.equal(lease.code, 1);
  t.match(lease.stderr, /^edgeway: 400 invalid_field: lease_ttl_s: /);
  t.equal(outside.code, 1);
  t.match(outside.stderr, /^edgeway: 400 invalid_field: locations\[0\]\.upstream: .*allowed_upstreams/);
  t.equal(fixed.code, 1);
  t.match(fixed.stderr, /^edgeway: 409 static_entry: /);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /nope\.json: cannot read \(ENOENT\)/);
  t.equal(garbled.code, 1);
  t.match(garbled.stderr, /^edgeway: stdin:\d+:\d+: /);
  t.equal(scalar.code, 1);
  t.match(scalar.stderr, /expected one host entry/);
  const after = await cli(['hosts', 'get', UC_HOST, '--config', tcp.file]);
  t.equal(after.code, 1, 'nothing was stored');
  t.match(after.stderr, '404 not_found');
});

t.test('tokens: --token and EDGEWAY_TOKEN are sent, never printed', async (t) => {
  const user = await cli(['token', '--config', tcp.file, '--user', 'u1', '--scope', 'edge:admin']);
  t.equal(user.code, 0, user.stderr);
  const token = user.stdout.trim();
  const viaEnv = await cli(['hosts', 'list', '--config', tcp.file], { env: { EDGEWAY_TOKEN: token } });
  t.equal(viaEnv.code, 1);
  t.equal(viaEnv.stderr, 'edgeway: 403 forbidden: the token does not grant this\n', 'a user token may not manage hosts');
  const viaFlag = await cli(['hosts', 'get', ORG_HOST, '--token', `${token}x`, '--config', tcp.file]);
  t.equal(viaFlag.code, 1);
  t.equal(viaFlag.stderr, 'edgeway: 401 unauthorized: a valid token is required\n');
  for (const r of [viaEnv, viaFlag]) t.notMatch(r.stdout + r.stderr, token.slice(-20));

  // An organization token sees and changes only its own org's hosts.
  const org = (await cli(['token', '--config', tcp.file, '--org', ORG])).stdout.trim();
  const [mine, theirs] = await Promise.all([
    cli(['hosts', 'list', '--json', '--config', tcp.file], { env: { EDGEWAY_TOKEN: org } }),
    cli(['hosts', 'get', ORG2_HOST, '--config', tcp.file], { env: { EDGEWAY_TOKEN: org } }),
  ]);
  t.equal(mine.code, 0, mine.stderr);
  t.same((JSON.parse(mine.stdout) as { host: string }[]).map((e) => e.host), [ORG_HOST], 'not the static api host');
  t.equal(theirs.code, 1);
  t.equal(theirs.stderr, 'edgeway: 403 forbidden: the token does not grant this\n');

  // A platform token from `edgeway token` works with --admin and no config at all.
  const platform = (await cli(['token', '--config', tcp.file, '--platform'])).stdout.trim();
  const r = await cli(['hosts', 'list', '--json', '--admin', `http://${tcp.admin}/`, '--token', platform], { env: { EDGEWAY_CONFIG: '/nonexistent/edgeway.yaml' } });
  t.equal(r.code, 0, r.stderr);
  t.same(JSON.parse(r.stdout), await api('/v1/hosts'));
});

t.test('admin API down: exit 1 naming the address', async (t) => {
  const port = await freePort();
  const r = await cli(['hosts', 'list', '--admin', `127.0.0.1:${port}`, '--config', tcp.file]);
  t.equal(r.code, 1);
  t.equal(r.stderr, `edgeway: cannot reach the admin API at 127.0.0.1:${port} (ECONNREFUSED): is edgeway running?\n`);
  const sock = join(tcp.dir, 'absent.sock');
  const u = await cli(['resolve', `https://${ORG_HOST}/`, '--admin', `unix:${sock}`, '--token', 'x']);
  t.equal(u.code, 1);
  t.equal(u.stderr, `edgeway: cannot reach the admin API at unix:${sock} (ENOENT): is edgeway running?\n`);
});

t.test('bad usage: exit 2 with the usage', async (t) => {
  // Every case in-process (each is refused before any connection)…
  const cases: [typeof hostsCommand, string[]][] = [
    [hostsCommand, []],
    [hostsCommand, ['frob']],
    [hostsCommand, ['get']],
    [hostsCommand, ['rm']],
    [hostsCommand, ['put', ORG_HOST]],
    [hostsCommand, ['put', '--file', join(tcp.dir, 'edgeway.yaml')]],
    [hostsCommand, ['list', '--bogus']],
    [hostsCommand, ['list', 'extra']],
    [hostsCommand, ['get', ORG_HOST, 'extra']],
    [hostsCommand, ['get', ORG_HOST, '--file', 'x.json']],
    [hostsCommand, ['list', '--admin', 'nonsense']],
    [hostsCommand, ['list', '--admin', 'https://127.0.0.1:9900']],
    [hostsCommand, ['list', '--admin', '127.0.0.1:0']],
    [hostsCommand, ['list', '--token', ' ']],
    [resolveCommand, []],
    [resolveCommand, ['https://a.example.test/', 'https://b.example.test/']],
    [resolveCommand, [`https://${ORG_HOST}/`, '--sni']],
  ];
  for (const [command, args] of cases) {
    const err = await command([...args, '--config', tcp.file]).then(() => undefined, (e: unknown) => e);
    t.ok(err instanceof CliError && err.exitCode === 2, `${command.name} ${args.join(' ')}: ${String(err)}`);
  }
  // …and a few as the real command line: exit 2, the reason, then the usage.
  const spawned = await Promise.all([
    cli(['hosts', '--config', tcp.file]),
    cli(['resolve', '--config', tcp.file]),
    cli(['hosts', 'put', '--file', '-', '--config', tcp.file], { input: '{}' }),
    cli(['--config', tcp.file, 'hosts', 'list']),
    cli(['hosts', 'list', '--config', join(tcp.dir, 'absent.yaml')]),
  ]);
  for (const r of spawned.slice(0, 4)) {
    t.equal(r.code, 2, r.stderr.split('\n')[0]);
    t.match(r.stderr, /^edgeway: [^]+\nusage:\n/);
  }
  t.equal(spawned[4]!.code, 2);
  t.match(spawned[4]!.stderr, /absent\.yaml: cannot read the config file \(ENOENT\)/);
});

t.test('--help lists every command', async (t) => {
  const r = await cli(['--help']);
  t.equal(r.code, 0);
  for (const s of ['edgeway [run] --config FILE', 'hosts list', 'hosts get HOST', 'hosts put [HOST] --file FILE', 'hosts rm HOST', 'resolve URL [--sni NAME]', 'edgeway token', '--platform', '--org ORG_ID', '--user USER_ID', '--admin', '--token', '--json']) {
    t.match(r.stdout, s);
  }
});

t.test('over the unix-socket admin listener, address from the config', async (t) => {
  const c = ['--config', unix.file];
  const put = await cli(['hosts', 'put', ORG_HOST, '--file', '-', ...c], { input: JSON.stringify(ENTRY) });
  t.equal(put.code, 0, put.stderr);
  t.match(put.stdout, `created ${ORG_HOST} (version 1`);
  const list = JSON.parse((await cli(['hosts', 'list', '--json', ...c])).stdout) as { host: string }[];
  t.same(list.map((e) => e.host), [API_HOST, ORG_HOST]);
  const view = await cli(['hosts', 'get', ORG_HOST, ...c]);
  t.match(view.stdout, /^version: +1$/m);
  const res = await cli(['resolve', `https://${ORG_HOST}/`, '--json', ...c]);
  t.equal(res.code, 0, res.stderr);
  t.match(JSON.parse(res.stdout), { decision: 'routed', entry: { host: ORG_HOST }, location: { path: '/' } });
  t.equal((await cli(['hosts', 'rm', ORG_HOST, ...c])).code, 0);
  const gone = await cli(['hosts', 'get', ORG_HOST, ...c]);
  t.equal(gone.code, 1);
  t.equal(gone.stderr, `edgeway: 404 not_found: no host entry for ${ORG_HOST}\n`);
  // The same socket named with --admin.
  const direct = await cli(['hosts', 'list', '--admin', unix.admin, ...c]);
  t.match(direct.stdout, /^HOST +SOURCE/);
});
