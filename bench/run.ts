// `npm run bench`: edgeway side by side with nginx (two-stage and single-stage)
// and Caddy, all on 127.0.0.1, driven by wrk. See bench/README.md.
//
//   BENCH_SECONDS   seconds per measured run (default 10, wrk's own; also (i) and the minimum load of (f))
//   BENCH_ROUNDS    rounds; every round runs every target once per scenario (default 3)
//   BENCH_WARMUP    warm-up seconds per target and wrk scenario (default 5)
//   BENCH_SCENARIOS comma list of a64,a256,b,c,d,e,f,g,h,i (default all)
//   BENCH_SCALE_HOSTS hosts registered for the large table of (g) (default 100000)
//   BENCH_WORKERS2  0 to leave out the `workers: 2` edgeway target (default 1)
//   BENCH_UNDICI    1 to add `edgeway-w1-undici` (proxy.forwarder: undici), the "before" of bench/NOTES.md
//   BENCH_NOFAST    1 to add `edgeway-w1-nofast` (proxy.fast_lane: false: node:http serves every request)
//   BENCH_WS_IDLE   idle websockets of (e) (default 10000, fewer if the open-file limit is lower)
//   BENCH_WS_ECHO   websockets of (i) (default 64)
//   BENCH_STREAM_MIB MiB streamed each way in (h) (default 1024)
//   BENCH_CHURN_CHANGES, BENCH_CHURN_RELOADS  (f): edgeway admin changes (1000), nginx reloads (20)
//   BENCH_EXTRA_PEERS 1 adds nginx single-stage and Caddy to (e), (h), (i) (default 0)

import { execFileSync } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { CLK_TCK, cpuSeconds, memoryKb, processTree, runWrk } from './load.js';
import {
  BODY, makeCert, request, startCaddy, startEdgeway, startNginxSingle, startNginxTwoStage, startNodeUpstream, startUpstream, stopAll, version, which,
  type EdgewayTarget, type Target,
} from './peers.js';
import { extraScenarios, openFileLimit, type Extra } from './extra-scenarios.js';
import { metricRatios, metricTable, ratios, summarize, summarizeMetrics, svg, table, type Metric, type Sample } from './report.js';
import { ORG, ORG_HOST, UC_HOST, prepareEdgeway, type Upstreams } from './setup.js';

const env = (k: string, d: number): number => {
  const v = process.env[k];
  const n = v === undefined || v === '' ? d : Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${k}: expected a number, got ${v}`);
  return n;
};
// 10 s, wrk's default: every measured run opens its connections anew, and at
// c256 those handshakes (about 130 ms of one core for edgeway, less for nginx)
// took 1-2% of a 5 s run, which is where a p99 sits; (a) is the keep-alive
// scenario, handshakes are (d)'s to measure (bench/NOTES.md, "run length").
const SECONDS = env('BENCH_SECONDS', 10);
const ROUNDS = Math.max(1, Math.floor(env('BENCH_ROUNDS', 3)));
const WARMUP = env('BENCH_WARMUP', 5);
const SCALE_HOSTS = Math.max(10, Math.floor(env('BENCH_SCALE_HOSTS', 100_000)));
const WORKERS2 = env('BENCH_WORKERS2', 1) !== 0;
const WANTED = new Set((process.env['BENCH_SCENARIOS'] ?? 'a64,a256,b,c,d,e,f,g,h,i').split(',').map((s) => s.trim()));
const NEEDS_NODE = ['e', 'f', 'h', 'i'].some((x) => WANTED.has(x));

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
const metrics: Metric[] = [];
const scenarios: Scenario[] = [];
let extras: Extra[] = [];
let wsIdle = 0;
let upstreamKind = '';
let urlHost = '127.0.0.1';

try {
  const up = await startUpstream(join(dir, 'upstream'));
  upstreamKind = up.kind;
  const upstreamUrl = `http://127.0.0.1:${up.port}`;
  const cert = await makeCert(join(dir, 'cert'), ORG);
  say(`upstream: ${up.kind} on 127.0.0.1:${up.port}, 200 with a ${BODY.length}-byte body`);
  const nodeUp = NEEDS_NODE ? await startNodeUpstream(join(dir, 'node-upstream')) : undefined;
  if (nodeUp) say(`node upstream for (e) (f) (h) (i): websocket echo and streams on 127.0.0.1:${nodeUp.port} (its own process, not counted); every target proxies /ws and /stream of the uc host to it`);
  const ups: Upstreams = { main: upstreamUrl, ...(nodeUp ? { node: `http://127.0.0.1:${nodeUp.port}` } : {}) };
  const peerOpts = nodeUp ? { nodePort: nodeUp.port } : {};

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
  cookies.set(e1.name, (await prepareEdgeway(e1, ups, 0)).cookie);
  if (process.env['BENCH_UNDICI'] === '1') {
    const eu = await startEdgeway(join(dir, 'edgeway-w1-undici'), { name: 'edgeway-w1-undici', workers: 1, tlsMode: 'self-signed', forwarder: 'undici' });
    started.push(eu);
    main.push(eu);
    cookies.set(eu.name, (await prepareEdgeway(eu, ups, 0)).cookie);
  }
  if (process.env['BENCH_NOFAST'] === '1') {
    const en = await startEdgeway(join(dir, 'edgeway-w1-nofast'), { name: 'edgeway-w1-nofast', workers: 1, tlsMode: 'self-signed', noFastLane: true });
    started.push(en);
    main.push(en);
    cookies.set(en.name, (await prepareEdgeway(en, ups, 0)).cookie);
  }
  if (WORKERS2) {
    const e2 = await startEdgeway(join(dir, 'edgeway-w2'), { name: 'edgeway-w2', workers: 2, tlsMode: 'self-signed' });
    started.push(e2);
    main.push(e2);
    cookies.set(e2.name, (await prepareEdgeway(e2, ups, 0)).cookie);
  }
  if (hasNginx) {
    const n2 = await startNginxTwoStage(join(dir, 'nginx-2stage'), up.port, cert, peerOpts);
    const n1 = await startNginxSingle(join(dir, 'nginx-1stage'), up.port, cert, peerOpts);
    started.push(n2, n1);
    main.push(n2, n1);
  }
  if (hasCaddy) {
    const c = await startCaddy(join(dir, 'caddy'), up.port, cert, peerOpts);
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
    cookies.set(small.name, (await prepareEdgeway(small, { main: upstreamUrl }, 8)).cookie);
    const large = await startEdgeway(join(dir, 'edgeway-100khosts'), { name: 'edgeway-100khosts', workers: 1, tlsMode: 'files', cert });
    started.push(large);
    const { cookie, fillSeconds } = await prepareEdgeway(large, { main: upstreamUrl }, SCALE_HOSTS - 2);
    cookies.set(large.name, cookie);
    say(`${large.name}: registered ${SCALE_HOSTS} hosts in ${fillSeconds.toFixed(1)} s (POST /v1/batch, 5,000 a chunk)`);
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

  if (nodeUp) {
    const fdMax = Math.floor((openFileLimit() - 300) / 2);
    wsIdle = Math.floor(env('BENCH_WS_IDLE', Math.min(10_000, fdMax)));
    if (WANTED.has('e') && wsIdle < 10_000) say(`(e) holds ${wsIdle} websockets, not 10,000: a process may open ${openFileLimit()} files here and a proxy holds two per websocket (raise the hard limit, ulimit -n, to get 10,000)`);
    const aLoad: Scenario = { ...base, id: 'f', label: '', connections: 64, host: UC_HOST, cookie: true, targets: [] };
    extras = extraScenarios(WANTED, {
      dir, main, cert, cookies, say,
      upstreams: { ...ups, mainPort: up.port, nodePort: nodeUp.port },
      load: (t, seconds, stop) => runWrk(wrk, { url: urlFor(aLoad, t), headers: headersFor(aLoad, t), connections: 64, seconds }, stop),
    }, {
      seconds: SECONDS,
      wsIdle,
      wsEcho: Math.max(1, Math.floor(env('BENCH_WS_ECHO', 64))),
      streamBytes: Math.max(1, Math.floor(env('BENCH_STREAM_MIB', 1024) * 2 ** 20)),
      churnChanges: Math.max(1, Math.floor(env('BENCH_CHURN_CHANGES', 1000))),
      churnReloads: Math.max(1, Math.floor(env('BENCH_CHURN_RELOADS', 20))),
      allPeers: env('BENCH_EXTRA_PEERS', 0) !== 0,
    });
    for (const x of extras) {
      const ok: string[] = [];
      for (const name of x.targets) if (await x.probe(name)) ok.push(name);
      x.targets = ok;
    }
  }

  const total = scenarios.reduce((n, s) => n + s.targets.length, 0);
  const others = extras.length === 0 ? '' : `, plus ${extras.reduce((n, x) => n + x.targets.length, 0)} runs a round of ${extras.map((x) => x.id).join(', ')} (on 2 busy cores about 2.5 min a round; (e) opens every websocket, (f) waits for every change)`;
  console.log(`\n${total} wrk runs a round, ${ROUNDS} rounds of ${SECONDS} s, ${WARMUP} s warm-up each: about ${Math.ceil((total * (ROUNDS * SECONDS + WARMUP)) / 60)} min${others}`);
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
    for (const x of extras) {
      const order = x.targets.map((_, i) => x.targets[(i + round) % x.targets.length]!);
      for (const name of order) {
        const ms = await x.run(name, round);
        metrics.push(...ms);
        console.log(`round ${round + 1}/${ROUNDS} (${x.id}) ${name.padEnd(18)} ${ms.map((m) => `${m.value} ${m.name}`).join('  ') || 'no figure'}${ms[0]?.detail ? `  (${Object.entries(ms[0].detail).map(([k, v]) => `${k} ${v}`).join(', ')})` : ''}`);
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
  // The fast lane against node:http for every request.
  if (names.includes('edgeway-w1-nofast') && names.includes('edgeway-w1')) pairs.push({ scenario: s.id, target: 'edgeway-w1', versus: 'edgeway-w1-nofast' });
}
const rs = ratios(samples, pairs);
if (summaries.length > 0) console.log(`\n${table(summaries, rs)}\n`);
const metricSums = summarizeMetrics(metrics);
const metricPairs = extras.flatMap((x) =>
  x.targets.filter((n) => n.startsWith('edgeway')).flatMap((e) => x.targets.filter((n) => !n.startsWith('edgeway')).map((p) => ({ scenario: x.id, target: e, versus: p }))),
);
const mrs = metricRatios(metrics, metricPairs);
if (metricSums.length > 0) console.log(`${metricTable(metricSums, mrs)}\n`);

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
const labels = Object.fromEntries([...scenarios, ...extras].map((s) => [s.id, s.label]));
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
      settings: { seconds: SECONDS, rounds: ROUNDS, warmup_s: WARMUP, wrk_threads: 1, scale_hosts: SCALE_HOSTS, upstream: upstreamKind, url_host: urlHost, ws_idle: wsIdle },
      scenarios: Object.fromEntries([
        ...scenarios.map((s) => [s.id, { label: s.label, connections: s.connections, targets: s.targets.map((t) => t.name) }]),
        ...extras.map((x) => [x.id, { label: x.label, targets: x.targets }]),
      ]),
      notes,
      summary: summaries,
      ratios: rs,
      samples,
      other_summary: metricSums,
      other_ratios: mrs,
      other_samples: metrics,
    },
    null,
    2,
  ) + '\n',
);
writeFileSync(
  new URL(`${stem}.svg`, resultsDir),
  svg(summaries, `edgeway vs nginx and Caddy, median req/s (${date}, ${commit}, ${ROUNDS}×${SECONDS} s, wrk -t1)`, labels, metricSums),
);
console.log(`wrote bench/results/${stem}.json and bench/results/${stem}.svg`);
