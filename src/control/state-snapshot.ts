// The state snapshot (DESIGN.md "Process model": the route table's source of
// truth and its snapshot on disk): every host entry stored through the admin
// API, with its version and absolute lease deadline, written atomically. It
// names the first journal generation it does not cover; start-up loads it and
// replays the journals from that generation on.
//
// One JSON document, but serialized an entry at a time with a yield every few
// thousand, so writing 100,000 entries never holds the event loop (and the
// data plane sharing it) for more than a few milliseconds.

import { readFile } from 'node:fs/promises';
import type { StoredEntry } from '../admin/host-store.js';
import { EdgewayError } from '../errors.js';
import { writeFileAtomic } from '../tls/atomic-write.js';
import { fromRecord, isEntryRecord, toRecord } from './journal.js';

export const SNAPSHOT_FORMAT = 1;
/** Entries serialized between two yields to the event loop. */
const CHUNK = 2000;

export interface Snapshot {
  /** First journal generation not covered by this snapshot. */
  readonly journal: number;
  readonly entries: StoredEntry[];
}

const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** The snapshot file's bytes; entries one per line, so the file is readable with grep. */
export async function serializeSnapshot(journal: number, entries: readonly StoredEntry[]): Promise<Buffer> {
  const parts: string[] = [`{"format":${SNAPSHOT_FORMAT},"journal":${journal},"saved_at":${JSON.stringify(new Date().toISOString())},"entries":[`];
  for (let i = 0; i < entries.length; i++) {
    parts.push((i === 0 ? '\n' : ',\n') + JSON.stringify(toRecord(entries[i]!)));
    if (i % CHUNK === CHUNK - 1) await yieldToLoop();
  }
  parts.push('\n]}\n');
  return Buffer.from(parts.join(''));
}

/** Writes the snapshot atomically (temp file, fsync, rename, fsync of the directory). */
export async function writeSnapshot(path: string, journal: number, entries: readonly StoredEntry[]): Promise<void> {
  await writeFileAtomic(path, await serializeSnapshot(journal, entries), 0o600);
}

function invalid(path: string, why: string, cause?: unknown): EdgewayError {
  return new EdgewayError('STATE_INVALID', `${path}: ${why}`, { field: 'data_dir', cause });
}

/**
 * Reads the snapshot, or undefined when there is none yet. It was written
 * atomically, so a file that does not parse is damage, not a crash: the start
 * stops rather than come up without the entries it held.
 */
export async function readSnapshot(path: string): Promise<Snapshot | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw invalid(path, `not valid JSON (${(e as Error).message}); restore it from a backup or move it away to start without it`, e);
  }
  const d = doc as { format?: unknown; journal?: unknown; entries?: unknown };
  if (typeof doc !== 'object' || doc === null || d.format !== SNAPSHOT_FORMAT) {
    throw invalid(path, `unknown snapshot format ${JSON.stringify(d?.format)}`);
  }
  if (!Number.isInteger(d.journal) || (d.journal as number) < 0 || !Array.isArray(d.entries)) {
    throw invalid(path, 'expected "journal" (integer) and "entries" (array)');
  }
  const entries: StoredEntry[] = new Array(d.entries.length);
  for (let i = 0; i < d.entries.length; i++) {
    const r: unknown = d.entries[i];
    if (!isEntryRecord(r)) throw invalid(path, `entries[${i}] is not a stored host entry`);
    entries[i] = fromRecord(r);
  }
  return { journal: d.journal as number, entries };
}
