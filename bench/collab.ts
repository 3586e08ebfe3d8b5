// Issue 6 "Speed": the collab relay side by side with the reference server
// (@y/websocket-server 0.1.1 with y-leveldb persistence, YPERSISTENCE), each
// in its own process, under the same load from this process:
// ROOMS rooms x CLIENTS clients (10,000 websockets by default) on loopback,
// every client speaking y-websocket (sync step 1 at open, updates). Rounds at
// fixed total update rates; per round: fan-out latency p50/p99 (send to
// receipt at every OTHER client of the room), receipts missing, and the rate
// actually sent. "Sustained" is the highest rate whose round delivered every
// receipt with p99 <= 10 ms. RSS per room: the server's RSS growth from
// before the clients connected to after the last round, divided by ROOMS
// (sockets included: 10 per room).
//
// edgeway runs as in production: `workers: 1`, wss through its TLS listener,
// routing and access check (a bearer token) on every upgrade. The reference
// speaks plain ws (no TLS), which favours it.
//
//   npm run bench:collab [-- --rooms 1000 --clients 10 --rates 500,1000,2000,4000 --seconds 10]

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import WebSocket from 'ws';
import * as Y from 'yjs';
import * as encoding from 'lib0/encoding';
import { probe, type ProbeWindow } from './collab-probe.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const main = join(here, '..', 'src', 'main.js');
const ORG = '7f3a0000-0000-4000-8000-000000000002';
const HOST = `org-${ORG}.example.test`;

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? def : process.argv[i + 1]!;
}
const ROOMS = Number(arg('rooms', '1000'));
const CLIENTS = Number(arg('clients', '10'));
const RATES = arg('rates', '500,1000,2000,4000').split(',').map(Number);
const SECONDS = Number(arg('seconds', '10'));
const ONLY = arg('only', 'edgeway,relay,reference').split(',');

// Every server gets the same probe (event-loop delay, GC), and this process
// measures itself with it: is the p99 the server's or the load generator's?
const PROBE_ARGS = ['--import', join(here, 'collab-probe.js')];
const probeEnv = (dir: string): NodeJS.ProcessEnv => ({ ...process.env, EDGEWAY_BENCH_PROBE: join(dir, 'probe.json') });

/** The server's probe window (event-loop delay, GC) since the last call. */
async function serverProbe(t: Target): Promise<ProbeWindow> {
  process.kill(t.pid, 'SIGUSR2');
  await new Promise((r) => setTimeout(r, 200));
  return JSON.parse(await readFile(t.probeFile, 'utf8')) as ProbeWindow;
}

interface Target {
  readonly probeFile: string;
  readonly name: string;
  readonly pid: number;
  readonly url: (room: string) => string;
  readonly opts: WebSocket.ClientOptions;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], env });
    let out = '';
    c.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    c.once('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`${args.join(' ')} exited ${code}`))));
  });
}

async function stopChild(child: ChildProcess, dir: string): Promise<void> {
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  await rm(dir, { recursive: true, force: true });
}

async function startEdgeway(): Promise<Target> {
  const dir = await mkdtemp(join(tmpdir(), 'edgeway-bench-collab-'));
  await mkdir(join(dir, 'routes'));
  const cfgFile = join(dir, 'edgeway.yaml');
  await writeFile(cfgFile, `domain: example.test\nlisten: { https: "127.0.0.1:0", http: "127.0.0.1:0", admin: "127.0.0.1:0" }\nworkers: 1\ndata_dir: data\nroutes_dir: routes\nlog: { level: info, access_log: false }\n`);
  const child = spawn(process.execPath, [...PROBE_ARGS, main, '--config', cfgFile], { stdio: ['ignore', 'pipe', 'inherit'], env: probeEnv(dir) });
  const listening = await new Promise<{ https: string; admin: string }>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (l) => {
      if (l.includes('"edgeway listening"')) resolve(JSON.parse(l) as { https: string; admin: string });
    });
    child.once('exit', (code) => reject(new Error(`edgeway exited ${code}`)));
  });
  const ca = await readFile(join(dir, 'data', 'ca', 'edgeway-local-ca.crt'), 'utf8');
  const platform = await run(process.execPath, [main, 'token', '--config', cfgFile, '--platform']);
  const user = await run(process.execPath, [main, 'token', '--config', cfgFile, '--user', 'bench', '--scope', `org:${ORG}:member`, '--ttl', '86400']);
  const res = await fetch(`http://${listening.admin}/v1/hosts/${HOST}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${platform}`, 'content-type': 'application/json' },
    body: JSON.stringify({ locations: [{ path: '/collab/yjs', service: 'collab' }] }),
  });
  if (res.status !== 201) throw new Error(`PUT host: ${res.status}`);
  const port = Number(listening.https.split(':').pop());
  return {
    name: 'edgeway (wss, workers: 1)',
    probeFile: join(dir, 'probe.json'),
    pid: child.pid!,
    url: (room) => `wss://${HOST}:${port}/collab/yjs/${room}`,
    // ws passes `lookup` on to tls.connect: every name resolves to loopback.
    opts: ({
      ca: [ca],
      headers: { authorization: `Bearer ${user}` },
      lookup: ((_h: string, o: { all?: boolean }, cb: (...a: unknown[]) => void) => (o.all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4))) as never,
      perMessageDeflate: false,
    }) as WebSocket.ClientOptions,
    stop: () => stopChild(child, dir),
  };
}

async function startReference(): Promise<Target> {
  const dir = await mkdtemp(join(tmpdir(), 'edgeway-bench-ref-'));
  const port = await freePort();
  const server = join(root, 'node_modules', '@y', 'websocket-server', 'src', 'server.js');
  const child = spawn(process.execPath, [...PROBE_ARGS, server], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...probeEnv(dir), HOST: '127.0.0.1', PORT: String(port), YPERSISTENCE: join(dir, 'db') } });
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (l) => {
      if (l.includes('running at')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`reference exited ${code}`)));
  });
  return { name: '@y/websocket-server 0.1.1 (ws, YPERSISTENCE)', probeFile: join(dir, 'probe.json'), pid: child.pid!, url: (room) => `ws://127.0.0.1:${port}/${room}`, opts: { perMessageDeflate: false }, stop: () => stopChild(child, dir) };
}

/** CPU seconds (user + system) the process has used so far. */
async function cpuSeconds(pid: number): Promise<number> {
  const f = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

async function startRelayPlain(): Promise<Target> {
  const dir = await mkdtemp(join(tmpdir(), 'edgeway-bench-relay-'));
  const child = spawn(process.execPath, [...PROBE_ARGS, join(here, 'collab-relay-server.js'), dir], { stdio: ['ignore', 'pipe', 'inherit'], env: probeEnv(dir) });
  const port = await new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (l) => {
      if (l.startsWith('listening ')) resolve(Number(l.slice(10)));
    });
    child.once('exit', (code) => reject(new Error(`relay exited ${code}`)));
  });
  return { name: 'edgeway relay alone (ws)', probeFile: join(dir, 'probe.json'), pid: child.pid!, url: (room) => `ws://127.0.0.1:${port}/${room}`, opts: { perMessageDeflate: false }, stop: () => stopChild(child, dir) };
}

async function rssKb(pid: number): Promise<number> {
  const s = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(s)![1]);
}

// --- the load ----------------------------------------------------------------

const MARK = Buffer.from('~bm');
const STEP1_EMPTY = (() => {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, 0);
  encoding.writeVarUint(e, 0);
  encoding.writeVarUint8Array(e, Y.encodeStateVector(new Y.Doc()));
  return encoding.toUint8Array(e);
})();

interface Client {
  readonly ws: WebSocket;
  readonly room: number;
  /** Its own map key: concurrent sets of ONE key would make the losers garbage (and unmarked) at once. */
  readonly key: string;
  doc: Y.Doc | undefined;
  synced: boolean;
}

/** Send time (ms, performance.now) of update `seq`, and how many receipts it still expects. */
const sentAt: number[] = [];
/** Who sent update `seq`: its own echo (the reference sends one) is not a fan-out receipt. */
const sentBy: Client[] = [];
const latencies: number[] = [];
let receipts = 0;

function onMessage(c: Client, data: Buffer): void {
  // Only sync updates carry a marker; everything else is ignored.
  if (data[0] !== 0 || data[1] !== 2) return;
  const at = data.indexOf(MARK);
  if (at === -1) return;
  const seq = Number(data.toString('latin1', at + 3, at + 13));
  const t0 = sentAt[seq];
  if (t0 === undefined || sentBy[seq] === c) return;
  latencies.push(performance.now() - t0);
  receipts++;
}

function update(c: Client, seq: number): Uint8Array {
  c.doc ??= new Y.Doc();
  let out: Uint8Array | undefined;
  const h = (u: Uint8Array): void => {
    out = u;
  };
  c.doc.on('update', h);
  c.doc.getMap('m').set(c.key, `~bm${String(seq).padStart(10, '0')}`);
  c.doc.off('update', h);
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, 0);
  encoding.writeVarUint(e, 2);
  encoding.writeVarUint8Array(e, out!);
  return encoding.toUint8Array(e);
}

async function connectAll(target: Target): Promise<Client[]> {
  closingAll = false;
  const clients: Client[] = [];
  const total = ROOMS * CLIENTS;
  let next = 0;
  const open = async (): Promise<void> => {
    while (next < total) {
      const i = next++;
      const room = i % ROOMS;
      const ws = new WebSocket(target.url(`room-${room}`), target.opts);
      const c: Client = { ws, room, key: `c${i}`, doc: undefined, synced: false };
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => {
          ws.send(STEP1_EMPTY);
          resolve();
        });
        ws.once('error', reject);
      });
      ws.on('message', (d: Buffer) => {
        if (d[0] === 0 && d[1] === 1) c.synced = true;
        else onMessage(c, d);
      });
      ws.on('close', (code) => {
        if (!closingAll) console.error(`client of room ${room} closed: ${code}`);
      });
      clients.push(c);
    }
  };
  await Promise.all(Array.from({ length: 64 }, open));
  const deadline = Date.now() + 120_000;
  while (clients.some((c) => !c.synced) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  return clients;
}
let closingAll = false;

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function round(target: Target, clients: Client[], rate: number) {
  const pid = target.pid;
  await serverProbe(target);
  probe.report();
  const cpu0 = await cpuSeconds(pid);
  latencies.length = 0;
  receipts = 0;
  const byRoom: Client[][] = Array.from({ length: ROOMS }, () => []);
  for (const c of clients) byRoom[c.room]!.push(c);
  const TICK = 10;
  const perTick = (rate * TICK) / 1000;
  let owed = 0;
  let k = 0;
  let sent = 0;
  const started = performance.now();
  let seqBase = sentAt.length;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const elapsed = performance.now() - started;
      if (elapsed >= SECONDS * 1000) {
        clearInterval(timer);
        resolve();
        return;
      }
      owed += perTick;
      while (owed >= 1) {
        owed--;
        const room = byRoom[k % ROOMS]!;
        const c = room[Math.floor(k / ROOMS) % room.length]!;
        k++;
        const seq = seqBase++;
        const msg = update(c, seq);
        sentBy[seq] = c;
        sentAt[seq] = performance.now();
        c.ws.send(msg);
        sent++;
      }
    }, TICK);
  });
  const sendSeconds = (performance.now() - started) / 1000;
  // Let the last updates arrive.
  const expected = sent * (CLIENTS - 1);
  const until = Date.now() + 5000;
  while (receipts < expected && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  const sorted = latencies.slice().sort((a, b) => a - b);
  const cpu = (await cpuSeconds(pid)) - cpu0;
  const client = probe.report();
  const server = await serverProbe(target);
  return {
    client, server,
    rate, sent, sentPerS: Math.round(sent / sendSeconds), p50: pct(sorted, 50), p99: pct(sorted, 99), max: sorted[sorted.length - 1] ?? NaN,
    missing: expected - receipts, server_cpu_ms_per_update: Number(((cpu * 1000) / Math.max(1, sent)).toFixed(3)),
  };
}

async function benchTarget(start: () => Promise<Target>) {
  const target = await start();
  try {
    await new Promise((r) => setTimeout(r, 500));
    const rss0 = await rssKb(target.pid);
    const t0 = performance.now();
    const clients = await connectAll(target);
    const connectS = (performance.now() - t0) / 1000;
    const unsynced = clients.filter((c) => !c.synced).length;
    console.log(`${target.name}: ${clients.length} clients connected and synced in ${connectS.toFixed(1)} s (${unsynced} not synced)`);
    const rounds = [];
    for (const rate of RATES) {
      const r = await round(target, clients, rate);
      console.log(`  ${rate}/s: sent ${r.sentPerS}/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, max ${r.max.toFixed(1)} ms, receipts missing ${r.missing}, server CPU ${r.server_cpu_ms_per_update} ms/update`);
      console.log(`    load generator: ${JSON.stringify(r.client)}\n    server: ${JSON.stringify(r.server)}`);
      rounds.push(r);
    }
    const rss1 = await rssKb(target.pid);
    closingAll = true;
    for (const c of clients) c.ws.terminate();
    const ok = rounds.filter((r) => r.missing === 0 && r.p99 <= 10);
    return {
      target: target.name,
      connect_s: Number(connectS.toFixed(1)),
      rounds,
      sustained_at_p99_10ms: ok.length === 0 ? 0 : Math.max(...ok.map((r) => r.sentPerS)),
      rss_kb_per_room: Math.round((rss1 - rss0) / ROOMS),
      rss_mb: { before: Math.round(rss0 / 1024), after: Math.round(rss1 / 1024) },
    };
  } finally {
    await target.stop();
  }
}

async function mainBench(): Promise<void> {
  const results = [];
  if (ONLY.includes('edgeway')) results.push(await benchTarget(startEdgeway));
  if (ONLY.includes('relay')) results.push(await benchTarget(startRelayPlain));
  if (ONLY.includes('reference')) results.push(await benchTarget(startReference));
  const date = new Date().toISOString().slice(0, 10);
  const out = { date, rooms: ROOMS, clients_per_room: CLIENTS, seconds_per_round: SECONDS, rates: RATES, cores: (await import('node:os')).cpus().length, results };
  await mkdir(join(root, 'bench', 'results'), { recursive: true });
  const file = join(root, 'bench', 'results', `collab-${date}.json`);
  await writeFile(file, `${JSON.stringify(out, null, 2)}\n`);
  console.log('\n| server | rate offered | sent/s | p50 ms | p99 ms | receipts missing | server CPU ms/update |\n|---|---|---|---|---|---|---|');
  for (const r of results) for (const x of r.rounds) console.log(`| ${r.target} | ${x.rate} | ${x.sentPerS} | ${x.p50.toFixed(2)} | ${x.p99.toFixed(2)} | ${x.missing} | ${x.server_cpu_ms_per_update} |`);
  console.log('\n| server | sustained updates/s at p99 <= 10 ms, nothing missing | RSS per room (KB, 10 sockets included) |\n|---|---|---|');
  for (const r of results) console.log(`| ${r.target} | ${r.sustained_at_p99_10ms} | ${r.rss_kb_per_room} |`);
  console.log(`\nwritten to ${file}`);
}

await mainBench();
