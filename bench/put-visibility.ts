// Issue 3 "Speed": a PUT followed at once by a request through the proxy sees
// the new upstream, 1,000 times out of 1,000. Two upstreams alternate; every
// PUT switches the host to the other one and the very next HTTPS request
// (a fresh TLS connection, so nothing is cached on the client side) must
// reach it. Runs in one process (workers: 1) and with `workers: 2`, where the
// answer to the PUT must wait until both workers hold the change.
//
//   npm run build && node dist/bench/put-visibility.js [rounds]

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, mkdir, writeFile, rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const ROUNDS = Number(process.argv[2] ?? 1000);
const HOST = 'org-7f3a0000-0000-4000-8000-000000000002.example.test';
const here = dirname(fileURLToPath(import.meta.url));
const main = join(here, '..', 'src', 'main.js');

async function upstream(name: string): Promise<{ url: string; server: http.Server }> {
  const server = http.createServer((_req, res) => res.end(name));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, server };
}

async function start(workers: number): Promise<{ child: ChildProcess; https: number; admin: string; dir: string; ca: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'edgeway-bench-'));
  await mkdir(join(dir, 'routes'));
  const cfg = `domain: example.test\nlisten: { https: "127.0.0.1:0", http: "127.0.0.1:0", admin: "127.0.0.1:0" }\nworkers: ${workers}\ndata_dir: data\nroutes_dir: routes\nlog: { level: info, access_log: false }\n`;
  await writeFile(join(dir, 'edgeway.yaml'), cfg);
  const child = spawn(process.execPath, [main, '--config', join(dir, 'edgeway.yaml')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  const listening = await new Promise<{ https: string; admin: string }>((resolve, reject) => {
    lines.on('line', (l) => {
      if (l.includes('"edgeway listening"')) resolve(JSON.parse(l) as { https: string; admin: string });
    });
    child.once('exit', (code) => reject(new Error(`edgeway exited ${code}`)));
  });
  const { readFile } = await import('node:fs/promises');
  const ca = await readFile(join(dir, 'data', 'ca', 'edgeway-local-ca.crt'), 'utf8');
  return { child, https: Number(listening.https.split(':').pop()), admin: listening.admin, dir, ca };
}

function token(dir: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [main, 'token', '--config', join(dir, 'edgeway.yaml'), '--platform'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    c.once('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`token exited ${code}`))));
  });
}

function get(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    https
      .get({ host: '127.0.0.1', port, servername: HOST, ca: [ca], headers: { host: HOST }, agent: false }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

async function run(workers: number): Promise<{ workers: number; rounds: number; seen: number; put_p50_ms: number; put_p99_ms: number }> {
  const a = await upstream('a');
  const b = await upstream('b');
  const e = await start(workers);
  const tok = await token(e.dir);
  const times: number[] = [];
  let seen = 0;
  try {
    for (let i = 0; i < ROUNDS; i++) {
      const want = i % 2 === 0 ? 'a' : 'b';
      const t0 = performance.now();
      const res = await fetch(`http://${e.admin}/v1/hosts/${HOST}`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' },
        body: JSON.stringify({ access: 'public', locations: [{ path: '/', upstream: (want === 'a' ? a : b).url }] }),
      });
      await res.arrayBuffer();
      times.push(performance.now() - t0);
      if (res.status >= 300) throw new Error(`PUT answered ${res.status}`);
      if ((await get(e.https, e.ca)) === want) seen++;
    }
  } finally {
    e.child.kill('SIGTERM');
    await new Promise((r) => e.child.once('exit', r));
    a.server.close();
    b.server.close();
    await rm(e.dir, { recursive: true, force: true });
  }
  times.sort((x, y) => x - y);
  const pct = (p: number): number => Math.round(times[Math.min(times.length - 1, Math.floor(times.length * p))]! * 100) / 100;
  return { workers, rounds: ROUNDS, seen, put_p50_ms: pct(0.5), put_p99_ms: pct(0.99) };
}

const results = [await run(1), await run(2)];
for (const r of results) {
  console.log(`workers ${r.workers}: the request right after the PUT saw the new upstream ${r.seen} of ${r.rounds} times; PUT p50 ${r.put_p50_ms} ms, p99 ${r.put_p99_ms} ms`);
}
const out = join(here, '..', '..', 'bench', 'results', `put-visibility-${new Date().toISOString().slice(0, 10)}.json`);
await writeFile(out, `${JSON.stringify({ benchmark: 'put-visibility', date: new Date().toISOString(), node: process.version, results }, null, 2)}\n`);
console.log(`wrote ${out}`);
if (results.some((r) => r.seen !== r.rounds)) process.exitCode = 1;
