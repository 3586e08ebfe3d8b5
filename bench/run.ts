// `npm run bench`: edgeway side by side with nginx (two-stage and single-stage)
// and Caddy, all on 127.0.0.1, driven by wrk. See bench/README.md.
//
//   BENCH_SECONDS   seconds per measured run (default 10)
//   BENCH_ROUNDS    rounds; every round runs every target once per scenario (default 3)
//   BENCH_WARMUP    warm-up seconds per target and scenario (default 5)
//   BENCH_SCENARIOS comma list of a64,a256,b,c,d,g (default all)
//   BENCH_SCALE_HOSTS hosts registered for the large table of (g) (default 100000)
//   BENCH_WORKERS2  0 to leave out the `workers: 2` edgeway target (default 1)
//   BENCH_UNDICI    1 to add `edgeway-w1-undici` (proxy.forwarder: undici), the "before" of bench/NOTES.md

import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { signToken } from '../src/auth/jwt.js';
import { loadJwtKeys } from '../src/auth/keys.js';
import { loadConfig } from '../src/config/load.js';
import { CLK_TCK, cpuSeconds, memoryKb, processTree, runWrk } from './load.js';
import {
  BODY, makeCert, request, startCaddy, startEdgeway, startNginxSingle, startNginxTwoStage, startUpstream, stopAll, version, which,
  type EdgewayTarget, type Target,
} from './peers.js';
import { ratios, summarize, svg, table, type Sample } from './report.js';

const env = (k: string, d: number): number => {
  const v = process.env[k];
  const n = v === undefined || v === '' ? d : Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${k}: expected a number, got ${v}`);
  return n;
};
const SECONDS = env('BENCH_SECONDS', 10);
const ROUNDS = Math.max(1, Math.floor(env('BENCH_ROUNDS', 3)));
const WARMUP = env('BENCH_WARMUP', 5);
const SCALE_HOSTS = Math.max(10, Math.floor(env('BENCH_SCALE_HOSTS', 100_000)));
const WORKERS2 = env('BENCH_WORKERS2', 1) !== 0;
const WANTED = new Set((process.env['BENCH_SCENARIOS'] ?? 'a64,a256,b,c,d,g').split(',').map((s) => s.trim()));

const ORG = '7f3a0000-0000-4000-8000-0000000000b1';
const UC = '1b4e8f0a-0000-4000-8000-0000000000c1';
const ORG_HOST = `org-${ORG}.localhost`;
const UC_HOST = `uc-${UC}.org-${ORG}.localhost`;

const notes: string[] = [];
const say = (s: string): void => {
  console.log(s);
  notes.push(s);
};

const wrk = which('wrk');
if (!wrk) {
  console.log('wrk is not installed: nothing can drive the load, so no benchmark ran (Debian: apt-get install wrk). autocannon is not used.');
  process.exit(0);
}
const hasNginx = which('nginx') !== undefined;
const hasCaddy = which('caddy') !== undefined;
if (!hasNginx) say('nginx is not installed: nginx two-stage and single-stage are skipped, the upstream is a node:http server');
if (!hasCaddy) say('caddy is not installed: Caddy is skipped');

const dir = await mkdtemp(join(os.tmpdir(), 'edgeway-bench-'));
let interrupted = false;
process.on('SIGINT', () => {
  interrupted = true;
  console.log('\ninterrupted: stopping everything');
  void stopAll().then(() => process.exit(130));
});

async function platformToken(e: EdgewayTarget): Promise<string> {
  const cfg = await loadConfig(e.configFile);
  return signToken(await loadJwtKeys(cfg), cfg.auth.jwt, { type: 'platform', scope: ['edge:admin'] }, 3600);
}

async function admin(e: EdgewayTarget, tok: string, method: string, path: string, body: unknown): Promise<void> {
  const r = await fetch(`${e.adminUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await r.text();
  if (r.status >= 300) throw new Error(`${e.name}: ${method} ${path} answered ${r.status}: ${text.slice(0, 500)}`);
}

function entries(upstreamUrl: string): unknown[] {
  return [
    { host: ORG_HOST, access: 'public', locations: [{ path: '/', upstream: upstreamUrl }] },
    { host: UC_HOST, locations: [{ path: '/', upstream: upstreamUrl, access: { scope: 'uc:{uc_id}:access' } }] },
  ];
}

/** Registers the org and uc hosts plus `extra` filler uc hosts (POST /v1/batch in chunks), returns the session cookie from a handoff. */
async function prepareEdgeway(e: EdgewayTarget, upstreamUrl: string, extra: number): Promise<string> {
  const tok = await platformToken(e);
  await admin(e, tok, 'POST', '/v1/batch', { put: entries(upstreamUrl) });
  const CHUNK = 5000;
  const t0 = performance.now();
  for (let done = 0; done < extra; ) {
    const n = Math.min(CHUNK, extra - done);
    const put = Array.from({ length: n }, () => ({
      host: `uc-${randomUUID()}.org-${ORG}.localhost`,
      access: 'public',
      locations: [{ path: '/', upstream: upstreamUrl }],
    }));
    await admin(e, tok, 'POST', '/v1/batch', { put });
    done += n;
  }
  if (extra >= 1000) say(`${e.name}: registered ${extra + 2} hosts in ${((performance.now() - t0) / 1000).toFixed(1)} s (POST /v1/batch, 5,000 a chunk)`);
  // The login handoff (src/auth/handoff.ts): a short-lived user token in the
  // query with a state nonce that equals the state cookie → 302 + session cookie.
  const cfg = await loadConfig(e.configFile);
  const user = signToken(await loadJwtKeys(cfg), cfg.auth.jwt, { type: 'user', sub: 'bench-user', scope: [`uc:${UC}:access`] }, 60);
  const nonce = randomBytes(16).toString('base64url');
  const r = await request(e.httpsPort, UC_HOST, `/?edgeway_state=${nonce}&edgeway_token=${user}`, { cookie: `edgeway_state=${nonce}` });
  const set = ([] as string[]).concat(r.headers['set-cookie'] ?? []).find((c) => c.startsWith('edgeway_token='));
  if (r.status !== 302 || !set) throw new Error(`${e.name}: the handoff answered ${r.status} without a session cookie: ${r.body.slice(0, 300)}`);
  return set.slice('edgeway_token='.length, set.indexOf(';'));
}

interface Scenario {
  readonly id: string;
  readonly label: string;
  readonly connections: number;
  readonly plain: boolean;
  readonly host: string;
  readonly close: boolean;
  readonly cookie: boolean;
  readonly expect: number;
  readonly targets: Target[];
}

const started: Target[] = [];
const cookies = new Map<string, string>();
let samples: Sample[] = [];
const scenarios: Scenario[] = [];
let upstreamKind = '';
let urlHost = '127.0.0.1';

try {
  const up = await startUpstream(join(dir, 'upstream'));
  upstreamKind = up.kind;
  const upstreamUrl = `http://127.0.0.1:${up.port}`;
  const cert = await makeCert(join(dir, 'cert'), ORG);
  say(`upstream: ${up.kind} on 127.0.0.1:${up.port}, 200 with a ${BODY.length}-byte body`);

  const resolved = await lookup(UC_HOST, { family: 4 }).catch(() => undefined);
  if (resolved?.address === '127.0.0.1') {
    urlHost = UC_HOST;
    say(`${UC_HOST} resolves to 127.0.0.1: wrk connects by that name, so it sends SNI for it`);
  } else {
    say(`*.localhost does not resolve here (getent hosts fails): wrk connects to 127.0.0.1 with a Host header; SNI is "127.0.0.1" or absent, so edgeway serves its fallback certificate (fine for throughput)`);
  }

  const main: Target[] = [];
  const e1 = await startEdgeway(join(dir, 'edgeway-w1'), { name: 'edgeway-w1', workers: 1, tlsMode: 'self-signed' });
  started.push(e1);
  main.push(e1);
  cookies.set(e1.name, await prepareEdgeway(e1, upstreamUrl, 0));
  if (process.env['BENCH_UNDICI'] === '1') {
    const eu = await startEdgeway(join(dir, 'edgeway-w1-undici'), { name: 'edgeway-w1-undici', workers: 1, tlsMode: 'self-signed', forwarder: 'undici' });
    started.push(eu);
    main.push(eu);
    cookies.set(eu.name, await prepareEdgeway(eu, upstreamUrl, 0));
  }
  if (WORKERS2) {
    const e2 = await startEdgeway(join(dir, 'edgeway-w2'), { name: 'edgeway-w2', workers: 2, tlsMode: 'self-signed' });
    started.push(e2);
    main.push(e2);
    cookies.set(e2.name, await prepareEdgeway(e2, upstreamUrl, 0));
  }
  if (hasNginx) {
    const n2 = await startNginxTwoStage(join(dir, 'nginx-2stage'), up.port, cert);
    const n1 = await startNginxSingle(join(dir, 'nginx-1stage'), up.port, cert);
    started.push(n2, n1);
    main.push(n2, n1);
  }
  if (hasCaddy) {
    const c = await startCaddy(join(dir, 'caddy'), up.port, cert);
    started.push(c);
    main.push(c);
  }
  say(`targets: ${main.map((t) => t.name).join(', ')}; nginx runs worker_processes auto (${os.cpus().length} cores here), the two stages as two nginx instances`);

  const withHttp = main.filter((t) => t.httpPort !== undefined);
  const base = { close: false, cookie: false, plain: false, expect: 200, host: ORG_HOST };
  if (WANTED.has('a64')) scenarios.push({ ...base, id: 'a64', label: 'TLS keep-alive, uc host, scope access, session cookie, c64', connections: 64, host: UC_HOST, cookie: true, targets: main });
  if (WANTED.has('a256')) scenarios.push({ ...base, id: 'a256', label: 'TLS keep-alive, uc host, scope access, session cookie, c256', connections: 256, host: UC_HOST, cookie: true, targets: main });
  if (WANTED.has('b')) scenarios.push({ ...base, id: 'b', label: 'TLS keep-alive, public org host, c64', connections: 64, targets: main });
  if (WANTED.has('c')) {
    scenarios.push({ ...base, id: 'c', label: 'plain HTTP keep-alive, c64: every target answers 308 to https', connections: 64, plain: true, expect: 308, targets: withHttp });
    say('(c) plain HTTP: edgeway answers 308 on plain HTTP by design, so (c) measures the plain-HTTP listener answering 308 on every target (nginx: `return 308`, Caddy: `redir … 308`); nginx two-stage is left out (its stage 1 is the single-stage listener)');
  }
  if (WANTED.has('d')) scenarios.push({ ...base, id: 'd', label: 'new TLS connection per request (Connection: close), public org host, c64: handshakes/s', connections: 64, close: true, targets: main });

  if (WANTED.has('g')) {
    const small = await startEdgeway(join(dir, 'edgeway-10hosts'), { name: 'edgeway-10hosts', workers: 1, tlsMode: 'files', cert });
    started.push(small);
    cookies.set(small.name, await prepareEdgeway(small, upstreamUrl, 8));
    const large = await startEdgeway(join(dir, 'edgeway-100khosts'), { name: 'edgeway-100khosts', workers: 1, tlsMode: 'files', cert });
    started.push(large);
    cookies.set(large.name, await prepareEdgeway(large, upstreamUrl, SCALE_HOSTS - 2));
    scenarios.push({ ...base, id: 'g', label: `(a) c64 with 10 vs ${SCALE_HOSTS.toLocaleString('en-US')} hosts registered`, connections: 64, host: UC_HOST, cookie: true, targets: [small, large] });
    say(`(g) uses two edgeway instances (workers: 1) in tls.mode files with one wildcard certificate, not self-signed: minting ~${SCALE_HOSTS} leaves at ~600/s would take minutes; the target named edgeway-100khosts holds ${SCALE_HOSTS} hosts`);
  }

  const peerCookie = cookies.get('edgeway-w1')!;
  const headersFor = (s: Scenario, t: Target): Record<string, string> => {
    const h: Record<string, string> = { Host: s.host };
    if (s.cookie) h['Cookie'] = `edgeway_token=${cookies.get(t.name) ?? peerCookie}`;
    if (s.close) h['Connection'] = 'close';
    return h;
  };
  const urlFor = (s: Scenario, t: Target): string =>
    s.plain ? `http://${urlHost}:${t.httpPort}/` : `https://${urlHost}:${t.httpsPort}/`;

  // Each (scenario, target) answers as expected before anything is measured.
  for (const s of scenarios) {
    const ok: Target[] = [];
    for (const t of s.targets) {
      const h = headersFor(s, t);
      const { Host, ...rest } = h;
      const r = await request(s.plain ? t.httpPort! : t.httpsPort, Host!, '/', rest, !s.plain).catch((e: Error) => ({ status: 0, body: e.message }));
      if (r.status === s.expect && (s.expect !== 200 || r.body === BODY)) ok.push(t);
      else say(`(${s.id}) ${t.name}: answered ${r.status} (${r.body.slice(0, 120)}), expected ${s.expect}: left out of this scenario`);
    }
    (s as { targets: Target[] }).targets = ok;
  }

  const measure = async (s: Scenario, t: Target, seconds: number, round: number): Promise<Sample | undefined> => {
    const pids = processTree(t.pids);
    const cpu0 = cpuSeconds(pids);
    const w = await runWrk(wrk, { url: urlFor(s, t), headers: headersFor(s, t), connections: s.connections, seconds });
    const cpu1 = cpuSeconds(pids);
    if (round < 0) return undefined;
    const mem = memoryKb(pids);
    return {
      scenario: s.id,
      target: t.name,
      round,
      requests: w.requests,
      rps: Math.round(w.rps),
      p50_ms: w.p50_ms,
      p99_ms: w.p99_ms,
      cpu_us_per_req: w.requests > 0 ? Math.round(((cpu1 - cpu0) * 1e6 * 100) / w.requests) / 100 : NaN,
      hwm_kb: mem.hwm_kb,
      rss_kb: mem.rss_kb,
      errors: w.errors,
      non_2xx_3xx: w.non_2xx_3xx,
    };
  };

  const total = scenarios.reduce((n, s) => n + s.targets.length, 0);
  console.log(`\n${total} runs a round, ${ROUNDS} rounds of ${SECONDS} s, ${WARMUP} s warm-up each: about ${Math.ceil((total * (ROUNDS * SECONDS + WARMUP)) / 60)} min`);
  if (WARMUP > 0) {
    for (const s of scenarios) for (const t of s.targets) await measure(s, t, WARMUP, -1);
  }
  for (let round = 0; round < ROUNDS && !interrupted; round++) {
    for (const s of scenarios) {
      // Alternate: each round starts with a different target.
      const order = s.targets.map((_, i) => s.targets[(i + round) % s.targets.length]!);
      for (const t of order) {
        const x = (await measure(s, t, SECONDS, round))!;
        samples.push(x);
        console.log(
          `round ${round + 1}/${ROUNDS} (${s.id}) ${t.name.padEnd(18)} ${String(x.rps).padStart(7)} req/s  p50 ${x.p50_ms.toFixed(2)} ms  p99 ${x.p99_ms.toFixed(2)} ms  ${x.cpu_us_per_req.toFixed(1)} µs CPU/req${x.errors || x.non_2xx_3xx ? `  errors ${x.errors} non-2xx/3xx ${x.non_2xx_3xx}` : ''}`,
        );
      }
    }
  }
} finally {
  for (const t of started.reverse()) await t.stop().catch(() => undefined);
  await stopAll();
  await rm(dir, { recursive: true, force: true }).catch(() => undefined);
}

samples = samples.filter((s) => Number.isFinite(s.rps));
const summaries = summarize(samples);
const pairs: { scenario: string; target: string; versus: string }[] = [];
for (const s of scenarios) {
  const names = s.targets.map((t) => t.name);
  if (s.id === 'g') {
    if (names.length === 2) pairs.push({ scenario: 'g', target: names[1]!, versus: names[0]! });
    continue;
  }
  for (const e of names.filter((n) => n.startsWith('edgeway'))) {
    for (const p of names.filter((n) => !n.startsWith('edgeway'))) pairs.push({ scenario: s.id, target: e, versus: p });
  }
  // The lean path against its "before" (bench/NOTES.md), same run, same rounds.
  if (names.includes('edgeway-w1-undici') && names.includes('edgeway-w1')) pairs.push({ scenario: s.id, target: 'edgeway-w1', versus: 'edgeway-w1-undici' });
}
const rs = ratios(samples, pairs);
console.log(`\n${table(summaries, rs)}\n`);

const commit = ((): string => {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    return 'nogit';
  }
})();
const date = new Date().toISOString().slice(0, 10);
const resultsDir = new URL('../../bench/results/', import.meta.url); // from dist/bench/ to the repo's bench/results/
mkdirSync(resultsDir, { recursive: true });
const stem = `${date}-${commit}`;
const labels = Object.fromEntries(scenarios.map((s) => [s.id, s.label]));
writeFileSync(
  new URL(`${stem}.json`, resultsDir),
  JSON.stringify(
    {
      benchmark: 'edgeway vs nginx and Caddy (npm run bench)',
      date: new Date().toISOString(),
      commit,
      machine: { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, kernel: os.release(), clk_tck: CLK_TCK },
      versions: {
        node: process.version,
        wrk: version(wrk, ['-v']),
        nginx: hasNginx ? version(which('nginx')!, ['-v']) : null,
        caddy: hasCaddy ? version(which('caddy')!, ['version']) : null,
        openssl: version('openssl', ['version']),
      },
      settings: { seconds: SECONDS, rounds: ROUNDS, warmup_s: WARMUP, wrk_threads: 1, scale_hosts: SCALE_HOSTS, upstream: upstreamKind, url_host: urlHost },
      scenarios: Object.fromEntries(scenarios.map((s) => [s.id, { label: s.label, connections: s.connections, targets: s.targets.map((t) => t.name) }])),
      notes,
      summary: summaries,
      ratios: rs,
      samples,
    },
    null,
    2,
  ) + '\n',
);
writeFileSync(
  new URL(`${stem}.svg`, resultsDir),
  svg(summaries, `edgeway vs nginx and Caddy, median req/s (${date}, ${commit}, ${ROUNDS}×${SECONDS} s, wrk -t1)`, labels),
);
console.log(`wrote bench/results/${stem}.json and bench/results/${stem}.svg`);
