// Issue 3 point 4: deleting, replacing or expiring a host closes the
// websockets that went through that host's changed locations with 1001, and
// touches no other connection (same host's unchanged locations, other hosts).

import t from 'tap';
import http from 'node:http';
import { WebSocket, WebSocketServer } from 'ws';
import { admin, ORG2_HOST, ORG_HOST, startTestAppliance, type TestAppliance } from './helpers/appliance.js';

function loopback(_h: string, o: { all?: boolean }, cb: (...a: unknown[]) => void): void {
  if (o.all) cb(null, [{ address: '127.0.0.1', family: 4 }]);
  else cb(null, '127.0.0.1', 4);
}

interface Client {
  readonly ws: WebSocket;
  closeCode: number | undefined;
  readonly closed: Promise<number>;
}

async function open(ta: TestAppliance, host: string, path: string): Promise<Client> {
  const ws = new WebSocket(`wss://${host}:${ta.httpsPort}${path}`, { ca: [ta.caPem], lookup: loopback } as never);
  const c: Client = {
    ws,
    closeCode: undefined,
    closed: new Promise<number>((resolve) => ws.once('close', (code) => resolve(code))),
  };
  void c.closed.then((code) => (c.closeCode = code));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return c;
}

/** Resolves true when the socket still echoes. */
async function echoes(c: Client): Promise<boolean> {
  if (c.ws.readyState !== WebSocket.OPEN) return false;
  const msg = `ping-${Math.random()}`;
  const got = new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 2000);
    c.ws.once('message', (m) => {
      clearTimeout(timer);
      resolve(String(m) === msg);
    });
  });
  c.ws.send(msg);
  return got;
}

t.test('route changes close exactly the websockets of changed locations', async (t) => {
  const server = http.createServer();
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => ws.on('message', (m, binary) => ws.send(m, { binary })));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const c of wss.clients) c.terminate();
    server.close();
  });
  const up = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const ta = await startTestAppliance(t);

  const entryA = (otherTimeout: number, rootTimeout = 30000): Record<string, unknown> => ({
    access: 'public',
    locations: [
      { path: '/', upstream: up, timeout_ms: rootTimeout },
      { path: '/other', upstream: up, timeout_ms: otherTimeout },
    ],
  });
  t.equal((await admin(ta, 'PUT', `/v1/hosts/${ORG_HOST}`, entryA(1000))).status, 201);
  t.equal((await admin(ta, 'PUT', `/v1/hosts/${ORG2_HOST}`, { access: 'public', locations: [{ path: '/', upstream: up }] })).status, 201);

  const root = await open(ta, ORG_HOST, '/');
  const other = await open(ta, ORG_HOST, '/other/x');
  const b = await open(ta, ORG2_HOST, '/');
  t.teardown(() => {
    for (const c of [root, other, b]) c.ws.terminate();
  });

  // Replace with /other changed: only that websocket goes.
  t.equal((await admin(ta, 'PUT', `/v1/hosts/${ORG_HOST}`, entryA(2000))).status, 200);
  t.equal(await other.closed, 1001, 'changed location: closed with 1001');
  t.ok(await echoes(root), 'unchanged location on the same host stays open');
  t.ok(await echoes(b), 'another host stays open');

  // Replace with nothing changed: nothing closes, and the unchanged location
  // is still tracked, so changing it later closes its websocket.
  t.equal((await admin(ta, 'PUT', `/v1/hosts/${ORG_HOST}`, entryA(2000))).status, 200);
  t.ok(await echoes(root), 'identical replace touches nothing');
  t.equal((await admin(ta, 'PUT', `/v1/hosts/${ORG_HOST}`, entryA(2000, 5000))).status, 200);
  t.equal(await root.closed, 1001, 'a location kept across replaces is still found when it changes');
  t.ok(await echoes(b), 'the other host is still untouched');

  // Lease expiry closes that host's websockets; a heartbeat alone closes nothing.
  const leased = { access: 'public', locations: [{ path: '/', upstream: up }], lease_ttl_s: 2 };
  t.equal((await admin(ta, 'PUT', `/v1/hosts/${ORG2_HOST}`, leased)).status, 200);
  t.ok(await echoes(b), 'same location, now leased: still open');
  const again = await open(ta, ORG_HOST, '/');
  t.teardown(() => again.ws.terminate());
  t.equal((await admin(ta, 'POST', `/v1/hosts/${ORG2_HOST}/heartbeat`)).status, 200);
  t.ok(await echoes(b), 'heartbeat touches nothing');
  t.equal(await b.closed, 1001, 'lease expiry: closed with 1001');
  t.ok(await echoes(again), 'websockets of other hosts survive the expiry');

  // Delete closes the rest.
  t.equal((await admin(ta, 'DELETE', `/v1/hosts/${ORG_HOST}`)).status, 204);
  t.equal(await again.closed, 1001, 'delete: closed with 1001');
});
