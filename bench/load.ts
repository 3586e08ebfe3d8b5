// Drives wrk (`wrk -t1 -cN -dS --latency -H … URL`) and reads its report, and
// samples the CPU time and memory of a target's process tree from /proc.

import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

export interface LoadSpec {
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly connections: number;
  readonly seconds: number;
  readonly threads?: number;
}

export interface WrkResult {
  readonly requests: number;
  readonly seconds: number;
  readonly rps: number;
  readonly p50_ms: number;
  readonly p75_ms: number;
  readonly p90_ms: number;
  readonly p99_ms: number;
  /** Socket errors (connect + read + write + timeout). */
  readonly errors: number;
  readonly non_2xx_3xx: number;
}

function ms(v: string, unit: string): number {
  const n = Number(v);
  switch (unit) {
    case 'us':
      return n / 1000;
    case 'ms':
      return n;
    case 's':
      return n * 1000;
    case 'm':
      return n * 60_000;
    default:
      throw new Error(`wrk latency unit ${unit}?`);
  }
}

function count(v: string, unit: string | undefined): number {
  const n = Number(v);
  return unit === 'k' ? n * 1e3 : unit === 'M' ? n * 1e6 : n;
}

export function parseWrk(out: string): WrkResult {
  const pct = (p: string): number => {
    const m = new RegExp(`^\\s*${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(out);
    if (!m) throw new Error(`no ${p}% line in wrk output:\n${out}`);
    return ms(m[1]!, m[2]!);
  };
  const reqs = /^\s*(\d+) requests in ([\d.]+)(us|ms|s|m),/m.exec(out);
  const rps = /^Requests\/sec:\s+([\d.]+)([kM]?)/m.exec(out);
  if (!reqs || !rps) throw new Error(`cannot read wrk output:\n${out}`);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  return {
    requests: Number(reqs[1]),
    seconds: ms(reqs[2]!, reqs[3]!) / 1000,
    rps: count(rps[1]!, rps[2]),
    p50_ms: pct('50'),
    p75_ms: pct('75'),
    p90_ms: pct('90'),
    p99_ms: pct('99'),
    errors: sock ? sock.slice(1, 5).reduce((s, x) => s + Number(x), 0) : 0,
    non_2xx_3xx: non ? Number(non[1]) : 0,
  };
}

export function wrkArgs(spec: LoadSpec): string[] {
  const args = [`-t${spec.threads ?? 1}`, `-c${spec.connections}`, `-d${spec.seconds}s`, '--latency', '--timeout', '5s'];
  for (const [k, v] of Object.entries(spec.headers)) args.push('-H', `${k}: ${v}`);
  args.push(spec.url);
  return args;
}

/** `stop` ends wrk early with SIGINT, on which it prints its report as at the end of its duration. */
export function runWrk(wrk: string, spec: LoadSpec, stop?: AbortSignal): Promise<WrkResult & { raw: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(wrk, wrkArgs(spec), { stdio: ['ignore', 'pipe', 'pipe'] });
    stop?.addEventListener('abort', () => child.kill('SIGINT'), { once: true });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`wrk exited ${code}: ${out}`));
      try {
        resolve({ ...parseWrk(out), raw: out });
      } catch (e) {
        reject(e as Error);
      }
    });
  });
}

// ---------------------------------------------------------------- /proc

export const CLK_TCK = ((): number => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
})();

interface Stat {
  pid: number;
  ppid: number;
  ticks: number;
}

function readStat(pid: number): Stat | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
    return { pid, ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) }; // utime (14) + stime (15)
  } catch {
    return undefined;
  }
}

/** The given pids and all their descendants, alive now. */
export function processTree(roots: readonly number[]): number[] {
  const kids = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const st = readStat(Number(d));
    if (!st) continue;
    const l = kids.get(st.ppid);
    if (l) l.push(st.pid);
    else kids.set(st.ppid, [st.pid]);
  }
  const out: number[] = [];
  const todo = [...roots];
  while (todo.length > 0) {
    const p = todo.pop()!;
    out.push(p);
    todo.push(...(kids.get(p) ?? []));
  }
  return out;
}

/** CPU seconds (user + system) used so far by the given processes. */
export function cpuSeconds(pids: readonly number[]): number {
  let ticks = 0;
  for (const p of pids) ticks += readStat(p)?.ticks ?? 0;
  return ticks / CLK_TCK;
}

/** Sum over the processes of VmHWM (peak) and VmRSS (now), in KiB. */
export function memoryKb(pids: readonly number[]): { hwm_kb: number; rss_kb: number } {
  let hwm = 0;
  let rss = 0;
  for (const p of pids) {
    try {
      const s = readFileSync(`/proc/${p}/status`, 'utf8');
      hwm += Number(/^VmHWM:\s+(\d+)/m.exec(s)?.[1] ?? 0);
      rss += Number(/^VmRSS:\s+(\d+)/m.exec(s)?.[1] ?? 0);
    } catch {
      /* gone */
    }
  }
  return { hwm_kb: hwm, rss_kb: rss };
}
