// edgeway as a separate process (`node dist/src/main.js --config FILE`), for
// tests that measure the process itself (RSS, file descriptors) or hold more
// sockets than one process should share with its client. Needs `npm run build`
// (npm test builds before tap). Ports come from the "edgeway listening" log line.

import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { signToken } from '../../src/auth/jwt.js';
import { loadJwtKeys } from '../../src/auth/keys.js';
import { loadConfig } from '../../src/config/load.js';
import { portOf, writeTestConfig } from './appliance.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const MAIN_JS = join(ROOT, 'dist', 'src', 'main.js');
const MEMORY_PROBE = fileURLToPath(new URL('./memory-probe.mjs', import.meta.url));

/** Memory of the spawned process right after a full GC (bytes). */
export interface MemoryAfterGc {
  readonly rss: number;
  readonly heapUsed: number;
  readonly external: number;
  readonly arrayBuffers: number;
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface SpawnedEdgeway {
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly httpsPort: number;
  readonly adminUrl: string;
  readonly caPem: string;
  readonly platformToken: string;
  /** The process's resident set size now, in KiB (VmRSS from /proc/PID/status). */
  rssKb(): Promise<number>;
  /** Runs a full GC in the process (SIGUSR2 to the preloaded memory probe) and reports its memory. */
  memoryAfterGc(timeoutMs?: number): Promise<MemoryAfterGc>;
  /** What the process wrote to stderr so far (first 64 KiB). */
  stderr(): string;
}

export async function readVmRssKb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]);
}

/** The soft limit on open files of this process (children inherit it). */
export async function openFilesSoftLimit(): Promise<number> {
  const limits = await readFile('/proc/self/limits', 'utf8');
  const m = /^Max open files\s+(\S+)/m.exec(limits);
  if (!m) return Number.POSITIVE_INFINITY;
  return m[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(m[1]);
}

/** Starts edgeway in its own process with the test config plus `overrides`; killed in teardown. */
export async function spawnEdgeway(t: Teardown, overrides: Record<string, unknown> = {}, startTimeoutMs = 20_000): Promise<SpawnedEdgeway> {
  const secret = 'abuse-test-secret-0123456789abcdef';
  const { file } = await writeTestConfig({
    log: { level: 'info', access_log: false },
    auth: { jwt: { secret } },
    ...overrides,
  });
  const proc = spawn(process.execPath, ['--expose-gc', '--import', MEMORY_PROBE, MAIN_JS, '--config', file], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGKILL');
      }),
  );
  let stderr = '';
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (c: string) => {
    if (stderr.length < 64 * 1024) stderr += c;
  });

  // Every stdout line is read for as long as the process runs (so it never
  // blocks on a full pipe); JSON records go to whoever waits for their msg.
  const waiters: { msg: string; resolve: (rec: Record<string, unknown>) => void }[] = [];
  let buf = '';
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (c: string) => {
    buf += c;
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (waiters.length === 0 || line.charCodeAt(0) !== 0x7b) continue;
      let rec: Record<string, unknown>;
      try {
        rec = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      const i = waiters.findIndex((w) => w.msg === rec['msg']);
      if (i !== -1) waiters.splice(i, 1)[0]!.resolve(rec);
    }
  });
  const waitFor = (msg: string, timeoutMs: number): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const onExit = (code: number | null, signal: string | null): void => {
        clearTimeout(timer);
        reject(new Error(`edgeway exited (${code ?? signal}) while waiting for "${msg}"; stderr: ${stderr}`));
      };
      const timer = setTimeout(() => {
        proc.off('exit', onExit);
        const i = waiters.indexOf(waiter);
        if (i !== -1) waiters.splice(i, 1);
        reject(new Error(`no "${msg}" from edgeway within ${timeoutMs} ms; stderr: ${stderr}`));
      }, timeoutMs);
      const waiter = {
        msg,
        resolve: (rec: Record<string, unknown>): void => {
          clearTimeout(timer);
          proc.off('exit', onExit);
          resolve(rec);
        },
      };
      proc.once('exit', onExit);
      waiters.push(waiter);
    });

  const listening = await waitFor('edgeway listening', startTimeoutMs);
  const cfg = await loadConfig(file);
  const keys = await loadJwtKeys(cfg);
  return {
    proc,
    pid: proc.pid!,
    httpsPort: portOf(String(listening['https'])),
    adminUrl: `http://${String(listening['admin'])}`,
    caPem: await readFile(join(cfg.data_dir, 'ca', 'edgeway-local-ca.crt'), 'utf8'),
    platformToken: signToken(keys, cfg.auth.jwt, { type: 'platform', scope: ['edge:admin'] }, 3600),
    rssKb: () => readVmRssKb(proc.pid!),
    memoryAfterGc: async (timeoutMs = 10_000) => {
      const reply = waitFor('edgeway-test memory', timeoutMs);
      proc.kill('SIGUSR2');
      const m = await reply;
      if (m['gc'] !== true) throw new Error('the memory probe has no gc (node --expose-gc missing)');
      return { rss: Number(m['rss']), heapUsed: Number(m['heapUsed']), external: Number(m['external']), arrayBuffers: Number(m['arrayBuffers']) };
    },
    stderr: () => stderr,
  };
}
