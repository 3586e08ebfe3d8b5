// A Room against a real RoomStore, without sockets: what the relay does to
// the Y.Doc itself (issue 6).

import t, { type Test } from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as Y from 'yjs';
import { Room, type RoomHost } from '../src/collab/room.js';
import { RoomStore, roomKeys, updateKeyOf } from '../src/collab/room-store.js';
import { keyEncoding } from 'y-leveldb';
import { checkUpdate } from '../src/collab/update-check.js';

/** A room on a fresh store, with a host that records nothing (no sockets). */
async function roomOnStore(t: Test, key: string): Promise<{ room: Room; store: RoomStore }> {
  const dir = await mkdtemp(join(tmpdir(), 'edgeway-room-'));
  const store = new RoomStore(dir);
  t.teardown(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  await store.open();
  const host: RoomHost = {
    store, compactAfter: 500, send() {}, sendFrame() {}, drop() {}, closed() {}, roomFailed() {}, updatePersisted() {},
  };
  const room = new Room(key, host);
  await room.ready;
  t.teardown(() => room.unload());
  return { room, store };
}

/** The doc a fresh load of the room would build. */
async function reloaded(store: RoomStore, key: string): Promise<Y.Doc> {
  const doc = new Y.Doc();
  for (const u of (await store.load(key)).updates) Y.applyUpdate(doc, u);
  return doc;
}

t.test('a room leaves no finished transaction in the array Yjs drops after each one (issue 6 Speed)', async (t) => {
  const { room } = await roomOnStore(t, 'org-a/r');
  // Registered after the room's own listener, as anything else on the doc would be.
  const finished: Y.Transaction[][] = [];
  room.doc.on('afterAllTransactions', (_doc: Y.Doc, list: Y.Transaction[]) => finished.push(list));
  const other = new Y.Doc();
  other.getMap('m').set('k', 'v');
  Y.applyUpdate(room.doc, Y.encodeStateAsUpdate(other));
  t.equal(finished.length, 1, 'one transaction ran');
  t.equal(finished[0]!.length, 0, 'the array Yjs replaced holds no transaction (it would keep one alive from old space until a mark-compact)');
  t.equal(finished[0] === (room.doc as unknown as { _transactionCleanups: unknown })._transactionCleanups, false, 'and Yjs hands over an array it has already replaced (what makes emptying it safe; a Yjs upgrade that changed this fails here)');
  t.equal(room.doc.getMap('m').get('k'), 'v', 'the update applied');
  await room.whenDurable();
});

const FROM_SOCKET = Symbol('socket');

t.test('updates are stored as received; one that changes nothing is not; one waiting for a missing update is (issue 6 point 3)', async (t) => {
  const { room, store } = await roomOnStore(t, 'org-a/raw');
  const other = new Y.Doc();
  const sent: Uint8Array[] = [];
  other.on('update', (u: Uint8Array) => sent.push(u));
  other.getMap('m').set('a', 1);
  other.getMap('m').set('a', 2); // its origin is the first: without it, Yjs keeps it pending
  room.apply(sent[1]!, FROM_SOCKET);
  t.equal(room.doc.getMap('m').get('a'), undefined, 'the second update alone waits for the first');
  await room.whenDurable();
  t.same((await store.load('org-a/raw')).updates.map((u) => Buffer.from(u).toString('hex')), [Buffer.from(sent[1]!).toString('hex')], 'yet it is stored, byte for byte as received');
  room.apply(sent[0]!, FROM_SOCKET);
  t.equal(room.doc.getMap('m').get('a'), 2, 'the first one brings both in');
  room.apply(sent[0]!, FROM_SOCKET); // again: changes nothing
  await room.whenDurable();
  const stored = (await store.load('org-a/raw')).updates;
  t.equal(stored.length, 2, 'the repeat was not stored');
  t.equal((await reloaded(store, 'org-a/raw')).getMap('m').get('a'), 2, 'a reload has what the room has');
});

t.test('an update Yjs throws on while integrating: what went in is stored, and a reload equals the room (issue 6 point 4)', async (t) => {
  // Client 2: an item in map 'm', then an item whose origin is its own clock 7, which does not exist yet.
  const bad = new Uint8Array([1, 2, 2, 0, 0x28, 1, 1, 0x6d, 1, 0x61, 1, 125, 1, 0x84, 2, 7, 1, 0x78, 0]);
  checkUpdate(bad); // reads fine: only integrating it fails
  const fresh = new Y.Doc();
  t.throws(() => Y.applyUpdate(fresh, bad), 'Yjs throws on it');
  t.equal(fresh.getMap('m').get('a'), 1, 'after integrating its first struct');
  const { room, store } = await roomOnStore(t, 'org-a/half');
  t.throws(() => room.apply(bad, FROM_SOCKET), 'apply throws (the caller drops the sender)');
  await room.whenDurable();
  const again = await reloaded(store, 'org-a/half');
  t.same(again.getMap('m').toJSON(), room.doc.getMap('m').toJSON(), 'a reload has what the room has');
  t.same(Y.encodeStateVector(again), Y.encodeStateVector(room.doc), 'the same state vector');
});

t.test("update keys built from a room's prefix are y-leveldb's own encoding of ['v1', doc, 'update', clock]", async (t) => {
  for (const doc of ['org-a/r', '3f2b8c1e-0000-4000-8000-000000000000/notes.v2~draft_1', 'org-ü/ß✓']) {
    const keys = roomKeys(doc);
    for (const clock of [0, 1, 127, 128, 255, 65_536, 2 ** 31, 2 ** 32 - 1]) {
      t.same(updateKeyOf(keys, clock), keyEncoding.encode(['v1', doc, 'update', clock]), `${doc} at ${clock}`);
    }
  }
});
