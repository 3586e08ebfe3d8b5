// Collab admission (issue 6 point 2): refusals are close codes after the
// upgrade, which the stock client treats as final (it stops reconnecting):
// 4401 no or bad token, 4403 no right or a foreign Origin, 4400 bad room.

import t, { type Test } from 'tap';
import type { WebsocketProvider } from 'y-websocket';
import { DOMAIN, ORG, ORG_HOST, UC_HOST, httpsGet, startTestAppliance, userToken } from './helpers/appliance.js';
import { client, finalClose, putCollabHost, synced } from './helpers/collab.js';

const MEMBER = [`org:${ORG}:member`];

async function setup(t: Test) {
  const ta = await startTestAppliance(t, { collab: { ping_interval_ms: 1000 } });
  await putCollabHost(ta, ORG_HOST);
  return ta;
}

/** The final close, and how many connection attempts followed it within 600 ms (must be none). */
async function refusedFinally(p: WebsocketProvider): Promise<{ code: number; reason: string; retries: number }> {
  const ev = await finalClose(p);
  let retries = 0;
  p.on('status', (s: { status: string }) => {
    if (s.status === 'connecting' || s.status === 'connected') retries++;
  });
  await new Promise((r) => setTimeout(r, 600));
  return { ...ev, retries };
}

t.test('no token, bad tokens: 4401, final', async (t) => {
  const ta = await setup(t);
  const none = await refusedFinally(client(t, ta, ORG_HOST, 'r'));
  t.same([none.code, none.retries], [4401, 0], 'no token: 4401 and no retry');
  const forged = await refusedFinally(client(t, ta, ORG_HOST, 'r', { bearer: 'eyJhbGciOiJIUzI1NiJ9.eyJ0eXBlIjoidXNlciJ9.c2lnbmF0dXJl' }));
  t.same([forged.code, forged.retries], [4401, 0], 'forged bearer: 4401');
  const badQuery = await refusedFinally(client(t, ta, ORG_HOST, 'r', { params: { edgeway_token: 'not-a-token' } }));
  t.same([badQuery.code, badQuery.retries], [4401, 0], 'bad query token: 4401');
});

t.test('a valid token without the right, and a foreign Origin: 4403, final', async (t) => {
  const ta = await setup(t);
  const other = await refusedFinally(client(t, ta, ORG_HOST, 'r', { bearer: await userToken(ta, 'mallory', ['org:someone-else:member']) }));
  t.same([other.code, other.retries], [4403, 0], 'no org membership: 4403');

  const bearer = await userToken(ta, 'alice', MEMBER);
  const port = ta.httpsPort;
  // A page in a user container is same-site with the org host.
  const uc = await refusedFinally(client(t, ta, ORG_HOST, 'r', { bearer, origin: `https://${UC_HOST}:${port}` }));
  t.same([uc.code, uc.retries], [4403, 0], 'Origin of a user container: 4403');
  const evil = await refusedFinally(client(t, ta, ORG_HOST, 'r', { bearer, origin: 'https://evil.test' }));
  t.equal(evil.code, 4403, 'foreign Origin: 4403');
  const plainHttp = await refusedFinally(client(t, ta, ORG_HOST, 'r', { bearer, origin: `http://${ORG_HOST}:${port}` }));
  t.equal(plainHttp.code, 4403, 'http:// Origin of the org host: 4403');

  for (const origin of [`https://${ORG_HOST}:${port}`, `https://${DOMAIN}`, `https://${DOMAIN}:${port}`]) {
    const ok = client(t, ta, ORG_HOST, 'r', { bearer, origin });
    await synced(ok);
    t.pass(`Origin ${origin.replace(String(port), 'PORT')} is allowed`);
    ok.destroy();
  }
});

t.test('bad room names: 4400, final', async (t) => {
  const ta = await setup(t);
  const bearer = await userToken(ta, 'alice', MEMBER);
  for (const room of ['bad$room', 'x'.repeat(201), 'a/b', 'sp%20ace', '']) {
    const r = await refusedFinally(client(t, ta, ORG_HOST, room, { bearer }));
    t.same([r.code, r.retries], [4400, 0], `room ${JSON.stringify(room.length > 20 ? `${room.slice(0, 5)}…(${room.length})` : room)}: 4400`);
  }
  const ok = client(t, ta, ORG_HOST, `Az09._~-${'y'.repeat(192)}`, { bearer });
  await synced(ok);
  t.pass('200 characters of the allowed set open a room');
});

t.test('{room} in the scope template, query token, token expiry, plain HTTP', async (t) => {
  const ta = await startTestAppliance(t, { collab: { ping_interval_ms: 200 } });
  await putCollabHost(ta, ORG_HOST, { scope: 'org:{org_id}:room:{room}' });
  const token = await userToken(ta, 'bob', [`org:${ORG}:room:r1`]);
  const r1 = client(t, ta, ORG_HOST, 'r1', { params: { edgeway_token: token } });
  await synced(r1);
  t.pass('the room named in the scope opens (token as a query parameter)');
  const r2 = await refusedFinally(client(t, ta, ORG_HOST, 'r2', { params: { edgeway_token: token } }));
  t.equal(r2.code, 4403, 'another room: 4403');

  const short = client(t, ta, ORG_HOST, 'r1', { bearer: await userToken(ta, 'bob', [`org:${ORG}:room:r1`], 2) });
  await synced(short);
  const ev = await finalClose(short, 5000);
  t.equal(ev.code, 4401, 'closed with 4401 when the token expires');

  const plain = await httpsGet(ta, ORG_HOST, '/collab/yjs/r1');
  t.equal(plain.status, 426, 'a plain request gets 426');
  t.match(JSON.parse(plain.body), { error: 'collab_upgrade_required' });
});
