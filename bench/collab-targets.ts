// bench:collab, the servers under test (issue 6 "Speed"), each in its own
// process with the same probe preloaded (bench/collab-probe.ts) and
// `--expose-gc`, so that RSS is read after a full collection in every one of
// them alike:
//
// - edgeway as in production: `workers: 1`, wss through its TLS listener,
//   routing and access check (a bearer token) on every upgrade;
// - edgeway's relay alone behind plain ws (bench/collab-relay-server.ts);
// - the reference, @y/websocket-server 0.1.1 with y-leveldb (YPERSISTENCE),
//   plain ws (no TLS), which favours it against edgeway over wss.

import { appendFileSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { withDataPlaneFlags } from '../src/cluster/heap-flags.js';
import type { ConnectCmd } from './collab-load.js';
import type { ProbeReading } from './collab-probe.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const main = join(here, '..', 'src', 'main.js');
const ORG = '7f3a0000-0000-4000-8000-000000000002';
const HOST = `org-${ORG}.example.test`;
export const PROBE = join(here, 'collab-probe.js');

export interface Target {
  readonly name: string;
  readonly pid: number;
  /** `{room}` is replaced by the room's name. */
  readonly url: string;
  readonly opts: ConnectCmd['opts'];
  /** The probe window since the last call, after a full GC, and RSS and V8 heap then (KB). */
  probe(): Promise<ProbeReading>;
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

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    c.once('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`${args.join(' ')} exited ${code}`))));
  });
}

const STDOUT_FILE = process.env.EDGEWAY_BENCH_STDOUT ?? '';

/** Extra node flags for every server, e.g. `--cpu-prof --cpu-prof-dir=DIR` (the stop then asks politely first). */
const SERVER_ARGS = (process.env.EDGEWAY_BENCH_SERVER_ARGS ?? '').split(' ').filter((a) => a !== '');

/**
 * CPU pinning (bench/collab.ts --pin): the server on CPU 0 (all its threads:
 * GC helpers and the LevelDB pool too), the load generators on the others, so
 * that on a small machine they stop taking turns on the same cores. The same
 * for every server.
 */
export const SERVER_CPUS = '0';
export function pinned(cpus: string | undefined, argv: string[]): [string, string[]] {
  return cpus === undefined ? [process.execPath, argv] : ['taskset', ['-c', cpus, process.execPath, ...argv]];
}
let serverCpus: string | undefined;
export function pinServers(on: boolean): void {
  serverCpus = on ? SERVER_CPUS : undefined;
}

/**
 * Spawns a server with the probe and waits for `ready(line)` on its stdout.
 * EDGEWAY_BENCH_STDOUT=FILE (diagnosis) appends every line the servers print,
 * e.g. V8's own GC log with EDGEWAY_BENCH_SERVER_ARGS=--trace-gc-nvp.
 */
async function launch<T>(dir: string, args: string[], env: NodeJS.ProcessEnv, ready: (line: string) => T | undefined): Promise<{ child: ChildProcess; value: T }> {
  const probeFile = join(dir, 'probe.json');
  const [cmd, argv] = pinned(serverCpus, ['--expose-gc', '--import', PROBE, ...SERVER_ARGS, ...args]);
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env, EDGEWAY_BENCH_PROBE: probeFile } });
  const value = await new Promise<T>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (l) => {
      if (STDOUT_FILE !== '') appendFileSync(STDOUT_FILE, `${l}\n`);
      const v = ready(l);
      if (v !== undefined) resolve(v);
    });
    child.once('exit', (code) => reject(new Error(`${args[0]} exited ${code}`)));
  });
  return { child, value };
}

function common(child: ChildProcess, dir: string): Pick<Target, 'pid' | 'probe' | 'stop'> {
  const probeFile = join(dir, 'probe.json');
  return {
    pid: child.pid!,
    probe: async () => {
      await rm(probeFile, { force: true });
      process.kill(child.pid!, 'SIGUSR2');
      for (let i = 0; i < 100; i++) {
        const text = await readFile(probeFile, 'utf8').catch(() => '');
        if (text !== '') return JSON.parse(text) as ProbeReading;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error('probe did not answer');
    },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        // A profiled server must exit on its own to write the profile.
        if (SERVER_ARGS.length > 0) child.kill('SIGTERM');
        const kill = setTimeout(() => child.kill('SIGKILL'), SERVER_ARGS.length > 0 ? 15_000 : 0);
        await exited;
        clearTimeout(kill);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Edgeway's two targets run with the node flags systemd/edgeway.service gives
 * it (`workers: 1` serves from that process), unless EDGEWAY_BENCH_SERVER_ARGS
 * decides them; the reference runs as it ships.
 */
function shippedFlags(): string[] {
  return withDataPlaneFlags(SERVER_ARGS).slice(SERVER_ARGS.length);
}

export async function startEdgeway(): Promise<Target> {
  const dir = await mkdtemp(join(tmpdir(), 'edgeway-bench-collab-'));
  await mkdir(join(dir, 'routes'));
  const cfgFile = join(dir, 'edgeway.yaml');
  await writeFile(cfgFile, `domain: example.test\nlisten: { https: "127.0.0.1:0", http: "127.0.0.1:0", admin: "127.0.0.1:0" }\nworkers: 1\ndata_dir: data\nroutes_dir: routes\nlog: { level: info, access_log: false }\n`);
  const { child, value: listening } = await launch(dir, [...shippedFlags(), main, '--config', cfgFile], {}, (l) =>
    l.includes('"edgeway listening"') ? (JSON.parse(l) as { https: string; admin: string }) : undefined);
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
    url: `wss://${HOST}:${port}/collab/yjs/{room}`,
    // loopback: the load generator resolves every name to 127.0.0.1.
    opts: { ca: [ca], headers: { authorization: `Bearer ${user}` }, loopback: true },
    ...common(child, dir),
  };
}

export async function startRelayPlain(): Promise<Target> {
  const dir = await mkdtemp(join(tmpdir(), 'edgeway-bench-relay-'));
  const { child, value: port } = await launch(dir, [...shippedFlags(), join(here, 'collab-relay-server.js'), dir], {}, (l) => (l.startsWith('listening ') ? Number(l.slice(10)) : undefined));
  return { name: 'edgeway relay alone (ws)', url: `ws://127.0.0.1:${port}/{room}`, opts: {}, ...common(child, dir) };
}

export async function startReference(): Promise<Target> {
  const dir = await mkdtemp(join(tmpdir(), 'edgeway-bench-ref-'));
  const port = await freePort();
  const server = join(root, 'node_modules', '@y', 'websocket-server', 'src', 'server.js');
  const { child } = await launch(dir, [server], { HOST: '127.0.0.1', PORT: String(port), YPERSISTENCE: join(dir, 'db') }, (l) => (l.includes('running at') ? true : undefined));
  return { name: '@y/websocket-server 0.1.1 (ws, YPERSISTENCE)', url: `ws://127.0.0.1:${port}/{room}`, opts: {}, ...common(child, dir) };
}

/** CPU seconds (user + system) the process has used so far. */
export async function cpuSeconds(pid: number): Promise<number> {
  const f = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}
