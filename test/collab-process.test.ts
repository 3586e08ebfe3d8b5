// The collab relay in a real `workers: 2` process (issue 6 points 3 and 6):
// the stock client through a data-plane worker to the control plane's relay
// cannot tell the difference (sync, close codes, Origin, query token); and
// `kill -9` of edgeway during edits loses nothing any peer received, offline
// edits converge after the restart, and a fresh client sees everything.

import t from 'tap';
import { rm } from 'node:fs/promises';
import * as Y from 'yjs';
import { ORG, ORG_HOST, userToken, writeTestConfig } from './helpers/appliance.js';
import { childrenOf, freePorts, sleep, startEdgeway, type Running } from './helpers/process.js';
import { client, finalClose, putCollabHost, synced, until } from './helpers/collab.js';

async function kill9(r: Running): Promise<void> {
  const kids = await childrenOf(r.p.pid);
  r.p.child.kill('SIGKILL');
  for (const k of kids) {
    try {
      process.kill(k, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await r.p.exited;
}

t.test('workers: 2: stock clients through a worker; kill -9 during edits loses nothing a peer received', async (t) => {
  const [httpsPort, adminPort] = (await freePorts(2)) as [number, number];
  const { file, dir } = await writeTestConfig({
    log: { level: 'info', access_log: false },
    workers: 2,
    listen: { https: `127.0.0.1:${httpsPort}`, http: '127.0.0.1:0', admin: `127.0.0.1:${adminPort}` },
    collab: { ping_interval_ms: 1000 },
  });
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const r = await startEdgeway(t, file, 30_000);
  t.equal((await childrenOf(r.p.pid)).length, 2, 'two data-plane workers');
  await putCollabHost(r, ORG_HOST);
  const token = await userToken({ cfg: r.cfg }, 'alice', [`org:${ORG}:member`]);

  const a = client(t, r, ORG_HOST, 'k9', { bearer: token });
  const b = client(t, r, ORG_HOST, 'k9', { params: { edgeway_token: token } });
  const c = client(t, r, ORG_HOST, 'k9', { bearer: token, origin: `https://${ORG_HOST}:${httpsPort}` });
  await Promise.all([synced(a), synced(b), synced(c)]);
  a.doc.getArray('a').push(['a0']);
  await until(() => b.doc.getArray('a').length === 1 && c.doc.getArray('a').length === 1, 5000, 'b and c see a');
  t.pass('three stock clients (bearer, query token, Origin of the org host) sync through the workers');
  b.awareness.setLocalStateField('name', 'bee');
  await until(() => a.awareness.getStates().has(b.awareness.clientID), 5000, 'awareness');
  t.pass('awareness crosses the worker too');

  const metrics = await (await fetch(`${r.adminUrl}/metrics`, { headers: { authorization: `Bearer ${r.platformToken}` } })).text();
  t.match(metrics, /^edgeway_collab_connections 3$/m, 'the relay\'s figures are in the primary\'s GET /metrics');
  t.match(metrics, /^edgeway_collab_rooms 1$/m);

  const refused = await finalClose(client(t, r, ORG_HOST, 'k9'));
  t.equal(refused.code, 4401, 'no token: 4401 through the worker, final');
  const foreign = await finalClose(client(t, r, ORG_HOST, 'k9', { bearer: token, origin: 'https://evil.test' }));
  t.equal(foreign.code, 4403, 'foreign Origin: 4403 through the worker');
  const badRoom = await finalClose(client(t, r, ORG_HOST, 'bad!room', { bearer: token }));
  t.equal(badRoom.code, 4400, 'bad room: 4400 through the worker');

  // a goes offline and edits there.
  a.disconnect();
  a.doc.getArray('a').push(['offline-1', 'offline-2']);
  // c writes steadily; edgeway dies in the middle.
  let i = 0;
  const writer = setInterval(() => c.doc.getArray('c').push([`c${i++}`]), 3);
  await sleep(400);
  await kill9(r);
  clearInterval(writer);
  const receivedByB = b.doc.getArray('c').toArray() as string[];
  b.disconnect();
  c.disconnect();
  t.ok(receivedByB.length > 10, `b had received ${receivedByB.length} of c's ${i} updates when edgeway was killed`);

  const r2 = await startEdgeway(t, file, 30_000);
  const res = await fetch(`${r2.adminUrl}/v1/collab/rooms/${ORG}/k9/state`, { headers: { authorization: `Bearer ${r2.platformToken}` } });
  t.equal(res.status, 200);
  const stored = new Y.Doc();
  Y.applyUpdate(stored, new Uint8Array(await res.arrayBuffer()));
  const storedC = new Set(stored.getArray('c').toArray() as string[]);
  const missing = receivedByB.filter((x) => !storedC.has(x));
  t.same(missing, [], `every update b received is stored after kill -9 (${storedC.size} stored)`);
  t.same(stored.getArray('a').toArray(), ['a0'], 'the offline edits are not there yet');

  a.connect();
  b.connect();
  c.connect();
  const d = client(t, r2, ORG_HOST, 'k9', { bearer: token });
  const all = [a, b, c, d];
  const sv = (p: (typeof all)[number]) => Buffer.from(Y.encodeStateVector(p.doc)).toString('hex');
  await until(() => all.every((p) => p.synced && p.doc.getArray('c').length === i && p.doc.getArray('a').length === 3 && sv(p) === sv(c)), 15_000, 'convergence after restart');
  t.same(d.doc.getArray('a').toArray().sort(), ['a0', 'offline-1', 'offline-2'], 'offline edits converged');
  t.equal(d.doc.getArray('c').length, i, 'every update c made is there');
  const fresh = client(t, r2, ORG_HOST, 'k9', { bearer: token });
  await synced(fresh);
  t.equal(fresh.doc.getArray('c').length + fresh.doc.getArray('a').length, i + 3, 'a fresh client sees everything at its first sync');
});
