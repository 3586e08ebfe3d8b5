// bench:collab helper, preloaded into every server under test and into every
// load-generator process (`node --import dist/bench/collab-probe.js`): where
// does the fan-out p99 come from (issue 6 "Speed")? It records, per round,
// the process's event-loop delay (perf_hooks.monitorEventLoopDelay, 1 ms
// resolution: how late a ready callback ran) and its GC pauses
// (PerformanceObserver 'gc'). The same probe goes into edgeway, the relay
// alone and the reference, so no server is measured differently.
//
// `probe.report()` in-process, or SIGUSR2 from the bench: the figures since
// the last report, and a new window. On SIGUSR2 the process also runs a full
// GC when it has `--expose-gc` (every server gets it) and adds its RSS then,
// all written to the file named by EDGEWAY_BENCH_PROBE (no variable: no
// signal handler).

import { appendFileSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { constants, monitorEventLoopDelay, PerformanceObserver, type IntervalHistogram } from 'node:perf_hooks';

export interface ProbeWindow {
  /** Event-loop delay of the window, ms. */
  readonly eld_p50_ms: number;
  readonly eld_p99_ms: number;
  readonly eld_max_ms: number;
  /** GC pauses in the window: how many, their total and the longest, ms. */
  readonly gc_count: number;
  readonly gc_total_ms: number;
  readonly gc_max_ms: number;
  /** The longest pause's kind: minor (scavenge), major (mark-compact), incremental, weakcb. */
  readonly gc_max_kind: string;
}

const GC_KINDS = new Map<number, string>([
  [constants.NODE_PERFORMANCE_GC_MINOR, 'minor'],
  [constants.NODE_PERFORMANCE_GC_MAJOR, 'major'],
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL, 'incremental'],
  [constants.NODE_PERFORMANCE_GC_WEAKCB, 'weakcb'],
]);

class Probe {
  readonly #eld: IntervalHistogram = monitorEventLoopDelay({ resolution: 1 });
  #gcCount = 0;
  #gcTotal = 0;
  #gcMax = 0;
  #gcMaxKind = 0;

  constructor() {
    this.#eld.enable();
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        // The collections the bench forces before reading RSS are not the process's own.
        if (((e as unknown as { detail?: { flags?: number } }).detail?.flags ?? 0) & constants.NODE_PERFORMANCE_GC_FLAGS_FORCED) continue;
        this.#gcCount++;
        this.#gcTotal += e.duration;
        if (e.duration > this.#gcMax) {
          this.#gcMax = e.duration;
          this.#gcMaxKind = (e as unknown as { detail?: { kind?: number } }).detail?.kind ?? 0;
        }
      }
    }).observe({ entryTypes: ['gc'] });
  }

  /** The window since the last report; starts a new one. */
  report(): ProbeWindow {
    const ms = (ns: number): number => Number((ns / 1e6).toFixed(2));
    const w: ProbeWindow = {
      eld_p50_ms: ms(this.#eld.percentile(50)),
      eld_p99_ms: ms(this.#eld.percentile(99)),
      eld_max_ms: ms(this.#eld.max),
      gc_count: this.#gcCount,
      gc_total_ms: Number(this.#gcTotal.toFixed(1)),
      gc_max_ms: Number(this.#gcMax.toFixed(2)),
      gc_max_kind: GC_KINDS.get(this.#gcMaxKind) ?? String(this.#gcMaxKind),
    };
    this.#eld.reset();
    this.#gcCount = 0;
    this.#gcTotal = 0;
    this.#gcMax = 0;
    this.#gcMaxKind = 0;
    return w;
  }
}

/** What the probe writes to EDGEWAY_BENCH_PROBE on SIGUSR2, after a full GC (KB). */
export type ProbeReading = ProbeWindow & { rss_kb: number; heap_used_kb: number };

export const probe = new Probe();

const file = process.env.EDGEWAY_BENCH_PROBE;
if (file !== undefined && file !== '') {
  process.on('SIGUSR2', () => {
    const w = probe.report();
    (globalThis as { gc?: () => void }).gc?.();
    const m = process.memoryUsage();
    const reading: ProbeReading = { ...w, rss_kb: Math.round(m.rss / 1024), heap_used_kb: Math.round(m.heapUsed / 1024) };
    writeFileSync(`${file}.tmp`, JSON.stringify(reading));
    renameSync(`${file}.tmp`, file);
  });
}

// A server run with --cpu-prof writes its profile only on a normal exit; the
// reference has no SIGTERM handler, edgeway drains first (given 3 s).
if (process.execArgv.includes('--cpu-prof')) {
  process.on('SIGTERM', () => setTimeout(() => process.exit(0), 3000));
}

// EDGEWAY_BENCH_STALLS=FILE (diagnosis): a 10 ms timer that, whenever it
// fires more than EDGEWAY_BENCH_STALL_MS (30 by default) late, appends which
// threads of this process used the CPU meanwhile (/proc/self/task/*/stat,
// utime+stime), so a stall can be told apart: the main thread busy (our work
// or a GC pause) or preempted by one of the process's own threads (LevelDB
// compaction, V8 or libuv workers).
const stalls = process.env.EDGEWAY_BENCH_STALLS;
if (stalls !== undefined && stalls !== '') {
  const ticks = (): Map<string, number> => {
    const m = new Map<string, number>();
    for (const tid of readdirSync('/proc/self/task')) {
      try {
        const st = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
        const name = st.slice(st.indexOf('(') + 1, st.lastIndexOf(')'));
        const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
        m.set(`${tid}:${name}`, Number(f[11]) + Number(f[12]));
      } catch {
        // the thread ended
      }
    }
    return m;
  };
  const threshold = Number(process.env.EDGEWAY_BENCH_STALL_MS ?? '30');
  let last = performance.now();
  let before = ticks();
  setInterval(() => {
    const now = performance.now();
    const late = now - last - 10;
    const after = ticks();
    if (late > threshold) {
      const used: string[] = [];
      for (const [k, v] of after) {
        const d = v - (before.get(k) ?? 0);
        if (d > 0) used.push(`${k}=${d * 10}ms`);
      }
      appendFileSync(stalls, `${new Date().toISOString()} pid ${process.pid} late ${late.toFixed(0)} ms: ${used.join(' ')}\n`);
    }
    last = now;
    before = after;
  }, 10).unref();
}
