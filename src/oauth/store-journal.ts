// Durability of the OAuth store under `data_dir/oauth` (issue 7 point 5:
// written before the response, surviving kill -9). The same scheme as the
// route state (src/control/journal.ts): records appended to a journal with
// group commit (one fdatasync shared by concurrent requests) and a snapshot
// written atomically. Here the snapshot is itself a file of records
// (StoreState.records()), so one reader serves both.
//
//   snapshot.jsonl        first line {"gen": G}, then the records it holds
//   journal-<gen>.jsonl   records after the snapshot; a new generation per
//                         start and per compaction, so a file a crash may
//                         have torn is never appended to again.
//
// A record counts only with its newline (the last byte of each write): a
// torn last line was never acknowledged and is ignored, and so is anything
// after an unreadable line.

import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { JournalWriter } from '../control/journal.js';
import type { Logger } from '../log.js';
import { fsyncDir, writeFileAtomic } from '../tls/atomic-write.js';
import type { OAuthRecord, StoreState } from './store-state.js';

const SNAPSHOT = 'snapshot.jsonl';
const JOURNAL = /^journal-(\d+)\.jsonl$/;
/** Compact once the journals since the snapshot hold this much. */
const COMPACT_BYTES = 32 * 1024 * 1024;

const genPath = (dir: string, gen: number): string => join(dir, `journal-${gen}.jsonl`);

function isRecord(v: unknown): v is OAuthRecord {
  return typeof v === 'object' && v !== null && typeof (v as { o?: unknown }).o === 'string';
}

/** The complete lines of `text` as records; stops at the first line that is not one. */
function parseLines(text: string, file: string, log: Logger): unknown[] {
  const out: unknown[] = [];
  let pos = 0;
  while (pos < text.length) {
    const nl = text.indexOf('\n', pos);
    if (nl === -1) {
      log.info({ file }, 'oauth store: torn last line (a write cut short by a crash) ignored');
      break;
    }
    try {
      out.push(JSON.parse(text.slice(pos, nl)));
    } catch {
      log.warn({ file }, 'oauth store: unreadable line; it and the lines after it were never acknowledged and are ignored');
      break;
    }
    pos = nl + 1;
  }
  return out;
}

export class StoreJournal {
  #writer: JournalWriter<OAuthRecord>;
  #gen: number;
  #compacting: Promise<void> | undefined;

  private constructor(
    readonly dir: string,
    writer: JournalWriter<OAuthRecord>,
    gen: number,
    private readonly log: Logger,
    private readonly compactBytes: number,
  ) {
    this.#writer = writer;
    this.#gen = gen;
  }

  /** Loads snapshot and journals into `state`, then starts a new generation. */
  static async open(dir: string, state: StoreState, log: Logger, compactBytes = COMPACT_BYTES): Promise<StoreJournal> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    let from = 0;
    const snap = await readFile(join(dir, SNAPSHOT), 'utf8').catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return undefined;
      throw e;
    });
    if (snap !== undefined) {
      const [head, ...recs] = parseLines(snap, SNAPSHOT, log);
      from = (head as { gen?: number } | undefined)?.gen ?? 0;
      for (const r of recs) if (isRecord(r)) state.apply(r);
    }
    const gens = (await readdir(dir))
      .map((f) => JOURNAL.exec(f))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
    for (const gen of gens) {
      if (gen < from) continue;
      const text = await readFile(genPath(dir, gen), 'utf8');
      for (const r of parseLines(text, genPath(dir, gen), log)) if (isRecord(r)) state.apply(r);
    }
    const gen = Math.max(from, (gens.at(-1) ?? -1) + 1);
    const writer = await JournalWriter.create<OAuthRecord>(genPath(dir, gen));
    await fsyncDir(dir);
    return new StoreJournal(dir, writer, gen, log, compactBytes);
  }

  /** Resolves once `r` (and everything before it) is on disk. */
  append(r: OAuthRecord): Promise<void> {
    return this.#writer.append(r);
  }

  get wantsCompaction(): boolean {
    return this.#compacting === undefined && this.#writer.bytes >= this.compactBytes;
  }

  /**
   * Snapshot + new generation. `capture` runs in the same tick as the switch
   * of writers, so the snapshot holds exactly the records appended before it
   * and the new journal exactly those after it.
   */
  compact(capture: () => OAuthRecord[]): Promise<void> {
    this.#compacting ??= this.#compact(capture).finally(() => {
      this.#compacting = undefined;
    });
    return this.#compacting;
  }

  async #compact(capture: () => OAuthRecord[]): Promise<void> {
    const gen = this.#gen + 1;
    const next = await JournalWriter.create<OAuthRecord>(genPath(this.dir, gen));
    await fsyncDir(this.dir);
    const old = this.#writer;
    this.#writer = next;
    this.#gen = gen;
    const lines = [JSON.stringify({ gen }), ...capture().map((r) => JSON.stringify(r))];
    await old.close();
    await writeFileAtomic(join(this.dir, SNAPSHOT), lines.join('\n') + '\n', 0o600);
    for (const f of await readdir(this.dir)) {
      const m = JOURNAL.exec(f);
      if (m !== null && Number(m[1]) < gen) await rm(join(this.dir, f), { force: true });
    }
    this.log.debug({ gen, records: lines.length - 1 }, 'oauth store compacted');
  }

  async close(): Promise<void> {
    await this.#compacting?.catch(() => undefined);
    await this.#writer.close();
  }
}
