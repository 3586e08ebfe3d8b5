// Issue 6 "Speed": the collab relay side by side with the reference server
// (@y/websocket-server 0.1.1 with y-leveldb persistence, YPERSISTENCE), each
// in its own process (bench/collab-targets.ts), under the same load from the
// same load generator: ROOMS rooms x CLIENTS clients (10,000 websockets by
// default) on loopback, spread by whole rooms over PROCS child processes (2
// by default; bench/collab-load.ts), every client a y-websocket peer on the
// wire (sync step 1 at open, the server's step 2 awaited, then updates the
// servers apply and store; bench/collab-wire.ts).
//
// Per round at a fixed total update rate: fan-out latency p50/p99 (send to
// receipt at every OTHER client of the room), receipts missing, the rate
// actually sent, the server's CPU per update, and both sides' event-loop
// delay and GC pauses (bench/collab-probe.ts), so that a p99 can be told to
// come from the server or from the load generator. "Sustained" is the
// highest rate sent whose round delivered every receipt with p99 <= 10 ms.
//
// RSS (after a full GC in the server, `--expose-gc`):
// - per room, total: growth from the idle server to after the last round,
//   divided by ROOMS; includes the room's CLIENTS sockets (TLS for edgeway);
// - sockets alone: a fresh server with the same number of sockets, all in
//   ONE room, synced and idle; per socket = growth / sockets;
// - per room, own: (total growth - sockets-alone growth) / (ROOMS - 1): what
//   the rooms cost beyond their sockets (doc, awareness, store, and whatever
//   buffers the traffic left in the sockets).
//
//   npm run bench:collab [-- --rooms 1000 --clients 10 --rates 500,1000,1500,2000,3000,4000 --seconds 10 --procs 2 --pin on|gen|off --only edgeway,relay,reference]

import { fork, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ConnectCmd } from './collab-load.js';
import type { ProbeWindow } from './collab-probe.js';
import { PROBE, cpuSeconds, pinServers, pinned, startEdgeway, startReference, startRelayPlain, type Target } from './collab-targets.js';
import { checkAgainstYjs } from './collab-wire.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');

const FLAGS = ['rooms', 'clients', 'rates', 'seconds', 'procs', 'tick-ms', 'only', 'pin', 'out'];
// Every argument is `--flag value`: anything else (a typo, `--help`) stops
// here, before a full run of ~11 minutes starts and leaves pinned servers behind.
for (let i = 2; i < process.argv.length; i += 2) {
  const flag = process.argv[i]!;
  if (!flag.startsWith('--') || !FLAGS.includes(flag.slice(2)) || process.argv[i + 1] === undefined) {
    process.stderr.write(`bench:collab: unknown or incomplete argument ${JSON.stringify(flag)}; usage: node dist/bench/collab.js [${FLAGS.map((f) => `--${f} V`).join('] [')}] (bench/README.md)\n`);
    process.exit(2);
  }
}

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? def : process.argv[i + 1]!;
}
const ROOMS = Number(arg('rooms', '1000'));
const CLIENTS = Number(arg('clients', '10'));
const RATES = arg('rates', '500,1000,1500,2000,3000,4000').split(',').map(Number);
const SECONDS = Number(arg('seconds', '10'));
// 2 on a 2-core machine: with 4 the load generator's own scheduling and GC
// showed in the p99 (14.5 ms at 1,000/s against 4.5 ms with 2, edgeway).
const PROCS = Math.min(ROOMS, Number(arg('procs', '2')));
const TICK_MS = Number(arg('tick-ms', '2'));
const ONLY = arg('only', 'edgeway,relay,reference').split(',');
// Server on CPU 0, load generators on the other CPUs (collab-targets.ts
// pinned); `--pin gen`: only the generators, the server free on every CPU.
const PIN_ARG = arg('pin', cpus().length >= 2 ? 'on' : 'off');
const PIN = PIN_ARG !== 'off';
const GEN_CPUS = `1-${cpus().length - 1}`;
// The generators share their core(s) as PROCS processes of thousands of TLS
// sockets each. V8's helper threads (GC, by default several) took turns with
// their main threads there as they did with the server's (bench/NOTES.md
// collab steps 6, 7 and 9: the stall log caught them running through
// generator stalls), and a generator's stall is every receipt's latency.
// EDGEWAY_BENCH_GEN_ARGS replaces these flags (empty: Node's defaults).
const GEN_ARGS = (process.env.EDGEWAY_BENCH_GEN_ARGS ?? '--single-threaded-gc').split(' ').filter((a) => a !== '');
const OUT = arg('out', '');

const lines: string[] = [];
function say(line: string): void {
  console.log(line);
  lines.push(line);
}

interface RoundReply { sent: number; sendSeconds: number; expected: number; receipts: number; latencies: Float64Array; probe: ProbeWindow; cpuSeconds: number }

/** The load-generator children, each holding whole rooms (interleaved: child j has rooms j, j+PROCS, ...). */
class LoadGenerators {
  readonly #children: ChildProcess[] = [];
  readonly #rooms: number[][] = [];

  constructor() {
    for (let j = 0; j < PROCS; j++) {
      const [execPath, execArgv] = pinned(PIN ? GEN_CPUS : undefined, ['--import', PROBE, ...GEN_ARGS]);
      this.#children.push(fork(join(here, 'collab-load.js'), [], { serialization: 'advanced', execPath, execArgv }));
      this.#rooms.push([]);
    }
    for (let r = 0; r < ROOMS; r++) this.#rooms[r % PROCS]!.push(r);
  }

  #ask<T>(j: number, cmd: object): Promise<T> {
    const child = this.#children[j]!;
    return new Promise((resolve, reject) => {
      const onExit = (code: number): void => reject(new Error(`load generator ${j} exited ${code}`));
      child.once('exit', onExit);
      child.once('message', (m) => {
        child.off('exit', onExit);
        resolve(m as T);
      });
      child.send(cmd);
    });
  }

  /** Connects every client (or all of them into one room) and waits until each has the server's sync step 2. */
  async connect(t: Target, oneRoom?: string): Promise<{ clients: number; unsynced: number }> {
    let first = 0;
    const replies = await Promise.all(this.#rooms.map((rooms, j) => {
      const cmd: ConnectCmd = { type: 'connect', url: t.url, rooms, clients: CLIENTS, firstClient: first, opts: t.opts, ...(oneRoom === undefined ? {} : { oneRoom }) };
      first += rooms.length * CLIENTS;
      return this.#ask<{ clients: number; unsynced: number }>(j, cmd);
    }));
    return { clients: replies.reduce((s, r) => s + r.clients, 0), unsynced: replies.reduce((s, r) => s + r.unsynced, 0) };
  }

  round(rate: number): Promise<RoundReply[]> {
    return Promise.all(this.#rooms.map((rooms, j) => this.#ask<RoundReply>(j, { type: 'round', rate: (rate * rooms.length) / ROOMS, seconds: SECONDS, tickMs: TICK_MS })));
  }

  async close(): Promise<void> {
    await Promise.all(this.#children.map((c) => new Promise<void>((resolve) => {
      if (c.exitCode !== null || c.signalCode !== null) return resolve();
      const kill = setTimeout(() => c.kill('SIGKILL'), 10_000);
      c.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      c.send({ type: 'close' });
    })));
  }
}

function pct(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! / 1000;
}
const ms = (x: number): number => Number(x.toFixed(2));

async function round(t: Target, gen: LoadGenerators, rate: number) {
  await t.probe();
  // The machine is shared: what else ran shows here (this bench alone adds ~1).
  const load = Number(loadavg()[0]!.toFixed(2));
  const cpu0 = await cpuSeconds(t.pid);
  const replies = await gen.round(rate);
  const cpu = (await cpuSeconds(t.pid)) - cpu0;
  const server = await t.probe();
  const all = new Float64Array(replies.reduce((s, r) => s + r.latencies.length, 0));
  let at = 0;
  for (const r of replies) {
    all.set(r.latencies, at);
    at += r.latencies.length;
  }
  all.sort();
  const sent = replies.reduce((s, r) => s + r.sent, 0);
  const worst = (f: (p: ProbeWindow) => number): number => Math.max(...replies.map((r) => f(r.probe)));
  return {
    rate, load_average_1m_at_start: load, sent, sentPerS: Math.round(sent / Math.max(...replies.map((r) => r.sendSeconds))),
    p50: ms(pct(all, 50)), p99: ms(pct(all, 99)), max: ms(pct(all, 100)),
    missing: replies.reduce((s, r) => s + r.expected - r.receipts, 0),
    server_cpu_ms_per_update: Number(((cpu * 1000) / Math.max(1, sent)).toFixed(3)),
    // The machine's other half: the load generator shares the cores with the server.
    load_generator_cpu_ms_per_update: Number(((replies.reduce((s, r) => s + r.cpuSeconds, 0) * 1000) / Math.max(1, sent)).toFixed(3)),
    server: { eld_p99_ms: server.eld_p99_ms, eld_max_ms: server.eld_max_ms, gc_count: server.gc_count, gc_total_ms: server.gc_total_ms, gc_max_ms: server.gc_max_ms, gc_max_kind: server.gc_max_kind },
    load_generator_worst_child: { eld_p99_ms: worst((p) => p.eld_p99_ms), eld_max_ms: worst((p) => p.eld_max_ms), gc_total_ms: worst((p) => p.gc_total_ms), gc_max_ms: worst((p) => p.gc_max_ms) },
  };
}

/** One server: connect, the rounds, RSS; then a fresh one with the same sockets idle in one room. */
async function benchTarget(start: () => Promise<Target>) {
  let t = await start();
  let gen = new LoadGenerators();
  let rounds: Awaited<ReturnType<typeof round>>[] = [];
  let connectS = 0;
  let full = 0;
  try {
    await new Promise((r) => setTimeout(r, 500));
    const rss0 = (await t.probe()).rss_kb;
    const t0 = performance.now();
    const c = await gen.connect(t);
    connectS = (performance.now() - t0) / 1000;
    say(`${t.name}: ${c.clients} clients connected and synced in ${connectS.toFixed(1)} s (${c.unsynced} not synced), ${PROCS} load-generator processes (${GEN_ARGS.join(' ') || 'default V8 flags'})${PIN_ARG === 'on' ? ', server pinned to CPU 0' : ''}${PIN ? `, load generators to CPUs ${GEN_CPUS}` : ''}`);
    for (const rate of RATES) {
      const r = await round(t, gen, rate);
      say(`  ${rate}/s: sent ${r.sentPerS}/s, p50 ${r.p50} ms, p99 ${r.p99} ms, max ${r.max} ms, missing ${r.missing}, CPU per update: server ${r.server_cpu_ms_per_update} ms, load generator ${r.load_generator_cpu_ms_per_update} ms (load average ${r.load_average_1m_at_start})`);
      say(`    server: event-loop delay p99 ${r.server.eld_p99_ms} ms, max ${r.server.eld_max_ms} ms; GC ${r.server.gc_count} pauses, ${r.server.gc_total_ms} ms, longest ${r.server.gc_max_ms} ms (${r.server.gc_max_kind})`);
      say(`    load generator (worst child): event-loop delay p99 ${r.load_generator_worst_child.eld_p99_ms} ms, max ${r.load_generator_worst_child.eld_max_ms} ms; GC ${r.load_generator_worst_child.gc_total_ms} ms, longest ${r.load_generator_worst_child.gc_max_ms} ms`);
      rounds.push(r);
    }
    full = (await t.probe()).rss_kb - rss0;
  } finally {
    await gen.close();
    await t.stop();
  }
  t = await start();
  gen = new LoadGenerators();
  let idle = 0;
  let idleHeap = 0;
  try {
    await new Promise((r) => setTimeout(r, 500));
    const before = await t.probe();
    const c = await gen.connect(t, 'room-idle');
    const after = await t.probe();
    idle = after.rss_kb - before.rss_kb;
    idleHeap = after.heap_used_kb - before.heap_used_kb;
    say(`  baseline: ${c.clients} sockets idle in one room (${c.unsynced} not synced): RSS +${Math.round(idle / 1024)} MB, V8 heap +${Math.round(idleHeap / 1024)} MB`);
  } finally {
    await gen.close();
    await t.stop();
  }
  const ok = rounds.filter((r) => r.missing === 0 && r.p99 <= 10);
  return {
    target: t.name, connect_s: Number(connectS.toFixed(1)), rounds,
    sustained_at_p99_10ms: ok.length === 0 ? 0 : Math.max(...ok.map((r) => r.sentPerS)),
    rss_growth_mb: { rooms_with_sockets: Math.round(full / 1024), sockets_idle_in_one_room: Math.round(idle / 1024) },
    rss_kb_per_room_total: Math.round(full / ROOMS),
    rss_kb_per_room_own: Math.round((full - idle) / (ROOMS - 1)),
    rss_kb_per_socket: Number((idle / (ROOMS * CLIENTS)).toFixed(1)),
    heap_kb_per_socket: Number((idleHeap / (ROOMS * CLIENTS)).toFixed(1)),
  };
}

async function mainBench(): Promise<void> {
  checkAgainstYjs();
  pinServers(PIN_ARG === 'on');
  const results = [];
  if (ONLY.includes('edgeway')) results.push(await benchTarget(startEdgeway));
  if (ONLY.includes('relay')) results.push(await benchTarget(startRelayPlain));
  if (ONLY.includes('reference')) results.push(await benchTarget(startReference));
  const date = new Date().toISOString().slice(0, 10);
  const out = { date, rooms: ROOMS, clients_per_room: CLIENTS, seconds_per_round: SECONDS, rates: RATES, load_generator_processes: PROCS, load_generator_node_flags: GEN_ARGS, tick_ms: TICK_MS, pinned: PIN ? { server_cpus: PIN_ARG === 'on' ? '0' : 'all', load_generator_cpus: GEN_CPUS } : false, cores: cpus().length, results };
  say('\n| server | rate offered | sent/s | p50 ms | p99 ms | missing | server CPU ms/update | server loop delay p99/max ms | load gen. loop delay p99/max ms |\n|---|---|---|---|---|---|---|---|---|');
  for (const r of results) {
    for (const x of r.rounds) say(`| ${r.target} | ${x.rate} | ${x.sentPerS} | ${x.p50} | ${x.p99} | ${x.missing} | ${x.server_cpu_ms_per_update} | ${x.server.eld_p99_ms}/${x.server.eld_max_ms} | ${x.load_generator_worst_child.eld_p99_ms}/${x.load_generator_worst_child.eld_max_ms} |`);
  }
  say(`\n| server | sustained updates/s at p99 <= 10 ms, nothing missing | RSS per room, total (KB, its ${CLIENTS} sockets included) | RSS per room, own (KB, sockets excluded) | RSS per idle socket (KB) | V8 heap per idle socket (KB) |\n|---|---|---|---|---|---|`);
  for (const r of results) say(`| ${r.target} | ${r.sustained_at_p99_10ms} | ${r.rss_kb_per_room_total} | ${r.rss_kb_per_room_own} | ${r.rss_kb_per_socket} | ${r.heap_kb_per_socket} |`);
  const base = OUT !== '' ? OUT : join(root, 'bench', 'results', `collab-${date}`);
  await mkdir(dirname(base), { recursive: true });
  await writeFile(`${base}.json`, `${JSON.stringify(out, null, 2)}\n`);
  await writeFile(`${base}.txt`, `${lines.join('\n')}\n`);
  console.log(`\nwritten to ${base}.{json,txt}`);
}

await mainBench();
