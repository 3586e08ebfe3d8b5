// Where the control plane's host entries live on disk: `data_dir/state/`, a
// snapshot (state-snapshot.ts) plus journal generations `journal-<n>.jsonl`
// (journal.ts). Every change to an API entry is journaled and the promise
// resolves once it is fsynced; static entries (routes/) are never journaled.
//
// Compaction, crash-safe at every step:
//   1. open journal generation n+1 (and fsync the directory);
//   2. between two changes, switch appends to it and capture the entries;
//   3. write the snapshot {journal: n+1, entries} atomically;
//   4. delete the generations below n+1.
// A crash before 3 leaves the old snapshot and every journal since it; after
// 3, the new snapshot and generation n+1 (older files are ignored by number).

import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { StoredEntry } from '../admin/host-store.js';
import { EdgewayError } from '../errors.js';
import type { Logger } from '../log.js';
import { fsyncDir } from '../tls/atomic-write.js';
import { JournalWriter, readJournal, replay, toRecord, type JournalRecord } from './journal.js';
import { readSnapshot, writeSnapshot } from './state-snapshot.js';

const SNAPSHOT = 'snapshot.json';
const GEN_RE = /^journal-(\d{1,15})\.jsonl$/;
/** After a failed compaction (disk full), wait this long before trying again. */
const COMPACT_RETRY_MS = 30_000;

export interface DurableOptions {
  /**
   * Compact once the journals since the snapshot hold this many records or
   * bytes. Replay runs at start-up, so these bound what a restart pays on top
   * of the snapshot (50,000 records parse in about 0.1 s).
   */
  readonly compactRecords?: number;
  readonly compactBytes?: number;
}

/** What start-up found and what it cost (for the start-up log line). */
export interface LoadStats {
  readonly snapshotEntries: number;
  readonly snapshotMs: number;
  readonly journalRecords: number;
  readonly journalMs: number;
  readonly ignoredLines: number;
}

export interface DurableStats {
  readonly records: number;
  readonly fsyncs: number;
  readonly bytes: number;
  readonly compactions: number;
}

const genPath = (dir: string, gen: number): string => join(dir, `journal-${String(gen).padStart(6, '0')}.jsonl`);

export class DurableState {
  #writer: JournalWriter;
  #gen: number;
  /** Generations on disk, including the current one. */
  #gens: number[];
  /** Records and bytes in the journals since the snapshot (replayed ones included). */
  #records: number;
  #bytes: number;
  #compacting: Promise<void> | undefined;
  #retryAt = 0;
  #closed = false;
  /** The first journal failure of any generation: from then on nothing is accepted. */
  #failed: Error | undefined;
  /** Totals over this process's writers, for the log line at close (and the bench). */
  #closedRecords = 0;
  #closedFsyncs = 0;
  #closedBytes = 0;
  #compactions = 0;
  readonly #compactRecords: number;
  readonly #compactBytes: number;

  private constructor(
    readonly dir: string,
    writer: JournalWriter,
    gen: number,
    gens: number[],
    since: { records: number; bytes: number },
    private readonly log: Logger,
    opts: DurableOptions,
  ) {
    this.#writer = writer;
    this.#gen = gen;
    this.#gens = gens;
    this.#records = since.records;
    this.#bytes = since.bytes;
    this.#compactRecords = opts.compactRecords ?? 50_000;
    this.#compactBytes = opts.compactBytes ?? 32 * 1024 * 1024;
  }

  /** Loads the snapshot and replays newer journals; appends go to a fresh generation. */
  static async open(
    dir: string,
    log: Logger,
    opts: DurableOptions = {},
  ): Promise<{ durable: DurableState; restored: Map<string, StoredEntry>; stats: LoadStats }> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    let t = performance.now();
    const snap = await readSnapshot(join(dir, SNAPSHOT));
    const snapshotMs = performance.now() - t;
    const from = snap?.journal ?? 0;
    const restored = new Map<string, StoredEntry>();
    for (const s of snap?.entries ?? []) restored.set(s.entry.host, s);

    t = performance.now();
    const gens: number[] = [];
    for (const name of await readdir(dir)) {
      const m = GEN_RE.exec(name);
      if (m) gens.push(Number(m[1]));
    }
    gens.sort((a, b) => a - b);
    let records = 0;
    let bytes = 0;
    let ignoredLines = 0;
    for (const gen of gens) {
      if (gen < from) continue; // covered by the snapshot; deleted by the next compaction
      const path = genPath(dir, gen);
      const r = await readJournal(path);
      for (const rec of r.records) replay(restored, rec);
      records += r.records.length;
      bytes += r.bytes;
      ignoredLines += r.ignoredLines;
      if (r.badLine !== undefined) {
        log.warn({ file: path, line: r.badLine, ignored: r.ignoredLines }, 'journal: unreadable line; it and the lines after it were never acknowledged and are ignored');
      } else if (r.ignoredLines > 0) {
        log.info({ file: path }, 'journal: torn last line (a write cut short by a crash) ignored');
      }
    }
    const journalMs = performance.now() - t;

    // Never append to a file a crash may have torn: a new generation per start.
    const gen = Math.max(from, (gens.at(-1) ?? -1) + 1);
    const writer = await JournalWriter.create(genPath(dir, gen));
    await fsyncDir(dir);
    const durable = new DurableState(dir, writer, gen, [...gens, gen], { records, bytes }, log, opts);
    const stats = { snapshotEntries: snap?.entries.length ?? 0, snapshotMs, journalRecords: records, journalMs, ignoredLines };
    return { durable, restored, stats };
  }

  /**
   * Throws STATE_UNAVAILABLE once a journal write failed. Checked before a
   * change is applied, so a store that can no longer persist changes nothing.
   */
  check(): void {
    const failed = this.#failed ?? this.#writer.failed;
    if (failed !== undefined) throw unavailable(failed);
  }

  put(s: StoredEntry): Promise<void> {
    return this.#append({ op: 'put', ...toRecord(s) });
  }

  delete(host: string): Promise<void> {
    return this.#append({ op: 'del', host });
  }

  heartbeat(host: string, expiresAt: number): Promise<void> {
    return this.#append({ op: 'hb', host, expires_at: expiresAt });
  }

  batch(puts: readonly StoredEntry[], deletes: readonly string[]): Promise<void> {
    return this.#append({ op: 'batch', puts: puts.map(toRecord), del: [...deletes] });
  }

  /** True when the journals since the snapshot passed a threshold and no compaction runs or backs off. */
  get wantsCompaction(): boolean {
    if (this.#closed || this.#compacting !== undefined || Date.now() < this.#retryAt) return false;
    return this.#records >= this.#compactRecords || this.#bytes >= this.#compactBytes;
  }

  /**
   * Writes a snapshot and drops the journals it covers. `between` runs its
   * function between two changes (the control plane's queue), where `capture`
   * returns every API entry. Concurrent calls share one compaction.
   */
  compact(between: <T>(fn: () => Promise<T>) => Promise<T>, capture: () => StoredEntry[]): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#compacting ??= this.#compact(between, capture).finally(() => {
      this.#compacting = undefined;
    });
    return this.#compacting;
  }

  async #compact(between: <T>(fn: () => Promise<T>) => Promise<T>, capture: () => StoredEntry[]): Promise<void> {
    const started = performance.now();
    const gen = this.#gen + 1;
    const next = await JournalWriter.create(genPath(this.dir, gen));
    try {
      await fsyncDir(this.dir);
    } catch (err) {
      // Unused: remove it, or the next attempt would find its name taken.
      await next.close();
      await rm(next.path, { force: true });
      this.#retryAt = Date.now() + COMPACT_RETRY_MS;
      throw err;
    }
    const { old, entries, since } = await between(async () => {
      const o = this.#writer;
      const s = { records: this.#records, bytes: this.#bytes };
      this.#writer = next;
      this.#gen = gen;
      this.#gens.push(gen);
      this.#records = 0;
      this.#bytes = 0;
      return { old: o, entries: capture(), since: s };
    });
    try {
      try {
        await old.close(); // its last group reaches the disk first
      } finally {
        this.#retire(old);
      }
      await writeSnapshot(join(this.dir, SNAPSHOT), gen, entries);
    } catch (err) {
      // The old snapshot and every journal since it are still there: nothing is lost.
      this.#records += since.records;
      this.#bytes += since.bytes;
      this.#retryAt = Date.now() + COMPACT_RETRY_MS;
      throw err;
    }
    const covered = this.#gens.filter((g) => g < gen);
    this.#gens = this.#gens.filter((g) => g >= gen);
    await Promise.all(covered.map((g) => rm(genPath(this.dir, g), { force: true })));
    this.#compactions++;
    this.log.info({ entries: entries.length, journal: gen, ms: Math.round(performance.now() - started) }, 'state snapshot written; older journals removed');
  }

  stats(): DurableStats {
    const w = this.#writer;
    return {
      records: this.#closedRecords + w.records,
      fsyncs: this.#closedFsyncs + w.fsyncs,
      bytes: this.#closedBytes + w.bytes,
      compactions: this.#compactions,
    };
  }

  /** Waits for a running compaction and the last group, then closes the journal. */
  async close(): Promise<DurableStats> {
    this.#closed = true;
    await this.#compacting?.catch(() => undefined);
    await this.#writer.close();
    return this.stats();
  }

  #retire(w: JournalWriter): void {
    this.#closedRecords += w.records;
    this.#closedFsyncs += w.fsyncs;
    this.#closedBytes += w.bytes;
  }

  #append(rec: JournalRecord): Promise<void> {
    const w = this.#writer;
    const before = w.bytes;
    const done = w.append(rec);
    this.#records++;
    this.#bytes += w.bytes - before;
    return done.catch((err: unknown) => {
      this.#failed ??= err as Error;
      throw unavailable(err);
    });
  }
}

function unavailable(cause: unknown): EdgewayError {
  return new EdgewayError('STATE_UNAVAILABLE', `the state journal cannot be written (${(cause as Error).message}); restart edgeway once the disk is fixed`, { cause });
}
