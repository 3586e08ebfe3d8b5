// edgeway as a real process: spawn `node dist/src/main.js --config FILE`,
// follow its JSON log lines, find its children, and kill whatever is left in
// teardown. Used by test/lifecycle.test.ts.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile, readlink } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { signToken } from '../../src/auth/jwt.js';
import { loadJwtKeys } from '../../src/auth/keys.js';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { portOf } from './appliance.js';

export const MAIN = fileURLToPath(new URL('../../dist/src/main.js', import.meta.url));

export interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface LogLine {
  readonly level?: number;
  readonly msg?: string;
  readonly [k: string]: unknown;
}

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** performance.now() at exit. */
  readonly at: number;
}

function assertBuilt(): void {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` first`);
}

/** One spawned edgeway process and everything it printed. */
export class EdgewayProcess {
  readonly child: ChildProcess;
  readonly lines: LogLine[] = [];
  /** stdout lines that were not JSON. */
  readonly rawLines: string[] = [];
  stderr = '';
  exit: Exit | undefined;
  readonly exited: Promise<Exit>;
  private partial = '';
  private readonly listeners = new Set<() => void>();

  constructor(args: readonly string[], env: NodeJS.ProcessEnv = process.env) {
    assertBuilt();
    this.child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    this.child.stdout!.setEncoding('utf8').on('data', (s: string) => this.onStdout(s));
    this.child.stderr!.setEncoding('utf8').on('data', (s: string) => {
      this.stderr += s;
      this.notify();
    });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exit = { code, signal, at: performance.now() };
        this.notify();
        resolve(this.exit);
      });
    });
  }

  get pid(): number {
    return this.child.pid as number;
  }

  private onStdout(s: string): void {
    const parts = (this.partial + s).split('\n');
    this.partial = parts.pop() ?? '';
    for (const p of parts) {
      if (p.trim() === '') continue;
      try {
        this.lines.push(JSON.parse(p) as LogLine);
      } catch {
        this.rawLines.push(p);
      }
    }
    this.notify();
  }

  private notify(): void {
    for (const l of [...this.listeners]) l();
  }

  count(pred: (l: LogLine) => boolean): number {
    return this.lines.filter(pred).length;
  }

  /** Resolves with the `n`-th (1-based) log line matching `pred`; rejects on timeout or exit. */
  waitFor(pred: (l: LogLine) => boolean, opts: { timeoutMs?: number; n?: number; what?: string } = {}): Promise<LogLine> {
    const n = opts.n ?? 1;
    const what = opts.what ?? 'a log line';
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const found = this.lines.filter(pred);
        if (found.length >= n) {
          done();
          resolve(found[n - 1]!);
        } else if (this.exit) {
          done();
          reject(new Error(`edgeway exited (${this.exit.code ?? this.exit.signal}) before ${what}; stderr: ${this.stderr.slice(-2000)}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${opts.timeoutMs ?? 10_000} ms waiting for ${what}; last lines: ${JSON.stringify(this.lines.slice(-5))}; stderr: ${this.stderr.slice(-2000)}`));
      }, opts.timeoutMs ?? 10_000);
      const done = (): void => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      this.listeners.add(check);
      check();
    });
  }

  /** Resolves with the exit, or undefined when it has not exited within `ms`. */
  async exitWithin(ms: number): Promise<Exit | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([this.exited, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)))]);
    clearTimeout(timer);
    return r;
  }

  signal(sig: NodeJS.Signals): void {
    process.kill(this.pid, sig);
  }
}

/** Runs edgeway to its exit (for start-up failures); SIGKILLs it after `timeoutMs`. */
export async function runToExit(args: readonly string[], timeoutMs = 10_000): Promise<{ exit: Exit; timedOut: boolean; p: EdgewayProcess; ms: number }> {
  const start = performance.now();
  const p = new EdgewayProcess(args);
  let exit = await p.exitWithin(timeoutMs);
  const timedOut = exit === undefined;
  if (exit === undefined) {
    p.child.kill('SIGKILL');
    exit = await p.exited;
  }
  return { exit, timedOut, p, ms: exit.at - start };
}

/** Child pids of `pid` (every thread's children file; Linux). */
export async function childrenOf(pid: number): Promise<number[]> {
  const out = new Set<number>();
  let tasks: string[];
  try {
    tasks = await readdir(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  for (const tid of tasks) {
    const text = await readFile(`/proc/${pid}/task/${tid}/children`, 'utf8').catch(() => '');
    for (const s of text.split(/\s+/)) if (s !== '') out.add(Number(s));
  }
  return [...out].sort((a, b) => a - b);
}

/** True while `pid` exists and is not a zombie. */
export async function alive(pid: number): Promise<boolean> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => undefined);
  if (status === undefined) return false;
  return !/^State:\s+Z/m.test(status);
}

/** Socket inodes held by `pid`. */
async function socketInodes(pid: number): Promise<Set<string>> {
  const out = new Set<string>();
  const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
  for (const fd of fds) {
    const link = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m) out.add(m[1]!);
  }
  return out;
}

/**
 * Which of `pids` owns each local TCP port in `ports` (for example the source
 * ports of connections an upstream accepted, while they are still open).
 * One pass over /proc/net/tcp{,6} and the pids' descriptors; Linux only.
 */
export async function ownersOfLocalPorts(ports: Iterable<number>, pids: readonly number[]): Promise<Map<number, number | undefined>> {
  const byHex = new Map<string, number>();
  for (const port of ports) byHex.set(port.toString(16).toUpperCase().padStart(4, '0'), port);
  const inodeToPort = new Map<string, number>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await readFile(table, 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const local = f[1]!;
      const port = byHex.get(local.slice(local.lastIndexOf(':') + 1));
      if (port !== undefined && f[9] !== '0') inodeToPort.set(f[9]!, port);
    }
  }
  const out = new Map<number, number | undefined>();
  for (const port of byHex.values()) out.set(port, undefined);
  for (const pid of pids) {
    for (const inode of await socketInodes(pid)) {
      const port = inodeToPort.get(inode);
      if (port !== undefined) out.set(port, pid);
    }
  }
  return out;
}

/** Pids of live processes whose command line has `arg` (e.g. a config file path): edgeway and its workers. */
export async function processesWith(arg: string): Promise<number[]> {
  const out: number[] = [];
  for (const d of await readdir('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const cmd = await readFile(`/proc/${d}/cmdline`, 'utf8').catch(() => '');
    if (cmd.split('\0').includes(arg) && (await alive(Number(d)))) out.push(Number(d));
  }
  return out;
}

/** A TCP port nothing listens on right now (bound, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * `n` distinct free TCP ports. Each is held bound until all are picked:
 * freePort() called n times can hand back the same just-released port twice
 * (seen once in CI: listen.admin equal to listen.https, refused by the config).
 */
export async function freePorts(n: number): Promise<number[]> {
  const held: net.Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = net.createServer();
      held.push(s);
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(0, '127.0.0.1', resolve);
      });
    }
    return held.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(held.map((s) => new Promise((r) => s.close(r))));
  }
}

/** 'connected', or the error code of a TCP connect to 127.0.0.1:`port`. */
export function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

export interface Running {
  readonly p: EdgewayProcess;
  readonly cfg: Config;
  readonly caPem: string;
  readonly httpsPort: number;
  readonly httpPort: number;
  readonly adminUrl: string;
  readonly platformToken: string;
  readonly listening: LogLine;
}

/**
 * Spawns edgeway with `file` (log level must be info or lower: it waits for
 * the "edgeway listening" line), and kills it and its children in teardown.
 */
export async function startEdgeway(t: Teardown, file: string, timeoutMs = 20_000): Promise<Running> {
  const p = new EdgewayProcess(['--config', file]);
  t.teardown(async () => {
    if (p.exit) return;
    const kids = await childrenOf(p.pid);
    p.child.kill('SIGKILL');
    for (const k of kids) {
      try {
        process.kill(k, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await p.exited;
  });
  const listening = await p.waitFor((l) => l.msg === 'edgeway listening', { timeoutMs, what: '"edgeway listening"' });
  const cfg = await loadConfig(file);
  const keys = await loadJwtKeys(cfg);
  return {
    p,
    cfg,
    // ACME mode makes no local CA once it holds a {domain} certificate.
    caPem: await readFile(join(cfg.data_dir, 'ca', 'edgeway-local-ca.crt'), 'utf8').catch(() => ''),
    httpsPort: portOf(listening['https'] as string),
    httpPort: portOf(listening['http'] as string),
    adminUrl: `http://${listening['admin'] as string}`,
    platformToken: signToken(keys, cfg.auth.jwt, { type: 'platform', scope: ['edge:admin'] }, 3600),
    listening,
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
