// Rooms on disk: y-leveldb under data_dir/collab, in y-leveldb's own key
// layout (['v1', doc, 'update', clock], ['v1_sv', doc]) so its tools read
// what we write. Issue 6 point 3 and its traps decide how we use it:
//
// - y-leveldb catches every failure inside `_transact`, prints a warning and
//   resolves null: the caller cannot tell a lost write from a good one. Every
//   operation here runs its own function inside `_transact` and catches the
//   error itself, so a failure rejects the caller's promise with the cause.
// - `storeUpdate` reads the current clock (an iterator) before every put and
//   all rooms share one transaction chain, so one write per update costs two
//   round trips. The relay knows each room's clock since the room's load, so
//   every update queued in one event-loop turn, across all rooms, goes out as
//   ONE `db.batch` (group commit); the next batch starts when it resolves.
//   Batches resolve in order, so a room's updates become durable in order.
// - Compaction (one merged update replacing a room's log) goes through the
//   same queue as the room's appends, so it can never delete an update that
//   was written after the state it merged (the race y-leveldb's own
//   flushDocument has against a concurrent storeUpdate).

import * as encoding from 'lib0/encoding';
import * as decoding from 'lib0/decoding';
import { LeveldbPersistence, getLevelUpdatesEntries, keyEncoding } from 'y-leveldb';

/** Who waits for a write: the room, told in order, without a closure per update. */
export interface WriteOwner {
  durable(seq: number): void;
  failed(err: unknown): void;
}

interface Op {
  readonly owner: WriteOwner;
  readonly seq: number;
  /** Keys already in y-leveldb's encoding. */
  readonly puts: readonly { key: Buffer; value: Uint8Array }[];
  /** Compaction: updates below this clock go once the puts are durable. */
  readonly clearBelow: number;
  readonly keys: RoomKeys;
}

export interface LoadedRoom {
  readonly updates: readonly Uint8Array[];
  /** Clock of the last stored update, -1 for a new room. */
  readonly clock: number;
  /** The lowest stored clock (what a compaction may delete from). */
  readonly firstClock: number;
}

const svKey = (doc: string): Buffer => keyEncoding.encode(['v1_sv', doc]);

/** A room's name in the store, and its update keys' common start in y-leveldb's encoding (built once per room). */
export interface RoomKeys {
  readonly doc: string;
  readonly updatePrefix: Buffer;
}

export function roomKeys(doc: string): RoomKeys {
  return { doc, updatePrefix: keyEncoding.encode(['v1', doc, 'update']) };
}

/** y-leveldb's encoding of ['v1', doc, 'update', clock] (its tag 1: a 32-bit big-endian number) without an encoder per key. */
export function updateKeyOf(keys: RoomKeys, clock: number): Buffer {
  const prefix = keys.updatePrefix;
  const key = Buffer.allocUnsafe(prefix.length + 5); // small: from Node's pool, no ArrayBuffer of its own
  prefix.copy(key, 0);
  key[prefix.length] = 1;
  key.writeUInt32BE(clock, prefix.length + 1);
  return key;
}

/** y-leveldb's state-vector record: the clock it was written at, then the vector. */
export function stateVectorRecord(sv: Uint8Array, clock: number): Uint8Array {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, clock);
  encoding.writeVarUint8Array(e, sv);
  return encoding.toUint8Array(e);
}

export function readStateVectorRecord(buf: Uint8Array): { clock: number; sv: Uint8Array } {
  const d = decoding.createDecoder(buf);
  const clock = decoding.readVarUint(d);
  return { clock, sv: decoding.readVarUint8Array(d) };
}

type Db = {
  batch(ops: { type: 'put'; key: Buffer; value: Uint8Array; keyEncoding: 'buffer' }[]): Promise<void>;
  clear(range: { gte: Buffer; lt: Buffer; keyEncoding: 'buffer' }): Promise<void>;
  close(): Promise<void>;
  open(): Promise<void>;
};

export class RoomStore {
  readonly #ldb: LeveldbPersistence;
  #queue: Op[] = [];
  #flushing = false;
  #closed = false;

  constructor(dir: string) {
    this.#ldb = new LeveldbPersistence(dir);
  }

  /** Runs `f` on the db in y-leveldb's transaction chain; rejects with the real error (y-leveldb would resolve null). */
  async #run<T>(f: (db: Db) => Promise<T>): Promise<T> {
    const r = await this.#ldb._transact(async (db: Db) => {
      try {
        return { ok: true as const, value: await f(db) };
      } catch (err) {
        return { ok: false as const, err };
      }
    });
    if (r === null) throw new Error('y-leveldb transaction failed');
    if (!r.ok) throw r.err;
    return r.value;
  }

  /** Opens the database now (a locked or unreadable data_dir stops the start instead of failing rooms later). */
  open(): Promise<void> {
    return this.#run((db) => db.open());
  }

  /** Every stored update of a room, in order, with its clocks. */
  load(doc: string): Promise<LoadedRoom> {
    if (this.#closed) return Promise.reject(new Error('store closed'));
    return this.#run(async (db) => {
      const entries = await getLevelUpdatesEntries(db, doc);
      const first = entries[0];
      const last = entries[entries.length - 1];
      return {
        updates: entries.map((e) => e.value),
        clock: last === undefined ? -1 : (last.key[3] as number),
        firstClock: first === undefined ? 0 : (first.key[3] as number),
      };
    });
  }

  /** Queues an update at `clock`; `sv` (a new room): also write the state-vector record y-leveldb lists rooms by. */
  append(owner: WriteOwner, seq: number, keys: RoomKeys, clock: number, update: Uint8Array, sv: Uint8Array | undefined): void {
    const puts = [{ key: updateKeyOf(keys, clock), value: update }];
    if (sv !== undefined) puts.push({ key: svKey(keys.doc), value: stateVectorRecord(sv, clock) });
    this.#enqueue({ owner, seq, puts, clearBelow: -1, keys });
  }

  /** Queues a compaction: `state` (the whole room) at `clock`, then every update below `clock` deleted. */
  compact(owner: WriteOwner, seq: number, keys: RoomKeys, clock: number, state: Uint8Array, sv: Uint8Array): void {
    const puts = [
      { key: updateKeyOf(keys, clock), value: state },
      { key: svKey(keys.doc), value: stateVectorRecord(sv, clock) },
    ];
    this.#enqueue({ owner, seq, puts, clearBelow: clock, keys });
  }

  #enqueue(op: Op): void {
    if (this.#closed) {
      op.owner.failed(new Error('store closed'));
      return;
    }
    this.#queue.push(op);
    if (!this.#flushing) {
      this.#flushing = true;
      setImmediate(flushStore, this);
    }
  }

  /** One batch of everything queued; the next starts when it has resolved (group commit). */
  async flush(): Promise<void> {
    const ops = this.#queue;
    this.#queue = [];
    const batch: { type: 'put'; key: Buffer; value: Uint8Array; keyEncoding: 'buffer' }[] = [];
    for (const op of ops) for (const p of op.puts) batch.push({ type: 'put', key: p.key, value: p.value, keyEncoding: 'buffer' });
    let err: unknown;
    try {
      await this.#run(async (db) => {
        await db.batch(batch);
        for (const op of ops) {
          if (op.clearBelow > 0) await db.clear({ gte: updateKeyOf(op.keys, 0), lt: updateKeyOf(op.keys, op.clearBelow), keyEncoding: 'buffer' });
        }
      });
    } catch (e) {
      err = e;
    }
    for (const op of ops) {
      if (err === undefined) op.owner.durable(op.seq);
      else op.owner.failed(err);
    }
    if (this.#queue.length > 0) setImmediate(flushStore, this);
    else this.#flushing = false;
  }

  /** Fails every later write (tests use it to make the store fail the way a full or broken disk does). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    while (this.#flushing) await new Promise((r) => setTimeout(r, 5));
    await this.#ldb.destroy();
  }

  /** Breaks the database under the relay without telling it (for tests of the failure path). */
  async breakForTest(): Promise<void> {
    await this.#run((db) => db.close());
  }
}

function flushStore(store: RoomStore): void {
  void store.flush();
}
