// One room: its Y.Doc, awareness and connections, and the rule that makes
// the relay lose nothing (issue 6 point 3): a change reaches another peer only
// once it is durable.
//
// - The stored state is applied before the first message is processed or any
//   sync message sent (y-websocket #81: the reference server answers a
//   client's step 1 from an empty document while it still loads).
// - A change is applied to the doc at once (so the next message sees it), the
//   update as received queued to the store, and its broadcast HELD with the
//   write's sequence number; replies computed from the doc (sync step 2) are
//   held behind every write queued before them. The store acknowledges writes
//   in order and `durable(seq)` releases what waited for them. After `kill -9`
//   no peer has anything the store lacks.
// - A failed write fails the room: nothing held is sent, its sockets close
//   with 1011 and it leaves memory (Hocuspocus keeps such documents and serves
//   them later); clients reconnect and push their state again to a fresh load.

import * as decoding from 'lib0/decoding';
import * as awarenessProtocol from 'y-protocols/awareness';
import * as Y from 'yjs';
import type { WebSocket } from 'ws';
import { CLOSE } from './admission.js';
import {
  MSG_AUTH, MSG_AWARENESS, MSG_QUERY_AWARENESS, MSG_SYNC, SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE,
  UnsupportedMessage, awarenessMessage, step1Message, step2Message,
} from './protocol.js';
import { binaryFrame, syncUpdateFrame } from './frame.js';
import { roomKeys, type RoomKeys, type RoomStore, type WriteOwner } from './room-store.js';
import { checkUpdate } from './update-check.js';

/** One client socket in a room. */
export class Conn {
  /** Awareness client ids this socket announced (removed for everyone when it leaves). */
  readonly ids = new Set<number>();
  /** Set false at each ping, true at each pong: two pings without a pong and the peer is dead. */
  alive = true;
  /** Which slice of the service's pings this socket is in. */
  pingSlice = 0;
  /** Messages that arrived while the room loaded, processed in order once it is ready. */
  early: Buffer[] | undefined;
  constructor(
    readonly ws: WebSocket,
    readonly room: Room,
    /** When the credential expires (epoch ms): closed with 4401 then. */
    readonly expMs: number,
  ) {}
}

/** What a room needs from the service that holds it. */
export interface RoomHost {
  readonly store: RoomStore;
  readonly compactAfter: number;
  send(conn: Conn, msg: Uint8Array): void;
  /** Sends a frame built once for every peer (frame.ts). */
  sendFrame(conn: Conn, frame: Buffer): void;
  drop(conn: Conn, code: number, reason: string): void;
  /** The socket closed (whoever closed it): the host forgets it, the room lets it leave. */
  closed(conn: Conn): void;
  roomFailed(room: Room, err: unknown): void;
  updatePersisted(): void;
}

interface Held {
  readonly seq: number;
  /** A reply's message, or a broadcast's frame (encoded once for all peers). */
  readonly msg: Uint8Array | undefined;
  /** Reply to this socket only; undefined: broadcast `msg` as a frame to every socket but `except`. */
  readonly to: Conn | undefined;
  readonly except: Conn | undefined;
  readonly done: (() => void) | undefined;
}

/**
 * Whether a transaction changed the document: the test Yjs itself makes
 * before it emits 'update' (writeUpdateMessageFromTransaction).
 */
function changedBy(tr: Y.Transaction): boolean {
  if (tr.deleteSet.clients.size > 0) return true;
  const before = tr.beforeState;
  if (tr.afterState.size !== before.size) return true;
  for (const [client, clock] of tr.afterState) if (before.get(client) !== clock) return true;
  return false;
}

/**
 * Empties the array of finished transactions a doc hands to
 * 'afterAllTransactions' (issue 6 Speed). Yjs replaces
 * `doc._transactionCleanups` with a new array after each transaction but
 * leaves the old one holding the transaction. A room gets a transaction
 * every few hundred ms, so by then its waiting, empty array has usually been
 * promoted to the old generation; the transaction pushed into it is then
 * referenced from old space, and every scavenge keeps it and all it holds
 * (state vectors, delete set, changed types, the event) alive until the next
 * mark-compact, although nothing can reach it. Measured (a process holding
 * the relay's 1,000 rooms fed the bench's updates at 2,000/s, no sockets, the
 * store bypassed, --trace-gc-nvp):
 * 2.3 MB survived each scavenge without this, 0.53 MB with it, which is what
 * the documents' own new items account for (bench/NOTES.md collab step 8).
 * Registered last on the doc: nothing after it reads the array.
 */
function dropFinishedTransactions(_doc: Y.Doc, finished: Y.Transaction[]): void {
  finished.length = 0;
}

export class Room implements WriteOwner {
  readonly doc = new Y.Doc();
  readonly awareness = new awarenessProtocol.Awareness(this.doc);
  readonly conns = new Set<Conn>();
  state: 'loading' | 'ready' | 'failed' | 'unloaded' = 'loading';
  /** Epoch ms when the last socket left (the unload grace counts from here). */
  emptySince = Date.now();
  /** Clock of the last update queued to the store (y-leveldb's per-document clock). */
  #clock = -1;
  #sinceCompact = 0;
  #seq = 0;
  #durableSeq = 0;
  #held: Held[] = [];
  /** Set by the doc's 'afterTransaction': whether the last transaction changed anything, and the state it started from (apply() clears it at once). */
  #changed = false;
  #before: Map<number, number> | undefined;
  readonly #keys: RoomKeys;
  readonly ready: Promise<void>;

  constructor(
    readonly key: string,
    readonly host: RoomHost,
  ) {
    // The relay has no user of its own in the room; its awareness timer is
    // replaced by the service's one coarse interval (expireAwareness).
    clearInterval((this.awareness as unknown as { _checkInterval: NodeJS.Timeout })._checkInterval);
    this.awareness.setLocalState(null);
    this.#keys = roomKeys(key);
    // No 'update' listener: with one, Yjs encodes every transaction's update
    // again (apply() stores and broadcasts the update as received instead).
    this.doc.on('afterTransaction', (tr: Y.Transaction) => {
      this.#changed = changedBy(tr);
      this.#before = tr.beforeState;
    });
    this.doc.on('afterAllTransactions', dropFinishedTransactions);
    this.awareness.on('update', (ch: { added: number[]; updated: number[]; removed: number[] }, origin: unknown) => this.#awarenessChanged(ch, origin));
    this.ready = this.#load();
  }

  async #load(): Promise<void> {
    try {
      const stored = await this.host.store.load(this.key);
      if (this.state !== 'loading') return;
      Y.transact(this.doc, () => {
        for (const u of stored.updates) Y.applyUpdate(this.doc, u);
      });
      this.#before = undefined;
      this.#clock = stored.clock;
      this.#sinceCompact = stored.updates.length > 1 ? stored.updates.length : 0;
    } catch (err) {
      this.failed(err);
      return;
    }
    this.state = 'ready';
    for (const c of this.conns) this.#start(c);
  }

  join(conn: Conn): void {
    this.conns.add(conn);
    if (this.state === 'ready') this.#start(conn);
    else conn.early = [];
  }

  /** Our step 1 and the room's awareness, then whatever the client sent while we loaded. */
  #start(conn: Conn): void {
    this.host.send(conn, step1Message(this.doc));
    if (this.awareness.getStates().size > 0) this.host.send(conn, awarenessMessage(this.awareness, [...this.awareness.getStates().keys()]));
    const early = conn.early;
    conn.early = undefined;
    if (early !== undefined) for (const m of early) if (conn.room.conns.has(conn)) this.receive(conn, m);
  }

  leave(conn: Conn): void {
    if (!this.conns.delete(conn)) return;
    if (this.conns.size === 0) this.emptySince = Date.now();
    if (conn.ids.size > 0 && this.state === 'ready') awarenessProtocol.removeAwarenessStates(this.awareness, [...conn.ids], null);
  }

  /** One binary message from a socket. Closes that socket (1003/1007) on anything it cannot read; the room is untouched. */
  receive(conn: Conn, data: Buffer): void {
    if (conn.early !== undefined) {
      conn.early.push(data);
      return;
    }
    if (this.state !== 'ready') return;
    try {
      const d = decoding.createDecoder(data);
      const type = decoding.readVarUint(d);
      if (type === MSG_SYNC) {
        const sub = decoding.readVarUint(d);
        const payload = decoding.readVarUint8Array(d);
        if (decoding.hasContent(d)) throw new Error('trailing bytes');
        if (sub === SYNC_STEP1) this.#hold(conn, step2Message(this.doc, payload), undefined);
        else if (sub === SYNC_STEP2 || sub === SYNC_UPDATE) {
          // Read the whole update before applying any of it: a bad delete set
          // at its end would otherwise throw after its structs were integrated.
          checkUpdate(payload);
          this.apply(payload, conn);
        } else throw new UnsupportedMessage('sync message type');
      } else if (type === MSG_AWARENESS) {
        const payload = decoding.readVarUint8Array(d);
        if (decoding.hasContent(d)) throw new Error('trailing bytes');
        awarenessProtocol.applyAwarenessUpdate(this.awareness, payload, conn);
      } else if (type === MSG_QUERY_AWARENESS) {
        this.host.send(conn, awarenessMessage(this.awareness, [...this.awareness.getStates().keys()]));
      } else if (type !== MSG_AUTH) {
        // Auth messages are ignored as the reference does: access was decided at the upgrade.
        throw new UnsupportedMessage('message type');
      }
    } catch (err) {
      if (err instanceof UnsupportedMessage) this.host.drop(conn, CLOSE.UNSUPPORTED, 'unsupported message');
      else this.host.drop(conn, CLOSE.INVALID, 'malformed message');
    }
  }

  /**
   * Applies an update that checkUpdate accepted (from a socket, or the admin
   * API's restore) and, unless it changed nothing, queues it to the store as
   * received and holds its broadcast until durable. Stored and sent as
   * received rather than as Yjs's re-encoding of the transaction: the same
   * structs and deletions (updates are idempotent and commute), without a
   * second encoding per update. An update Yjs could not integrate yet (it
   * waits for a missing one: pendingStructs, pendingDs) is stored too, since
   * the transaction that later integrates it stores only its own update.
   */
  apply(update: Uint8Array, origin: Conn | symbol): void {
    this.#changed = false;
    try {
      Y.applyUpdate(this.doc, update, origin);
    } catch (err) {
      // Yjs can throw while it integrates structs that contradict the
      // document (an origin at a clock its client does not have, where Yjs
      // expects one: no reading ahead tells), after it integrated some of
      // them (test/collab-room.test.ts). What went in is stored and sent,
      // as Yjs's own 'update' event would have, so that doc, store and peers
      // stay the same; the caller drops the sender.
      const before = this.#before;
      this.#before = undefined;
      if (this.#changed && before !== undefined) this.#persist(Y.encodeStateAsUpdate(this.doc, Y.encodeStateVector(before)), origin);
      throw err;
    }
    this.#before = undefined;
    const store = this.doc.store;
    if (this.#changed || store.pendingStructs !== null || store.pendingDs !== null) this.#persist(update, origin);
  }

  /** Queued to the store, its broadcast held until durable. */
  #persist(update: Uint8Array, origin: Conn | symbol): void {
    if (this.state !== 'ready') return;
    const first = this.#clock === -1;
    const seq = ++this.#seq;
    this.host.store.append(this, seq, this.#keys, ++this.#clock, update, first ? Y.encodeStateVector(this.doc) : undefined);
    this.#held.push({ seq, msg: syncUpdateFrame(update), to: undefined, except: origin instanceof Conn ? origin : undefined, done: undefined });
    if (++this.#sinceCompact >= this.host.compactAfter) this.compact();
  }

  /** Replaces the room's stored log by one merged update (background: through the store's queue). */
  compact(): void {
    if (this.state !== 'ready' || this.#clock === -1) return;
    this.#sinceCompact = 0;
    this.host.store.compact(this, ++this.#seq, this.#keys, ++this.#clock, Y.encodeStateAsUpdate(this.doc), Y.encodeStateVector(this.doc));
  }

  /** Whether anything stored is not yet in one compacted record. */
  get needsCompaction(): boolean {
    return this.#sinceCompact > 0;
  }

  /** Nothing queued to the store that is not durable yet. */
  get idle(): boolean {
    return this.#durableSeq === this.#seq;
  }

  /** Resolves once everything applied so far is durable; rejects if the room fails first. */
  whenDurable(): Promise<void> {
    if (this.state === 'failed' || this.state === 'unloaded') return Promise.reject(new Error('room failed'));
    if (this.idle) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.#held.push({ seq: this.#seq, msg: undefined, to: undefined, except: undefined, done: resolve });
      this.#onFail.push(reject);
    });
  }

  #onFail: ((e: Error) => void)[] = [];

  #hold(to: Conn | undefined, msg: Uint8Array, except: Conn | undefined): void {
    if (this.idle) {
      if (to !== undefined) this.host.send(to, msg);
      return;
    }
    this.#held.push({ seq: this.#seq, msg, to, except, done: undefined });
  }

  /** The store made writes up to `seq` durable: release what waited for them, in order. */
  durable(seq: number): void {
    if (this.state !== 'ready') return;
    this.#durableSeq = seq;
    this.host.updatePersisted();
    let i = 0;
    const held = this.#held;
    while (i < held.length && held[i]!.seq <= seq) {
      const h = held[i++]!;
      if (h.done !== undefined) h.done();
      else if (h.to !== undefined) {
        if (this.conns.has(h.to)) this.host.send(h.to, h.msg!);
      } else {
        const frame = h.msg as Buffer;
        for (const c of this.conns) if (c !== h.except && c.early === undefined) this.host.sendFrame(c, frame);
      }
    }
    if (i === held.length) this.#held = [];
    else if (i > 0) this.#held = held.slice(i);
    if (this.idle) this.#onFail = [];
  }

  failed(err: unknown): void {
    if (this.state === 'failed' || this.state === 'unloaded') return;
    this.state = 'failed';
    this.#held = [];
    const waiters = this.#onFail;
    this.#onFail = [];
    for (const w of waiters) w(new Error('room failed'));
    this.host.roomFailed(this, err);
  }

  /** Drops the room from memory (after the service removed it from its map). */
  unload(): void {
    if (this.state !== 'failed') this.state = 'unloaded';
    this.awareness.destroy();
    this.doc.destroy();
  }

  #awarenessChanged({ added, updated, removed }: { added: number[]; updated: number[]; removed: number[] }, origin: unknown): void {
    const from = origin instanceof Conn ? origin : undefined;
    if (from !== undefined) {
      for (const id of added) from.ids.add(id);
      for (const id of removed) from.ids.delete(id);
    }
    const changed = added.concat(updated, removed);
    if (changed.length === 0) return;
    const frame = binaryFrame(awarenessMessage(this.awareness, changed));
    for (const c of this.conns) if (c !== from && c.early === undefined) this.host.sendFrame(c, frame);
  }

  /** Removes awareness states their client stopped renewing (y-protocols' 30 s rule, run by the service's timer). */
  expireAwareness(now: number): void {
    const stale: number[] = [];
    for (const [id, meta] of this.awareness.meta) {
      if (now - meta.lastUpdated >= awarenessProtocol.outdatedTimeout && this.awareness.states.has(id)) stale.push(id);
    }
    if (stale.length > 0) awarenessProtocol.removeAwarenessStates(this.awareness, stale, 'timeout');
  }
}
