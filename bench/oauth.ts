// OAuth throughput (issue 7 "Speed"): `authenticate` and `introspect` at
// least 10,000 requests/s on loopback from one client with keep-alive, and
// the full code flow (authorize + token) at least 500 per second.
//
// edgeway runs as its own process (`node dist/src/main.js`, `workers: 1`,
// self-signed TLS, access log off, data_dir in a temp dir). The client for
// `authenticate` and `introspect` is wrk (one thread, CONNECTIONS keep-alive
// TLS connections, as bench/run.ts uses it), because a Node client on the
// same two cores saturates before edgeway does (a profile showed edgeway 30%
// idle behind an undici client); any non-2xx answer fails the run. Without
// wrk, and always for the code flow (two dependent requests per flow), the
// client is this process: one undici Pool with CONNECTIONS keep-alive TLS
// connections, every answer checked (status and body).
//
//   npm run bench:oauth          (BENCH_SECONDS, BENCH_CONNECTIONS to change the defaults)
//
// Results: bench/results/oauth-<date>.json, with the load average at start:
// the machine is shared, and a busy one lowers every figure here.

import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { stringify } from 'yaml';
import { signToken } from '../src/auth/jwt.js';
import { loadJwtKeys } from '../src/auth/keys.js';
import { loadConfig } from '../src/config/load.js';

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 5);
const CONNECTIONS = Number(process.env['BENCH_CONNECTIONS'] ?? 32);
const ORG = '7f3a0000-0000-4000-8000-000000000002';
const DOMAIN = 'example.test';
const HOST = `org-${ORG}.${DOMAIN}`;
const MAIN = fileURLToPath(new URL('../src/main.js', import.meta.url));
const CB = `https://${HOST}/cb`;
const SECRET = randomBytes(24).toString('hex');

const freePort = (): Promise<number> => new Promise((resolve) => {
  const s = createServer().listen(0, '127.0.0.1', () => {
    const p = (s.address() as { port: number }).port;
    s.close(() => resolve(p));
  });
});

const dir = mkdtempSync(join(os.tmpdir(), 'edgeway-bench-oauth-'));
const port = await freePort();
const file = join(dir, 'edgeway.yaml');
writeFileSync(file, stringify({
  domain: DOMAIN, workers: 1, data_dir: 'data', routes_dir: 'routes',
  listen: { https: `127.0.0.1:${port}`, http: '127.0.0.1:0', admin: '127.0.0.1:0' },
  log: { level: 'info', access_log: false },
}));
mkdirSync(join(dir, 'routes'));
// BENCH_NODE_ARGS: extra node flags for edgeway (e.g. --cpu-prof --cpu-prof-dir=/tmp/prof).
const nodeArgs = (process.env['BENCH_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');
const child = spawn(process.execPath, [...nodeArgs, MAIN, '--config', file], { stdio: ['ignore', 'pipe', 'inherit'] });
const stop = (): void => {
  child.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
};
const adminAddr = await new Promise<string>((resolve, reject) => {
  let buf = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => {
    buf += s;
    for (const line of buf.split('\n')) {
      if (line.includes('"edgeway listening"')) resolve((JSON.parse(line) as { admin: string }).admin);
    }
  });
  child.once('exit', (code) => reject(new Error(`edgeway exited with ${code}`)));
});

const cfg = await loadConfig(file);
const keys = await loadJwtKeys(cfg);
const platform = signToken(keys, cfg.auth.jwt, { type: 'platform', scope: ['edge:admin'] }, 3600);
const user = signToken(keys, cfg.auth.jwt, { type: 'user', sub: 'bench-user', scope: [`org:${ORG}:member`] }, 3600);
async function adminPut(path: string, body: unknown): Promise<void> {
  const r = await fetch(`http://${adminAddr}${path}`, { method: 'PUT', headers: { authorization: `Bearer ${platform}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (r.status >= 300) throw new Error(`${path}: ${r.status} ${await r.text()}`);
}
await adminPut(`/v1/hosts/${HOST}`, { locations: [{ path: '/', upstream: 'http://127.0.0.1:9' }, { path: '/oauth', service: 'oauth' }] });
await adminPut('/v1/oauth/clients/bench-conf', { org_id: ORG, redirect_uris: [CB], scopes: ['read'], secret: SECRET });
await adminPut('/v1/oauth/clients/bench-pub', { org_id: ORG, redirect_uris: [CB], scopes: ['read'] });

const ca = readFileSync(join(cfg.data_dir, 'ca', 'edgeway-local-ca.crt'), 'utf8');
const pool = new Pool(`https://127.0.0.1:${port}`, { connections: CONNECTIONS, connect: { ca, servername: HOST }, pipelining: 1 });
const hostHeader = `${HOST}:${port}`;
const basic = 'Basic ' + Buffer.from(`bench-conf:${SECRET}`).toString('base64');
const form = { 'content-type': 'application/x-www-form-urlencoded', host: hostHeader };

async function req(method: string, path: string, headers: Record<string, string>, body?: string): Promise<{ status: number; headers: Record<string, unknown>; text: string }> {
  const r = await pool.request({ method: method as 'GET', path, headers: { host: hostHeader, ...headers }, ...(body === undefined ? {} : { body }) });
  return { status: r.statusCode, headers: r.headers, text: await r.body.text() };
}

const verifier = randomBytes(32).toString('base64url');
const challenge = createHash('sha256').update(verifier).digest('base64url');
async function codeFlow(): Promise<string> {
  const a = await req('GET', `/oauth/authorize?response_type=code&client_id=bench-pub&redirect_uri=${encodeURIComponent(CB)}&code_challenge=${challenge}&code_challenge_method=S256&state=s`, { authorization: `Bearer ${user}` });
  const code = a.status === 302 ? new URL(String(a.headers['location'])).searchParams.get('code') : null;
  if (code === null) throw new Error(`authorize: ${a.status} ${a.text}`);
  const t = await req('POST', '/oauth/token', form, `grant_type=authorization_code&client_id=bench-pub&code=${code}&redirect_uri=${encodeURIComponent(CB)}&code_verifier=${verifier}`);
  if (t.status !== 200) throw new Error(`token: ${t.status} ${t.text}`);
  return (JSON.parse(t.text) as { access_token: string }).access_token;
}

const access = await codeFlow();
async function authenticate(): Promise<void> {
  const r = await req('GET', '/oauth/authenticate', { authorization: `Bearer ${access}` });
  if (r.status !== 200) throw new Error(`authenticate: ${r.status} ${r.text}`);
}
async function introspect(): Promise<void> {
  const r = await req('POST', '/oauth/introspect', { ...form, authorization: basic }, `token=${access}`);
  if (r.status !== 200 || !r.text.startsWith('{"active":true')) throw new Error(`introspect: ${r.status} ${r.text}`);
}

/** edgeway's CPU seconds so far (user + system, /proc; clock ticks of 10 ms), or NaN off Linux. */
function cpuSeconds(): number {
  try {
    const f = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / 100; // fields 14 and 15 of stat(5)
  } catch {
    return NaN;
  }
}

/** wrk -t1 against one endpoint; undefined when wrk is not installed. */
function wrk(name: string, method: string, path: string, headers: Record<string, string>, body: string | undefined): Record<string, number> | undefined {
  const script = join(dir, `${name}.lua`);
  const lua = [`wrk.method = ${JSON.stringify(method)}`, ...Object.entries({ Host: hostHeader, ...headers }).map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`)];
  if (body !== undefined) lua.push(`wrk.body = ${JSON.stringify(body)}`);
  writeFileSync(script, lua.join('\n') + '\n');
  const r = spawnSync('wrk', ['-t1', `-c${CONNECTIONS}`, `-d${SECONDS}s`, '--latency', '-s', script, `https://127.0.0.1:${port}${path}`], { encoding: 'utf8' });
  if (r.error !== undefined) return undefined;
  const out = r.stdout;
  if (/Non-2xx or 3xx responses|Socket errors/.test(out)) throw new Error(`wrk ${name}: errors\n${out}`);
  const ms = (p: string): number => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(out);
    if (m === null) return NaN;
    const v = Number(m[1]);
    return Math.round((m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v) * 100) / 100;
  };
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const count = Number(/(\d+) requests in/.exec(out)?.[1]);
  const res = { per_second: Math.round(rps), count, p50_ms: ms('50'), p99_ms: ms('99') };
  console.log(`${names[name]!.padEnd(28)} ${String(res.per_second).padStart(7)}/s   p50 ${res.p50_ms} ms   p99 ${res.p99_ms} ms   (${count} in ${SECONDS} s, wrk -t1 -c${CONNECTIONS})`);
  return res;
}

/** `concurrency` loops calling `op` for `seconds`; operations per second and latency percentiles. */
async function run(name: string, op: () => Promise<unknown>, concurrency: number, seconds: number): Promise<Record<string, number>> {
  const until = performance.now() + 1000; // warm-up, not counted
  await Promise.all(Array.from({ length: concurrency }, async () => { while (performance.now() < until) await op(); }));
  const lat: number[] = [];
  const start = performance.now();
  const end = start + seconds * 1000;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      await op();
      lat.push(performance.now() - t0);
    }
  }));
  const secs = (performance.now() - start) / 1000;
  lat.sort((a, b) => a - b);
  const pct = (p: number): number => Math.round(lat[Math.min(lat.length - 1, Math.floor(lat.length * p))]! * 100) / 100;
  const r = { per_second: Math.round(lat.length / secs), count: lat.length, p50_ms: pct(0.5), p99_ms: pct(0.99) };
  console.log(`${name.padEnd(28)} ${String(r.per_second).padStart(7)}/s   p50 ${r.p50_ms} ms   p99 ${r.p99_ms} ms   (${r.count} in ${secs.toFixed(1)} s, ${concurrency} in flight)`);
  return r;
}

const load = os.loadavg()[0]!;
console.log(`edgeway workers: 1 on 127.0.0.1:${port}; ${CONNECTIONS} keep-alive TLS connections from one client; load average ${load.toFixed(2)} on ${os.availableParallelism()} cores`);
// BENCH_ONLY=introspect (etc.) runs one scenario and records nothing.
const only = process.env['BENCH_ONLY'];
const scenarios = { authenticate, introspect, code_flow: codeFlow };
const names: Record<string, string> = { authenticate: 'authenticate', introspect: 'introspect (Basic, cached)', code_flow: 'code flow (authorize+token)' };
const results: Record<string, Record<string, number>> = {};
const viaWrk: Record<string, () => Record<string, number> | undefined> = {
  authenticate: () => wrk('authenticate', 'GET', '/oauth/authenticate', { authorization: `Bearer ${access}` }, undefined),
  introspect: () => wrk('introspect', 'POST', '/oauth/introspect', { 'content-type': 'application/x-www-form-urlencoded', authorization: basic }, `token=${access}`),
};
let client = 'wrk -t1 (authenticate, introspect), undici Pool (code flow)';
for (const [key, op] of Object.entries(scenarios)) {
  if (only !== undefined && only !== key) continue;
  // Both checked once through undici first: the wrk run counts answers, not their bodies.
  if (key !== 'code_flow') await op();
  const cpu0 = cpuSeconds();
  let r = viaWrk[key]?.();
  if (r === undefined) {
    if (key !== 'code_flow') client = 'undici Pool';
    r = await run(names[key]!, op, CONNECTIONS, SECONDS);
  }
  // On a shared machine req/s says as much about the neighbours as about
  // edgeway; requests per CPU-second of edgeway's process is what one
  // dedicated core would serve (the run's warm-up included, so it is low).
  const cpu = cpuSeconds() - cpu0;
  const perCpu = Math.round(r['count']! / cpu);
  console.log(`${''.padEnd(28)} edgeway used ${cpu.toFixed(2)} CPU-s: ${perCpu} per CPU-second`);
  results[key] = { ...r, edgeway_cpu_s: Math.round(cpu * 100) / 100, per_cpu_second: perCpu };
}
await pool.close();
stop();
if (only !== undefined) process.exit(0);

const out = new URL('../../bench/results/', import.meta.url); // from dist/bench/ to the repo's bench/results/
mkdirSync(out, { recursive: true });
const date = new Date().toISOString().slice(0, 10);
writeFileSync(new URL(`oauth-${date}.json`, out), JSON.stringify({
  date: new Date().toISOString(), node: process.version, cpus: os.availableParallelism(), load_average_1m: load,
  seconds: SECONDS, connections: CONNECTIONS, client, targets_per_second: { authenticate: 10_000, introspect: 10_000, code_flow: 500 }, results,
}, null, 2) + '\n');
