// Admin API write throughput (issue 3, "Speed": at least 5,000 acknowledged,
// fsynced host PUTs per second from 16 concurrent clients on loopback, thanks
// to group commit). Spawns edgeway (workers: 1, self-signed) on 127.0.0.1 and
// runs two phases of ~5 s, each in a fresh process on the same data_dir:
//   - new hosts: every PUT creates a host (self-signed mode mints its leaf);
//   - replace: every PUT replaces one of the hosts the first phase created
//     (restored from disk by the restart, so that is measured too).
// Reports acknowledged PUTs/s, p50/p99 latency, and fsyncs/s (from the
// journal totals edgeway logs when it stops), and writes
// bench/results/admin-puts-<date>.json.
// Run: npm run build && node dist/bench/admin-puts.js [seconds]

import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { stringify } from 'yaml';
import { signToken } from '../src/auth/jwt.js';
import { loadJwtKeys } from '../src/auth/keys.js';
import { loadConfig } from '../src/config/load.js';

/** CPU time (user + system) of a process so far, ms (Linux /proc, 100 ticks/s). */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

const CLIENTS = 16;
const SECONDS = Number(process.argv[2] ?? 5);
const DOMAIN = 'example.test';
const MAIN = fileURLToPath(new URL('../src/main.js', import.meta.url));

interface Proc {
  readonly admin: string;
  readonly pid: number;
  /** Resolves with the journal totals logged at stop. */
  stop(): Promise<Record<string, number>>;
  readonly startMs: number;
}

/** Spawns edgeway and waits for its "edgeway listening" line. */
async function start(file: string): Promise<Proc> {
  const t0 = performance.now();
  // BENCH_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof' profiles edgeway itself.
  const nodeArgs = (process.env['BENCH_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');
  const child = spawn(process.execPath, [...nodeArgs, MAIN, '--config', file], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  let buf = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => {
    buf += c;
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        continue;
      }
      for (const w of waiters.splice(0)) w();
    }
  });
  const waitFor = (msg: string): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const l = lines.find((x) => x['msg'] === msg);
        if (l) return resolve(l);
        if (child.exitCode !== null) return reject(new Error(`edgeway exited before "${msg}"`));
        waiters.push(check);
      };
      child.once('exit', () => waiters.forEach((w) => w()));
      check();
    });
  const listening = await waitFor('edgeway listening');
  return {
    admin: `http://${String(listening['admin'])}`,
    pid: child.pid!,
    startMs: performance.now() - t0,
    async stop() {
      const closed = waitFor('state journal closed');
      child.kill('SIGTERM');
      const rec = await closed;
      await new Promise((r) => child.once('exit', r));
      return rec as Record<string, number>;
    },
  };
}

function body(host: string, n: number): string {
  return JSON.stringify({ host, access: 'public', locations: [{ path: '/', upstream: `http://10.0.${(n >> 8) & 255}.${n & 255}:8080` }] });
}

const hostName = (c: number, i: number): string =>
  `uc-1b4e8f0a-0000-4000-8000-${(c * 1_000_000 + i).toString(16).padStart(12, '0')}.org-7f3a0000-0000-4000-8000-${c.toString(16).padStart(12, '0')}.${DOMAIN}`;

interface Phase {
  name: string;
  seconds: number;
  acked: number;
  failed: number;
  puts_per_s: number;
  p50_ms: number;
  p99_ms: number;
  fsyncs: number;
  fsyncs_per_s: number;
  records_per_fsync: number;
  /** CPU edgeway used per acknowledged PUT, and the bench's own clients (same machine). */
  server_cpu_us_per_put: number;
  client_cpu_us_per_put: number;
  start_ms: number;
}

/** 16 clients PUT for `seconds`; `pick(c, i)` names the host of client c's i-th PUT. */
async function phase(name: string, file: string, token: string, pick: (c: number, i: number) => string): Promise<{ phase: Phase; written: number[] }> {
  const proc = await start(file);
  const pool = new Pool(proc.admin, { connections: CLIENTS, pipelining: 1 });
  const latencies: number[] = [];
  const written = new Array<number>(CLIENTS).fill(0);
  let failed = 0;
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const t0 = performance.now();
  const cpu0 = cpuMs(proc.pid);
  const client0 = process.cpuUsage();
  const end = t0 + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      for (let i = 0; performance.now() < end; i++) {
        const host = pick(c, i);
        const s = performance.now();
        const res = await pool.request({ method: 'PUT', path: `/v1/hosts/${host}`, headers, body: body(host, i) });
        await res.body.dump();
        if (res.statusCode === 200 || res.statusCode === 201) {
          latencies.push(performance.now() - s);
          written[c] = Math.max(written[c]!, i + 1);
        } else failed++;
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const serverCpu = cpuMs(proc.pid) - cpu0;
  const client = process.cpuUsage(client0);
  await pool.close();
  const stats = await proc.stop();
  latencies.sort((a, b) => a - b);
  const q = (p: number): number => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN;
  return {
    phase: {
      name,
      seconds,
      acked: latencies.length,
      failed,
      puts_per_s: Math.round(latencies.length / seconds),
      p50_ms: q(0.5),
      p99_ms: q(0.99),
      fsyncs: stats['fsyncs']!,
      fsyncs_per_s: Math.round(stats['fsyncs']! / seconds),
      records_per_fsync: stats['records']! / Math.max(1, stats['fsyncs']!),
      server_cpu_us_per_put: Math.round((serverCpu * 1000) / Math.max(1, latencies.length)),
      client_cpu_us_per_put: Math.round((client.user + client.system) / Math.max(1, latencies.length)),
      start_ms: proc.startMs,
    },
    written,
  };
}

const dir = await mkdtemp(join(os.tmpdir(), 'edgeway-bench-'));
try {
  await mkdir(join(dir, 'routes'));
  const file = join(dir, 'edgeway.yaml');
  await writeFile(
    file,
    stringify({
      domain: DOMAIN,
      listen: { https: '127.0.0.1:0', http: '127.0.0.1:0', admin: '127.0.0.1:0' },
      workers: 1,
      data_dir: 'data',
      routes_dir: 'routes',
      log: { level: 'info', access_log: false },
      auth: { jwt: { secret: 'admin-puts-bench-secret-0123456789abcdef' } },
    }),
  );
  const cfg = await loadConfig(file);
  const token = signToken(await loadJwtKeys(cfg), cfg.auth.jwt, { type: 'platform', scope: ['edge:admin'] }, 3600);

  const created = await phase('new hosts (self-signed: a leaf minted per PUT)', file, token, hostName);
  // Each client cycles through the hosts it created (at least one each).
  const replace = await phase('replace existing hosts', file, token, (c, i) => hostName(c, i % Math.max(1, created.written[c]!)));
  const phases = [created.phase, replace.phase];

  const fmt = (n: number, d = 1): string => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
  console.log(`admin API PUTs, ${CLIENTS} concurrent clients, ${SECONDS} s per phase, fsync before each 2xx (node ${process.version}, ${os.cpus().length} cores)\n`);
  console.log('phase                                          |   PUTs/s |  p50 ms |  p99 ms | fsyncs/s | PUTs/fsync | edgeway CPU µs/PUT | client CPU µs/PUT');
  console.log('-----------------------------------------------|----------|---------|---------|----------|------------|--------------------|------------------');
  for (const p of phases) {
    console.log(
      [
        p.name.padEnd(46),
        fmt(p.puts_per_s, 0).padStart(8),
        fmt(p.p50_ms, 2).padStart(7),
        fmt(p.p99_ms, 2).padStart(7),
        fmt(p.fsyncs_per_s, 0).padStart(8),
        fmt(p.records_per_fsync, 1).padStart(10),
        fmt(p.server_cpu_us_per_put, 0).padStart(18),
        fmt(p.client_cpu_us_per_put, 0).padStart(17),
      ].join(' | '),
    );
  }
  console.log(`\ntarget: 5,000 acknowledged PUTs/s; restart with ${created.phase.acked} hosts took ${fmt(replace.phase.start_ms, 0)} ms to "listening"`);

  const date = new Date().toISOString().slice(0, 10);
  const out = new URL('../../bench/results/', import.meta.url); // from dist/bench/ to the repo's bench/results/
  mkdirSync(out, { recursive: true });
  const report = {
    benchmark: 'admin-puts',
    date: new Date().toISOString(),
    node: process.version,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    loadavg_1m: os.loadavg()[0],
    clients: CLIENTS,
    seconds_per_phase: SECONDS,
    target_puts_per_s: 5000,
    phases,
  };
  const target = new URL(`admin-puts-${date}.json`, out);
  writeFileSync(target, JSON.stringify(report, null, 2) + '\n');
  console.log(`written to ${fileURLToPath(target)}`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
