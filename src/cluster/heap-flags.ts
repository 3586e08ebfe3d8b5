// V8 heap flags for the processes that carry request traffic (issue 4, p99;
// issue 6, the collab relay's stalls).
//
// A proxy's garbage dies young: under (a) about 5 KB of V8 heap per request,
// of which about 0.3% survives a scavenge (--trace-gc-nvp: 40-50 KB survived
// of ~13.4 MB allocated). V8 grows the young generation only as survivors
// accumulate, so once it has shrunk it grows back slowly under such a load.
// And it shrinks whenever traffic pauses: after about 8 s of low allocation
// the memory reducer runs a memory-reducing mark-compact, which (by V8's
// design, not measured here) shrinks the new space and sets the old
// generation's limit close to what is live. What was measured is the effect,
// with a GC log in both workers (w2, wrk c64, 5 s runs, the run after a 20 s
// idle gap against the run after a 2 s warm-up): 181-199 scavenges per worker
// instead of 43-57 (one every ~8 ms, about what a 1 MiB new space holds at
// that rate), and mark-compacts of 3-9 ms early in 3 of 4 gap runs, where the
// warm runs had none.
// The bench leaves every target idle 20-30 s while the others run, and real
// traffic comes in bursts after quiet spells, so the first seconds of every
// burst paid for it.
//
// So the data plane runs with the new space fixed at its usual maximum
// (16 MiB a semi-space: the size it grows to under load anyway; pages are
// committed as they are first used) and without the memory reducer. Old
// space is still collected when it grows; only the idle-time shrinking goes.
//
// And with one V8 helper thread instead of Node's default four
// (--v8-pool-size=1, issue 6 Speed). Every edgeway process already keeps a
// core busy with its own main thread (one data-plane process per core), so
// helpers only run by taking a core from a main thread: when concurrent
// marking starts, four runnable helpers get four fifths of a shared core and
// the event loop stops in the meantime. Measured with the collab relay
// (`workers: 1`, pinned to one CPU, 10,000 TLS websockets; bench/NOTES.md
// collab step 6): with four helpers, event-loop stalls of 44-78 ms while no GC
// pause passed 14 ms; full bench:collab runs, update p99 at 1,000 / 2,000
// updates/s 85 / 121 ms before, 19 / 46 ms with one helper. For (a) it moved
// within the spread: harness w2 p99 1.11x / 1.29x nginx two-stage at c64 /
// c256 against 1.24x / 1.69x without (4 rounds of 5 s), but the full bench
// 1.39x / 1.25x against 1.23x / 1.21x the run before (NOTES step 14).
//
// And with no background GC work at all (--single-threaded-gc, issue 6
// Speed): the one helper left still marked concurrently, and on the relay's
// one core (bench:collab pins the server to a CPU) that is the same theft in a
// milder form: the GC log of edgeway wss at 2,000 updates/s showed two
// concurrent markings per 10 s round of ~330 ms each, during which the main
// thread and the helper took turns in 10-30 ms slices (the stall log: main
// 20 ms, helper 20 ms, a stall of 40 ms). Single-threaded, V8 marks
// incrementally on the main thread in steps of a few ms between tasks, and
// scavenges on it alone. Paired quick runs (bench/NOTES.md collab step 7),
// edgeway wss p99 at 2,000 updates/s: 31.8 / 24.6 / 29.5 / 22.0 ms with it
// against 55.5 / 48.7 / 57.5 / 38.7 ms with one helper; full bench:collab
// runs 46.4 ms before, 20.2 ms with it, and the relay alone 12.8 -> 9.2 ms.
// The data plane lost nothing in the full bench (NOTES step 15: w2 p99
// 1.39x / 1.25x nginx two-stage at c64 / c256 before, 1.25x / 1.14x with
// it, the same req/s). The cost falls on machines with idle cores, where
// marking no longer runs beside the event loop; edgeway's processes (one
// per core with workers: auto) leave none.
//
// And with the old generation allowed to grow to twice what is live before
// a full collection (--heap-growing-percent=100, issue 6 Speed; Go's default
// GOGC=100 makes the same trade). V8 chose a factor of about 1.2 for the
// relay (10,000 TLS websockets, 2,000 updates/s: 121 MB live, the next
// marking started at 132 of 151 MB) while old space grew by ~2.2 MB/s (Yjs
// items live a few seconds, past two scavenges), so a mark-compact came
// every ~6 s: ~170 ms of incremental marking on the main thread within
// ~385 ms, then a 20-29 ms pause, and the updates queued behind them set the
// p99. Paired 30 s rounds at 2,000 updates/s (bench/NOTES.md collab step
// 10): p99 25.7 / 12.6 ms with V8's factor (4-5 mark-compacts a round),
// 8.3 / 6.8 ms with this one (none in the round). A 90 s round with it:
// mark-compacts 45 s apart, at 206 and 232 MB of heap (V8's factor started
// them at ~147 MB), p99 8.17 ms. The costs: that memory (60-85 MB more
// there), and a longer pause when one comes (41 and 49 ms against 20-29 ms:
// more to sweep and evacuate).
//
// An operator who sets any of these flags on the command line keeps theirs.

/** Flags added to a data-plane process's `execArgv`. */
export const DATA_PLANE_NODE_FLAGS: readonly string[] = [
  '--min-semi-space-size=16',
  '--no-memory-reducer',
  '--v8-pool-size=1',
  '--single-threaded-gc',
  '--heap-growing-percent=100',
];

/**
 * What a flag decides: its name without a value or a `--no-` (a boolean set
 * either way is the operator's choice), and dashed, since Node takes `_` for
 * `-` in every flag name (--v8_pool_size, --memory_reducer).
 */
function decides(arg: string): string {
  return arg.split('=', 1)[0]!.replaceAll('_', '-').replace(/^--no-/, '--');
}

/** `execArgv` plus whichever data-plane flags it does not already decide. */
export function withDataPlaneFlags(execArgv: readonly string[]): string[] {
  const decided = new Set(execArgv.map(decides));
  return [...execArgv, ...DATA_PLANE_NODE_FLAGS.filter((f) => !decided.has(decides(f)))];
}
