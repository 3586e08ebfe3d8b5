// Collab admin rows (issue 6 point 5): backup and restore of a room as one
// binary Yjs update, org tokens limited to their org; and the store failure
// path (point 3): a failed write is detected, closes the room's sockets with
// 1011, is counted in /metrics and logged, and nothing of it reaches a peer.

import t from 'tap';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import * as Y from 'yjs';
import { startAppliance } from '../src/appliance.js';
import { signToken } from '../src/auth/jwt.js';
import { loadJwtKeys } from '../src/auth/keys.js';
import { loadConfig } from '../src/config/load.js';
import type { CollabService } from '../src/collab/collab-service.js';
import { ORG, ORG2, ORG_HOST, ORG2_HOST, portOf, startTestAppliance, userToken, writeTestConfig } from './helpers/appliance.js';
import { client, putCollabHost, synced, until } from './helpers/collab.js';

const BIN = 'application/octet-stream';

t.test('backup and restore through the admin API; org tokens see only their org', async (t) => {
  const ta = await startTestAppliance(t, { collab: { ping_interval_ms: 1000 } });
  await putCollabHost(ta, ORG_HOST);
  await putCollabHost(ta, ORG2_HOST);
  const bearer = await userToken(ta, 'alice', [`org:${ORG}:member`, `org:${ORG2}:member`]);
  const keys = await loadJwtKeys(ta.cfg);
  const orgToken = signToken(keys, ta.cfg.auth.jwt, { type: 'organization_token', organization_id: ORG }, 600);
  const call = (token: string, method: string, path: string, body?: Uint8Array | string, type = BIN) =>
    fetch(`${ta.adminUrl}${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': type }, ...(body === undefined ? {} : { body: (typeof body === 'string' ? body : Buffer.from(body)) as unknown as BodyInit }) });

  const a = client(t, ta, ORG_HOST, 'notes', { bearer });
  const other = client(t, ta, ORG2_HOST, 'secret', { bearer });
  await Promise.all([synced(a), synced(other)]);
  a.doc.getText('t').insert(0, 'backed up');
  a.doc.getMap('m').set('k', [1, 2, 3]);
  other.doc.getText('t').insert(0, 'org two only');

  const got = await call(orgToken, 'GET', `/v1/collab/rooms/${ORG}/notes/state`);
  t.equal(got.status, 200, 'org token reads its own room');
  t.equal(got.headers.get('content-type'), BIN);
  const backup = new Uint8Array(await got.arrayBuffer());
  const restoredView = new Y.Doc();
  Y.applyUpdate(restoredView, backup);
  t.equal(restoredView.getText('t').toString(), 'backed up', 'the backup is one Yjs update with the room');
  t.same(restoredView.getMap('m').get('k'), [1, 2, 3]);

  t.equal((await call(orgToken, 'GET', `/v1/collab/rooms/${ORG2}/secret/state`)).status, 403, 'another org\'s room: 403');
  t.equal((await call(orgToken, 'PUT', `/v1/collab/rooms/${ORG2}/secret/state`, backup)).status, 403, 'another org\'s restore: 403');
  const list = (await (await call(orgToken, 'GET', '/v1/collab/rooms')).json()) as { rooms: { org_id: string }[] };
  t.same([...new Set(list.rooms.map((r) => r.org_id))], [ORG], 'the org token lists only its rooms');
  const all = (await (await call(ta.platformToken, 'GET', '/v1/collab/rooms')).json()) as { rooms: { org_id: string }[] };
  t.equal(all.rooms.length, 2, 'the platform token lists every room');
  t.equal((await call(await userToken(ta, 'alice', []), 'GET', '/v1/collab/rooms')).status, 403, 'a user token: 403');

  // Restore into a room with a client connected: it receives the state at once.
  const live = client(t, ta, ORG_HOST, 'restored', { bearer });
  await synced(live);
  const put = await call(orgToken, 'PUT', `/v1/collab/rooms/${ORG}/restored/state`, backup);
  t.equal(put.status, 204, 'restore: 204 once durable');
  await until(() => live.doc.getText('t').toString() === 'backed up', 5000, 'live client sees the restore');
  t.pass('a connected client receives the restored state');
  const fresh = client(t, ta, ORG_HOST, 'restored', { bearer });
  await synced(fresh);
  t.equal(fresh.doc.getText('t').toString(), 'backed up', 'a fresh client sees it');

  const bad = await call(orgToken, 'PUT', `/v1/collab/rooms/${ORG}/restored/state`, Uint8Array.from([9, 9, 9, 200, 1]));
  t.equal(bad.status, 400);
  t.match(await bad.json(), { error: 'collab_invalid_update' }, 'garbage is refused, the room unchanged');
  const json = await call(orgToken, 'PUT', `/v1/collab/rooms/${ORG}/restored/state`, '{}', 'application/json');
  t.equal(json.status, 415, 'not application/octet-stream: 415');
  const badRoom = await call(orgToken, 'GET', `/v1/collab/rooms/${ORG}/bad$room/state`);
  t.match([badRoom.status, await badRoom.json()], [400, { field: 'room' }], 'a bad room name: 400 naming the field');
  const big = await call(orgToken, 'PUT', `/v1/collab/rooms/${ORG}/restored/state`, new Uint8Array(1024 * 1024 + 1));
  t.equal(big.status, 413, 'over 1 MiB: 413');
  t.equal(fresh.doc.getText('t').toString(), 'backed up', 'nothing changed by the refusals');
});

t.test('a failed store write closes the room with 1011, reaches no peer, is counted and logged', async (t) => {
  const { dir, file } = await writeTestConfig({ collab: { ping_interval_ms: 1000 } });
  t.teardown(() => import('node:fs/promises').then((fs) => fs.rm(dir, { recursive: true, force: true })));
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  const cfg = await loadConfig(file);
  const app = await startAppliance(cfg, pino({ level: 'info' }, sink), { processMetrics: false });
  t.teardown(() => app.stop());
  const keys = await loadJwtKeys(cfg);
  const { readFile } = await import('node:fs/promises');
  const ep = {
    httpsPort: portOf(app.addresses.https),
    caPem: await readFile(`${cfg.data_dir}/ca/edgeway-local-ca.crt`, 'utf8'),
    adminUrl: `http://${app.addresses.admin}`,
    platformToken: signToken(keys, cfg.auth.jwt, { type: 'platform', scope: ['edge:admin'] }, 600),
  };
  await putCollabHost(ep, ORG_HOST);
  const bearer = signToken(keys, cfg.auth.jwt, { type: 'user', sub: 'alice', scope: [`org:${ORG}:member`] }, 600);
  const a = client(t, ep, ORG_HOST, 'doomed', { bearer });
  const b = client(t, ep, ORG_HOST, 'doomed', { bearer });
  await Promise.all([synced(a), synced(b)]);
  a.doc.getText('t').insert(0, 'zebra-content');
  await until(() => b.doc.getText('t').toString() === 'zebra-content', 5000, 'b synced');

  const closes: number[] = [];
  a.on('connection-close', (ev: { code: number } | null) => ev && closes.push(ev.code));
  b.on('connection-close', (ev: { code: number } | null) => ev && closes.push(ev.code));
  const svc = app.control.services.collab as CollabService;
  await svc.store.breakForTest();
  a.doc.getText('t').insert(0, 'lost: ');
  await until(() => closes.length >= 2, 5000, 'both closed');
  t.same(closes.slice(0, 2), [1011, 1011], 'the room\'s sockets closed with 1011');
  t.equal(b.doc.getText('t').toString(), 'zebra-content', 'the failed update reached no peer');
  t.notOk(svc.rooms.has(`${ORG}/doomed`) && svc.rooms.get(`${ORG}/doomed`)!.state === 'ready', 'the failed room left memory');
  const metrics = await (await fetch(`${ep.adminUrl}/metrics`, { headers: { authorization: `Bearer ${ep.platformToken}` } })).text();
  const failures = Number(/^edgeway_collab_store_failures_total (\d+)/m.exec(metrics)?.[1] ?? 0);
  t.ok(failures >= 1, `edgeway_collab_store_failures_total ${failures}`);
  t.match(metrics, /edgeway_collab_closes_total\{code="1011"\} [1-9]/, '1011 closes counted');
  const logged = lines.map((l) => JSON.parse(l) as { msg: string; room?: string; err?: string }).find((l) => l.msg.startsWith('collab room store failed'));
  t.ok(logged, 'the log says so');
  t.equal(logged?.room, `${ORG}/doomed`);
  t.match(logged?.err ?? '', /not open/i, `and why: ${logged?.err}`);
  t.notMatch(lines.join(''), /lost: |zebra-content/, 'room contents never reach the log');
  a.destroy();
  b.destroy();
});
