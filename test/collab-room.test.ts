// A Room against a real RoomStore, without sockets: what the relay does to
// the Y.Doc itself (issue 6).

import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as Y from 'yjs';
import { Room, type RoomHost } from '../src/collab/room.js';
import { RoomStore } from '../src/collab/room-store.js';

t.test('a room leaves no finished transaction in the array Yjs drops after each one (issue 6 Speed)', async (t) => {
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
  const room = new Room('org-a/r', host);
  await room.ready;
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
  room.unload();
});
