// The state journal (issue 3, "nothing accepted is lost"): one JSON record per
// line, appended, and durable before the change is acknowledged. Group commit:
// records appended while a write+fdatasync is in flight wait and go out
// together in the next one, so concurrent clients share fsyncs instead of
// queueing for one each (PostgreSQL's and etcd's WAL do the same).
//
// A file is only ever appended to by the process that created it: a restart
// opens a new generation, so a torn tail left by a crash stays the last line
// of its file and is recognised as such when read.

import { open, readFile, type FileHandle } from 'node:fs/promises';
import type { StoredEntry } from '../admin/host-store.js';
import type { HostEntry } from '../routes/types.js';

/** An entry as journal and snapshot store it: absolute lease deadline in epoch ms. */
export interface EntryRecord {
  readonly entry: HostEntry;
  readonly version: number;
  readonly expires_at: number | null;
}

export type JournalRecord =
  | ({ readonly op: 'put' } & EntryRecord)
  | { readonly op: 'del'; readonly host: string }
  /** A renewed lease: only the new deadline (heartbeats are the most frequent change). */
  | { readonly op: 'hb'; readonly host: string; readonly expires_at: number }
  /** All or nothing: one line, so a torn write loses the whole batch or none of it. */
  | { readonly op: 'batch'; readonly puts: readonly EntryRecord[]; readonly del: readonly string[] };

export function toRecord(s: StoredEntry): EntryRecord {
  return { entry: s.entry, version: s.version, expires_at: s.expiresAt };
}

export function fromRecord(r: EntryRecord): StoredEntry {
  return { entry: r.entry, version: r.version, expiresAt: r.expires_at };
}

/** Applies one record to a host → entry map (restart replay). Idempotent. */
export function replay(into: Map<string, StoredEntry>, rec: JournalRecord): void {
  switch (rec.op) {
    case 'put':
      into.set(rec.entry.host, fromRecord(rec));
      return;
    case 'del':
      into.delete(rec.host);
      return;
    case 'hb': {
      const cur = into.get(rec.host);
      if (cur !== undefined) into.set(rec.host, { ...cur, expiresAt: rec.expires_at });
      return;
    }
    case 'batch':
      for (const p of rec.puts) into.set(p.entry.host, fromRecord(p));
      for (const h of rec.del) into.delete(h);
      return;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function isEntryRecord(v: unknown): v is EntryRecord {
  if (!isObject(v) || !isObject(v['entry'])) return false;
  const e = v['entry'];
  const exp = v['expires_at'];
  return (
    typeof e['host'] === 'string' &&
    Array.isArray(e['locations']) &&
    Number.isInteger(v['version']) &&
    (exp === null || typeof exp === 'number')
  );
}

function isRecord(v: unknown): v is JournalRecord {
  if (!isObject(v)) return false;
  switch (v['op']) {
    case 'put':
      return isEntryRecord(v);
    case 'del':
      return typeof v['host'] === 'string';
    case 'hb':
      return typeof v['host'] === 'string' && typeof v['expires_at'] === 'number';
    case 'batch':
      return Array.isArray(v['puts']) && v['puts'].every(isEntryRecord) && Array.isArray(v['del']) && v['del'].every((h) => typeof h === 'string');
    default:
      return false;
  }
}

export interface JournalRead {
  readonly records: JournalRecord[];
  readonly bytes: number;
  /** Lines not replayed: a torn tail (no newline) and, after an unreadable line, everything behind it. */
  readonly ignoredLines: number;
  /** 1-based line number of the first unreadable complete line, when there was one. */
  readonly badLine: number | undefined;
}

/**
 * Reads a journal file. A record counts only with its newline: the newline is
 * the last byte of every write, so a line without one was never acknowledged.
 * Acknowledged records always form a prefix of the file (each fsync covers
 * all earlier writes), so at the first unreadable line the rest is dropped:
 * it can only be the unacknowledged tail of a crash.
 */
export async function readJournal(path: string): Promise<JournalRead> {
  const text = await readFile(path, 'utf8');
  const records: JournalRecord[] = [];
  let pos = 0;
  let line = 0;
  while (pos < text.length) {
    const nl = text.indexOf('\n', pos);
    if (nl === -1) return { records, bytes: text.length, ignoredLines: 1, badLine: undefined };
    line++;
    let rec: unknown;
    try {
      rec = JSON.parse(text.slice(pos, nl));
    } catch {
      rec = undefined;
    }
    if (!isRecord(rec)) {
      const rest = text.slice(pos).split('\n').filter((l) => l !== '').length;
      return { records, bytes: text.length, ignoredLines: rest, badLine: line };
    }
    records.push(rec);
    pos = nl + 1;
  }
  return { records, bytes: text.length, ignoredLines: 0, badLine: undefined };
}

interface Group {
  readonly promise: Promise<void>;
  resolve(): void;
  reject(e: unknown): void;
}

function newGroup(): Group {
  let resolve!: () => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Callers that journal without waiting (lease expiry) must not turn a
  // failed fsync into an unhandled rejection; those that wait still see it.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

/** One journal file being appended to; `R` is the record type (host entries by default, the OAuth store's records in src/oauth/store-journal.ts). */
export class JournalWriter<R = JournalRecord> {
  /** Bytes and records appended through this writer. */
  bytes = 0;
  records = 0;
  fsyncs = 0;
  #pending: string[] = [];
  #group: Group | undefined;
  #flushing: Promise<void> | undefined;
  #failed: Error | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
  ) {}

  /** Creates the file (it must not exist: a generation is written by one process only). */
  static async create<R = JournalRecord>(path: string): Promise<JournalWriter<R>> {
    return new JournalWriter<R>(path, await open(path, 'ax', 0o600));
  }

  /** Set once a write or fsync failed; nothing more is accepted (its pages may be lost, fsyncgate). */
  get failed(): Error | undefined {
    return this.#failed;
  }

  /** Resolves once `rec` and everything appended before it is on disk. */
  append(rec: R): Promise<void> {
    if (this.#failed !== undefined) return Promise.reject(this.#failed);
    if (this.#closed) return Promise.reject(new Error(`${this.path}: journal closed`));
    const line = JSON.stringify(rec) + '\n';
    this.#pending.push(line);
    this.bytes += Buffer.byteLength(line);
    this.records++;
    const group = (this.#group ??= newGroup());
    this.#flushing ??= this.#flush();
    return group.promise;
  }

  async #flush(): Promise<void> {
    while (this.#pending.length > 0) {
      const data = Buffer.from(this.#pending.join(''));
      const group = this.#group!;
      this.#pending = [];
      this.#group = undefined;
      try {
        let off = 0;
        while (off < data.length) off += (await this.fh.write(data, off, data.length - off)).bytesWritten;
        await this.fh.datasync();
        this.fsyncs++;
        group.resolve();
      } catch (e) {
        this.#failed = e as Error;
        group.reject(e);
        // Appended while this write was in flight: they fail with it.
        (this.#group as Group | undefined)?.reject(e);
        this.#group = undefined;
        this.#pending = [];
      }
    }
    this.#flushing = undefined;
  }

  /** Waits for the last group, then closes the file. Idempotent. */
  close(): Promise<void> {
    this.#closed = true;
    this.#closing ??= (async () => {
      await this.#flushing;
      await this.fh.close();
    })();
    return this.#closing;
  }
}
