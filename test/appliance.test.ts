// The whole appliance in one process, over real TLS: routes/ entries, admin
// API changes served by the very next request, SNI and Host rules, the local
// CA's chains, websockets, the HTTP redirect listener and files mode.

import t from 'tap';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import tls from 'node:tls';
import http from 'node:http';
import { WebSocket, WebSocketServer } from 'ws';
import { LocalCA } from '../src/tls/local-ca.js';
import {
  admin,
  DOMAIN,
  echoUpstream,
  httpsGet,
  ORG,
  ORG2_HOST,
  ORG_HOST,
  startTestAppliance,
  UC_HOST,
} from './helpers/appliance.js';

const here = dirname(fileURLToPath(import.meta.url));

/** Resolves every name to 127.0.0.1 (the test domain has no DNS). */
function loopback(_h: string, o: { all?: boolean }, cb: (...a: unknown[]) => void): void {
  if (o.all) cb(null, [{ address: '127.0.0.1', family: 4 }]);
  else cb(null, '127.0.0.1', 4);
}

function publicEntry(upstream: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { access: 'public', locations: [{ path: '/', upstream }], ...extra };
}

t.test('routes, admin changes, SNI and Host', async (t) => {
  const api = await echoUpstream(t, 'api');
  const ta = await startTestAppliance(t, {}, {
    'apex.yaml': { host: '{domain}', locations: [{ path: '/', static: { root: join(here, '..', 'routes', 'www'), spa: true } }] },
    'api.yaml': { host: 'api.{domain}', locations: [{ path: '/v2', upstream: api.url, strip_prefix: true }] },
  });

  t.test('apex static frontend from routes/', async (t) => {
    const r = await httpsGet(ta, DOMAIN, '/');
    t.equal(r.status, 200);
    t.match(r.headers['content-type'], /text\/html/);
    t.match(r.body, /<html/i);
    const spa = await httpsGet(ta, DOMAIN, '/some/client/route');
    t.equal(spa.status, 200, 'SPA fallback');
  });

  t.test('named host proxied with strip_prefix; X-Forwarded-* replaced; Host unchanged', async (t) => {
    const r = await httpsGet(ta, `api.${DOMAIN}`, '/v2/users?x=1', {
      headers: { 'x-forwarded-for': '6.6.6.6', 'x-forwarded-host': 'evil', 'x-forwarded-proto': 'http' },
    });
    t.equal(r.status, 200);
    const seen = JSON.parse(r.body) as { url: string; headers: Record<string, string> };
    t.equal(seen.url, '/users?x=1');
    t.equal(seen.headers['host'], `api.${DOMAIN}`);
    t.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
    t.equal(seen.headers['x-forwarded-proto'], 'https');
    t.equal(seen.headers['x-forwarded-host'], `api.${DOMAIN}`);
    const miss = await httpsGet(ta, `api.${DOMAIN}`, '/v2x');
    t.equal(miss.status, 404, '/v2x is not under /v2');
    const canon = await httpsGet(ta, `api.${DOMAIN}`, '//%76%32/./a/../users');
    t.equal(canon.status, 200, 'a non-canonical spelling reaches the location its meaning names');
    t.equal((JSON.parse(canon.body) as { url: string }).url, '/users');
  });

  t.test('a PUT is served by the very next request, a DELETE too', async (t) => {
    const a = await echoUpstream(t, 'a');
    const b = await echoUpstream(t, 'b');
    for (let i = 0; i < 20; i++) {
      const up = i % 2 === 0 ? a : b;
      const put = await admin(ta, 'PUT', `/v1/hosts/${ORG_HOST}`, publicEntry(up.url));
      t.equal(put.status, i === 0 ? 201 : 200);
      const r = await httpsGet(ta, ORG_HOST, '/');
      t.equal((JSON.parse(r.body) as { name: string }).name, i % 2 === 0 ? 'a' : 'b');
    }
    t.equal((await admin(ta, 'DELETE', `/v1/hosts/${ORG_HOST}`)).status, 204);
    const gone = await httpsGet(ta, ORG_HOST, '/', { headers: { accept: 'application/json' } });
    t.equal(gone.status, 404);
    t.same(JSON.parse(gone.body).error, 'host_not_found');
  });

  t.test('static entries are 409 through the API', async (t) => {
    const r = await admin(ta, 'PUT', `/v1/hosts/api.${DOMAIN}`, publicEntry('http://127.0.0.1:1'));
    t.equal(r.status, 409);
    t.equal((await admin(ta, 'DELETE', `/v1/hosts/api.${DOMAIN}`)).status, 409);
  });

  t.test('uc host gets a leaf that validates against the local CA, exact name', async (t) => {
    const up = await echoUpstream(t, 'uc');
    t.equal((await admin(ta, 'PUT', `/v1/hosts/${UC_HOST}`, publicEntry(up.url))).status, 201);
    const sock = tls.connect({ host: '127.0.0.1', port: ta.httpsPort, servername: UC_HOST, ca: [ta.caPem] });
    await new Promise<void>((resolve, reject) => {
      sock.once('secureConnect', resolve);
      sock.once('error', reject);
    });
    t.ok(sock.authorized, 'chain and name verify against the local CA');
    const cert = sock.getPeerX509Certificate();
    t.equal(cert?.subjectAltName, `DNS:${UC_HOST}`);
    t.equal(cert?.publicKey.asymmetricKeyType, 'ec', 'ECDSA');
    t.match(sock.getProtocol(), /TLSv1\.[23]/);
    sock.destroy();
    const r = await httpsGet(ta, UC_HOST, '/x');
    t.equal((JSON.parse(r.body) as { name: string }).name, 'uc');
  });

  t.test('wildcard entry covers one label; exact beats wildcard', async (t) => {
    const w = await echoUpstream(t, 'wild');
    const e = await echoUpstream(t, 'exact');
    const uc = await echoUpstream(t, 'uc');
    await admin(ta, 'PUT', `/v1/hosts/${UC_HOST}`, publicEntry(uc.url));
    await admin(ta, 'PUT', `/v1/hosts/*.org-${ORG}.${DOMAIN}`, publicEntry(w.url));
    await admin(ta, 'PUT', `/v1/hosts/${ORG_HOST}`, publicEntry(e.url));
    const name = async (host: string): Promise<string | number> => {
      const r = await httpsGet(ta, host, '/');
      return r.status === 200 ? (JSON.parse(r.body) as { name: string }).name : r.status;
    };
    t.equal(await name(`jupyter.org-${ORG}.${DOMAIN}`), 'wild');
    t.equal(await name(UC_HOST), 'uc', 'the exact uc entry wins over the wildcard');
    t.equal(await name(`a.b.org-${ORG}.${DOMAIN}`), 404, 'two labels below are not covered');
    t.equal(await name(ORG_HOST), 'exact');
  });

  t.test('421 only when SNI names another routed entry', async (t) => {
    const o2 = await echoUpstream(t, 'org2');
    await admin(ta, 'PUT', `/v1/hosts/${ORG2_HOST}`, publicEntry(o2.url));
    const mis = await httpsGet(ta, ORG2_HOST, '/', { servername: ORG_HOST, headers: { accept: 'application/json' } });
    t.equal(mis.status, 421);
    const unrouted = await httpsGet(ta, ORG2_HOST, '/', { servername: `nothing.${DOMAIN}` });
    t.equal(unrouted.status, 200, 'unrouted SNI: fallback certificate, Host decides');
    const none = await httpsGet(ta, ORG2_HOST, '/', { servername: null });
    t.equal(none.status, 200, 'no SNI: Host decides');
    const hostWithPort = await httpsGet(ta, `${ORG2_HOST}:${ta.httpsPort}`, '/', { servername: ORG2_HOST });
    t.equal(hostWithPort.status, 200, 'Host with port');
    t.equal((JSON.parse(hostWithPort.body) as { headers: { host: string } }).headers.host, `${ORG2_HOST}:${ta.httpsPort}`);
  });

  t.test('unknown host: 404, HTML for browsers and JSON for others', async (t) => {
    const j = await httpsGet(ta, `nope.${DOMAIN}`, '/', { headers: { accept: 'application/json' } });
    t.equal(j.status, 404);
    t.match(j.headers['content-type'], /json/);
    const h = await httpsGet(ta, `nope.${DOMAIN}`, '/', { headers: { accept: 'text/html' } });
    t.equal(h.status, 404);
    t.match(h.headers['content-type'], /html/);
  });

  t.test('service locations reach their services: oauth token wants a POST (405), collab wants a websocket (426)', async (t) => {
    await admin(ta, 'PUT', `/v1/hosts/${ORG_HOST}`, {
      access: 'public',
      locations: [{ path: '/collab/yjs', service: 'collab' }, { path: '/oauth', service: 'oauth' }],
    });
    const o = await httpsGet(ta, ORG_HOST, '/oauth/token', { headers: { accept: 'application/json' } });
    t.equal(o.status, 405);
    const r = await httpsGet(ta, ORG_HOST, '/collab/yjs/room', { headers: { accept: 'application/json' } });
    t.equal(r.status, 426);
  });

  t.test('websocket echo over TLS through edgeway', async (t) => {
    const server = http.createServer();
    const wss = new WebSocketServer({ server });
    const seen: { host?: string; origin?: string } = {};
    wss.on('connection', (ws, req) => {
      seen.host = req.headers.host;
      seen.origin = req.headers.origin;
      ws.on('message', (m, binary) => ws.send(m, { binary }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    t.teardown(() => {
      for (const c of wss.clients) c.terminate();
      server.close();
    });
    const port = (server.address() as { port: number }).port;
    await admin(ta, 'PUT', `/v1/hosts/${ORG_HOST}`, publicEntry(`http://127.0.0.1:${port}`));
    const ws = new WebSocket(`wss://${ORG_HOST}:${ta.httpsPort}/socket`, {
      ca: [ta.caPem],
      lookup: loopback,
      origin: `https://${ORG_HOST}`,
    } as never);
    t.teardown(() => ws.terminate());
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const echoes: string[] = [];
    const done = new Promise<void>((resolve) => {
      ws.on('message', (m) => {
        echoes.push(String(m));
        if (echoes.length === 3) resolve();
      });
    });
    ws.send('one');
    ws.send('two');
    ws.send('three');
    await done;
    t.same(echoes, ['one', 'two', 'three']);
    t.equal(seen.host, `${ORG_HOST}:${ta.httpsPort}`, 'Host preserved');
    t.equal(seen.origin, `https://${ORG_HOST}`, 'Origin preserved');
  });

  t.test('plain HTTP: 308 to HTTPS, except ACME challenge paths', async (t) => {
    const get = (path: string, host: string): Promise<http.IncomingMessage> =>
      new Promise((resolve, reject) => {
        http.get({ host: '127.0.0.1', port: ta.httpPort, path, headers: { host } }, (res) => {
          res.resume();
          resolve(res);
        }).on('error', reject);
      });
    const r = await get('/a?b=c', `${ORG_HOST}:80`);
    t.equal(r.statusCode, 308);
    t.equal(r.headers.location, `https://${ORG_HOST}:${ta.httpsPort}/a?b=c`, 'to the port actually bound when listen.https is port 0');
    const acme = await get('/.well-known/acme-challenge/x', ORG_HOST);
    t.equal(acme.statusCode, 404);
  });

  t.test('health', async (t) => {
    const res = await fetch(`${ta.adminUrl}/v1/health`);
    t.equal(res.status, 200);
    const body = (await res.json()) as { status: string; hosts: number };
    t.equal(body.status, 'ok');
    t.ok(body.hosts >= 2);
  });
});

t.test('tls.mode files serves the pairs in certs_dir', async (t) => {
  // Make a pair with a throwaway CA, as an operator would bring their own.
  const { mkdtemp } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const caDir = await mkdtemp(join(tmpdir(), 'edgeway-files-ca-'));
  const ca = await LocalCA.open(caDir, { leafDays: 30 });
  const wildcard = await ca.leafForNames([DOMAIN, `*.${DOMAIN}`]);
  const certsDir = join(caDir, 'served');
  await mkdir(certsDir);
  await writeFile(join(certsDir, 'wildcard.crt'), wildcard.certPem);
  await writeFile(join(certsDir, 'wildcard.key'), wildcard.keyPem, { mode: 0o600 });
  const up = await echoUpstream(t, 'files');
  const ta = await startTestAppliance(t, { tls: { mode: 'files', certs_dir: certsDir } });
  await admin(ta, 'PUT', `/v1/hosts/${ORG_HOST}`, publicEntry(up.url));
  const sock = tls.connect({ host: '127.0.0.1', port: ta.httpsPort, servername: ORG_HOST, ca: [ca.certPem] });
  await new Promise<void>((resolve, reject) => {
    sock.once('secureConnect', resolve);
    sock.once('error', reject);
  });
  t.ok(sock.authorized, 'the wildcard from certs_dir covers the org host');
  t.match(sock.getPeerX509Certificate()?.subjectAltName ?? '', `DNS:*.${DOMAIN}`);
  const before = sock.getPeerX509Certificate()?.serialNumber;

  // SIGHUP's path: a new pair on disk is served from the next handshake while
  // the open connection keeps working.
  const orgLeaf = await ca.leafFor(ORG_HOST);
  await writeFile(join(certsDir, 'org.crt'), orgLeaf.certPem);
  await writeFile(join(certsDir, 'org.key'), orgLeaf.keyPem, { mode: 0o600 });
  await ta.app.reload();
  const again = tls.connect({ host: '127.0.0.1', port: ta.httpsPort, servername: ORG_HOST, ca: [ca.certPem] });
  await new Promise<void>((resolve, reject) => {
    again.once('secureConnect', resolve);
    again.once('error', reject);
  });
  t.equal(again.getPeerX509Certificate()?.subjectAltName, `DNS:${ORG_HOST}`, 'the exact-name pair wins after reload');
  again.destroy();
  sock.write(`GET / HTTP/1.1\r\nHost: ${ORG_HOST}\r\nConnection: close\r\n\r\n`);
  const reply = await new Promise<string>((resolve) => {
    let buf = '';
    sock.on('data', (d: Buffer) => (buf += d.toString()));
    sock.on('end', () => resolve(buf));
  });
  t.match(reply, /^HTTP\/1\.1 200/, 'the connection opened before the reload still serves');
  t.equal(sock.getPeerX509Certificate()?.serialNumber, before);
  sock.destroy();
});

t.test('a leased entry is gone within 1 s of its deadline', async (t) => {
  const up = await echoUpstream(t, 'leased');
  const ta = await startTestAppliance(t);
  const put = await admin(ta, 'PUT', `/v1/hosts/${ORG_HOST}`, publicEntry(up.url, { lease_ttl_s: 1 }));
  t.equal(put.status, 201);
  const expires = Date.parse((put.json as { expires_at: string }).expires_at);
  t.ok(expires > Date.now(), 'expires_at is in the future');
  t.equal((await httpsGet(ta, ORG_HOST, '/')).status, 200);
  while (Date.now() < expires) await new Promise((r) => setTimeout(r, 50));
  let goneAt = 0;
  while (goneAt === 0 && Date.now() < expires + 2000) {
    if ((await httpsGet(ta, ORG_HOST, '/')).status === 404) goneAt = Date.now();
    else await new Promise((r) => setTimeout(r, 50));
  }
  t.ok(goneAt > 0 && goneAt - expires < 1000, `gone ${goneAt - expires} ms after the deadline`);
});
