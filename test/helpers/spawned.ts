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
  const proc = spawn(process.execPath, [MAIN_JS, '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
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

  const listening = await new Promise<Record<string, unknown>>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`edgeway did not start within ${startTimeoutMs} ms; stderr: ${stderr}`)), startTimeoutMs);
    proc.stdout!.setEncoding('utf8');
    const onData = (c: string): void => {
      buf += c;
      let nl: number;
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let rec: Record<string, unknown>;
        try {
          rec = JSON.parse(line) as Record<string, unknown>;
        } catch {
          continue;
        }
        if (rec['msg'] === 'edgeway listening') {
          clearTimeout(timer);
          proc.stdout!.off('data', onData);
          // Keep draining stdout so the child never blocks on a full pipe.
          proc.stdout!.resume();
          resolve(rec);
        }
      }
    };
    proc.stdout!.on('data', onData);
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`edgeway exited (${code ?? signal}) before listening; stderr: ${stderr}`));
    });
  });

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
    stderr: () => stderr,
  };
}
