// The collab relay with the stock y-websocket client over TLS, in one process
// (workers: 1): sync, convergence, stored state at the first sync, awareness,
// org isolation (issue 6 points 1 and 3).

import t, { type Test } from 'tap';
import * as Y from 'yjs';
import { ORG, ORG2, ORG_HOST, ORG2_HOST, startTestAppliance, userToken } from './helpers/appliance.js';
import { client, putCollabHost, synced, until } from './helpers/collab.js';

const MEMBER = [`org:${ORG}:member`, `org:${ORG2}:member`];

async function setup(t: Test, collab: Record<string, unknown> = {}) {
  const ta = await startTestAppliance(t, { collab: { ping_interval_ms: 1000, unload_grace_ms: 100, ...collab } });
  await putCollabHost(ta, ORG_HOST);
  await putCollabHost(ta, ORG2_HOST);
  const bearer = await userToken(ta, 'alice', MEMBER);
  return { ta, bearer };
}

async function roomCount(ta: { adminUrl: string; platformToken: string }): Promise<number> {
  const r = await fetch(`${ta.adminUrl}/v1/collab/rooms`, { headers: { authorization: `Bearer ${ta.platformToken}` } });
  return ((await r.json()) as { rooms: unknown[] }).rooms.length;
}

t.test('two stock clients sync, and concurrent edits from several clients converge', async (t) => {
  const { ta, bearer } = await setup(t);
  const a = client(t, ta, ORG_HOST, 'doc-1', { bearer });
  const b = client(t, ta, ORG_HOST, 'doc-1', { bearer });
  await Promise.all([synced(a), synced(b)]);
  a.doc.getText('t').insert(0, 'hello');
  await until(() => b.doc.getText('t').toString() === 'hello', 5000, 'b sees a');

  const more = [client(t, ta, ORG_HOST, 'doc-1', { bearer }), client(t, ta, ORG_HOST, 'doc-1', { bearer })];
  await Promise.all(more.map((p) => synced(p)));
  const all = [a, b, ...more];
  t.equal(more[1]!.doc.getText('t').toString(), 'hello', 'a late client gets the state at its first sync');
  // Concurrent: every client edits in the same turn, before any update arrives.
  all.forEach((p, i) => {
    for (let k = 0; k < 20; k++) p.doc.getArray('a').push([`${i}:${k}`]);
    p.doc.getMap('m').set(`k${i}`, i);
  });
  const sv = (p: (typeof all)[number]) => Buffer.from(Y.encodeStateVector(p.doc)).toString('hex');
  await until(() => all.every((p) => p.doc.getArray('a').length === 80 && sv(p) === sv(a)), 10_000, 'convergence');
  t.ok(all.every((p) => sv(p) === sv(a)), 'state vectors equal');
  t.same(all.map((p) => p.doc.getArray('a').toJSON()), all.map(() => a.doc.getArray('a').toJSON()), 'same content everywhere');
});

t.test('stored content is there at the very first sync event, after the room left memory (y-websocket #81)', async (t) => {
  const { ta, bearer } = await setup(t);
  const a = client(t, ta, ORG_HOST, 'stored', { bearer });
  const w = client(t, ta, ORG_HOST, 'stored', { bearer });
  await Promise.all([synced(a), synced(w)]);
  a.doc.getText('t').insert(0, 'persisted text');
  a.doc.getMap('m').set('n', 42);
  // A peer receives an update only once it is durable.
  await until(() => w.doc.getMap('m').get('n') === 42, 5000, 'the peer got it');
  a.destroy();
  w.destroy();
  // The room unloads unload_grace_ms after its last client left.
  const deadline = Date.now() + 5000;
  while ((await roomCount(ta)) !== 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.equal(await roomCount(ta), 0, 'room unloaded from memory');
  for (let i = 0; i < 5; i++) {
    const doc = new Y.Doc();
    const b = client(t, ta, ORG_HOST, 'stored', { bearer, doc, connect: false });
    let atSync = '';
    b.once('sync', () => (atSync = `${doc.getText('t').toString()}|${String(doc.getMap('m').get('n'))}`));
    b.connect();
    await synced(b);
    t.equal(atSync, 'persisted text|42', `first sync event #${i} already has the stored state`);
    b.destroy();
  }
});

t.test('awareness appears for others and disappears when its connection closes', async (t) => {
  const { ta, bearer } = await setup(t);
  const a = client(t, ta, ORG_HOST, 'aw', { bearer });
  const b = client(t, ta, ORG_HOST, 'aw', { bearer });
  await Promise.all([synced(a), synced(b)]);
  a.awareness.setLocalStateField('user', { name: 'alice' });
  await until(() => (b.awareness.getStates().get(a.awareness.clientID) as { user?: { name: string } } | undefined)?.user?.name === 'alice', 5000, 'b sees a');
  t.pass('b sees a\'s awareness state');
  // A third client joining later gets the room's awareness at once.
  const c = client(t, ta, ORG_HOST, 'aw', { bearer });
  await until(() => c.awareness.getStates().has(a.awareness.clientID), 5000, 'c sees a');
  t.pass('a late client gets the current awareness states');
  // Close a's socket without a goodbye message: the relay removes its states for everyone.
  (a.ws as unknown as { _socket: { destroy(): void } } | null)?._socket.destroy();
  a.shouldConnect = false;
  await until(() => !b.awareness.getStates().has(a.awareness.clientID) && !c.awareness.getStates().has(a.awareness.clientID), 5000, 'a removed');
  t.pass('a closed connection\'s awareness state is removed for everyone');
});

t.test('the same room name in two orgs are two rooms', async (t) => {
  const { ta, bearer } = await setup(t);
  const a = client(t, ta, ORG_HOST, 'shared-name', { bearer });
  const b = client(t, ta, ORG2_HOST, 'shared-name', { bearer });
  await Promise.all([synced(a), synced(b)]);
  a.doc.getText('t').insert(0, 'org one');
  b.doc.getText('t').insert(0, 'org two');
  const a2 = client(t, ta, ORG_HOST, 'shared-name', { bearer });
  const b2 = client(t, ta, ORG2_HOST, 'shared-name', { bearer });
  await until(() => a2.doc.getText('t').toString() === 'org one' && b2.doc.getText('t').toString() === 'org two', 5000, 'each org sees its own');
  await new Promise((r) => setTimeout(r, 200));
  t.equal(a.doc.getText('t').toString(), 'org one', 'org one never sees org two');
  t.equal(b.doc.getText('t').toString(), 'org two', 'org two never sees org one');
  const r = await fetch(`${ta.adminUrl}/v1/collab/rooms`, { headers: { authorization: `Bearer ${ta.platformToken}` } });
  const rooms = ((await r.json()) as { rooms: { org_id: string; room: string; connections: number }[] }).rooms;
  t.same(rooms.map((x) => [x.org_id, x.room, x.connections]), [[ORG, 'shared-name', 2], [ORG2, 'shared-name', 2]].sort((x, y) => (x[0]! < y[0]! ? -1 : 1)), 'two rooms, keyed by org');
});

t.test('the stored log is compacted in the background and at unload, in y-leveldb\'s own layout', async (t) => {
  const { ta, bearer } = await setup(t, { compact_after_updates: 10, unload_grace_ms: 100 });
  const a = client(t, ta, ORG_HOST, 'compact', { bearer });
  const b = client(t, ta, ORG_HOST, 'compact', { bearer });
  await Promise.all([synced(a), synced(b)]);
  for (let i = 0; i < 35; i++) a.doc.getArray('x').push([i]);
  await until(() => b.doc.getArray('x').length === 35, 5000, 'b has all');
  a.destroy();
  b.destroy();
  const deadline = Date.now() + 5000;
  while ((await roomCount(ta)) !== 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.equal(await roomCount(ta), 0, 'unloaded');
  await ta.app.stop();
  // Read the store with y-leveldb itself.
  const { LeveldbPersistence, getLevelUpdatesKeys } = await import('y-leveldb');
  const ldb = new LeveldbPersistence(`${ta.cfg.data_dir}/collab`);
  t.teardown(() => ldb.destroy());
  const keys = await ldb._transact((db) => getLevelUpdatesKeys(db, `${ORG}/compact`));
  t.equal(keys.length, 1, `one stored record after the final compaction (clock ${String(keys[0]?.[3])})`);
  const doc = await ldb.getYDoc(`${ORG}/compact`);
  t.same(doc.getArray('x').toArray(), Array.from({ length: 35 }, (_, i) => i), 'y-leveldb reads the whole room');
  t.same([...(await ldb.getAllDocNames())].sort(), [`${ORG}/compact`].sort(), 'listed by y-leveldb (state-vector record written)');
});
