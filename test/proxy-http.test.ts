import t, { type Test } from 'tap';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { generate } from 'selfsigned';
import { UndiciForwarder } from '../src/proxy/undici-forwarder.js';
import { LeanForwarder } from '../src/proxy/lean-forwarder.js';
import type { Forwarder } from '../src/proxy/forwarder.js';
import { UpstreamGroup } from '../src/proxy/upstream-group.js';
import { classifyUpstreamError } from '../src/proxy/failure.js';
import { isNamed, responseHeaders, responseHeadersInPlace } from '../src/proxy/headers.js';
import {
  CFG,
  MiB,
  deadPort,
  front,
  generated,
  listen,
  request,
  gc,
  rssSampler,
  target,
  upstream,
} from './helpers/upstreams.js';

// The product's forwarder is the lean one; proxy-http-undici.test.ts runs
// this same file against the undici forwarder (still used for https upstreams).
const KIND = process.env.EDGEWAY_TEST_FORWARDER ?? 'lean';

function forwarder(t: Test, cfg = CFG, tls = {}): Forwarder {
  const f = KIND === 'undici' ? new UndiciForwarder(cfg, tls) : new LeanForwarder(cfg, tls);
  t.teardown(() => f.close());
  return f;
}

t.test('GET and POST round trip; Host unchanged; X-Forwarded-* replaced', async (t) => {
  const seen: http.IncomingMessage[] = [];
  const bodies: string[] = [];
  const up = await upstream(t, (req, res) => {
    seen.push(req);
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      bodies.push(body);
      res.setHeader('content-type', 'text/plain');
      res.end(`${req.method} ${req.url} ${body}`);
    });
  });
  const group = new UpstreamGroup([up.target], CFG);
  const port = await front(t, forwarder(t), () => group);

  const get = await request(port, {
    path: '/hello?x=1',
    headers: {
      host: 'uc-1.org-2.example.test:8443',
      'x-forwarded-for': '6.6.6.6',
      'x-forwarded-proto': 'gopher',
      'x-forwarded-host': 'evil.test',
      'x-real-ip': '6.6.6.6',
      forwarded: 'for=6.6.6.6',
    },
  });
  t.equal(get.status, 200);
  t.equal(get.body.toString(), 'GET /hello?x=1 ');
  const h = seen[0]!.headers;
  t.equal(h.host, 'uc-1.org-2.example.test:8443', 'Host passes through unchanged');
  t.equal(h['x-forwarded-for'], '127.0.0.1', 'spoofed X-Forwarded-For replaced by the client address');
  t.equal(h['x-forwarded-proto'], 'http');
  t.equal(h['x-forwarded-host'], 'uc-1.org-2.example.test:8443');
  t.equal(h['x-real-ip'], undefined);
  t.equal(h.forwarded, undefined);
  t.equal(seen[0]!.rawHeaders.filter((n) => n.toLowerCase() === 'x-forwarded-for').length, 1);

  const post = await request(port, {
    method: 'POST',
    path: '/submit',
    headers: { host: 'a.example.test', 'content-type': 'text/plain' },
    body: 'payload-123',
  });
  t.equal(post.status, 200);
  t.equal(post.body.toString(), 'POST /submit payload-123');
  t.equal(bodies[1], 'payload-123');
});

t.test('path and query pass through byte for byte', async (t) => {
  let url = '';
  const up = await upstream(t, (req, res) => {
    url = req.url ?? '';
    res.end();
  });
  const group = new UpstreamGroup([up.target], CFG);
  const port = await front(t, forwarder(t), () => group);
  const path = '/a//b/../c/%2e%2E/?q=%2F&q=2&empty=&x=%E2%82%AC#';
  await request(port, { path: path.slice(0, -1) });
  t.equal(url, path.slice(0, -1));
});

t.test('forwarding inside an AsyncLocalStorage context (as Playwright and APM agents run one)', async (t) => {
  // async_hooks stores the context on each parser's resource object: a frozen
  // one made every upstream connection throw (found by test/browser.test.ts).
  const { AsyncLocalStorage } = await import('node:async_hooks');
  const als = new AsyncLocalStorage<{ id: number }>();
  const up = await upstream(t, (_req, res) => res.end('ok'));
  const group = new UpstreamGroup([up.target], CFG);
  const port = await als.run({ id: 1 }, () => front(t, forwarder(t), () => group));
  const r = await als.run({ id: 2 }, () => request(port, { path: '/' }));
  t.equal(r.status, 200);
  t.equal(r.body.toString(), 'ok');
});

/** Sends a raw request on a fresh connection and parses the one response (Content-Length framed). */
async function rawRequest(port: number, head: string): Promise<{ status: number; headers: Record<string, string[]>; body: Buffer }> {
  const sock = net.connect(port, '127.0.0.1');
  sock.write(head); // not end(): Node treats a half-closed client as gone
  const chunks: Buffer[] = [];
  for await (const c of sock) chunks.push(c as Buffer);
  const all = Buffer.concat(chunks);
  const end = all.indexOf('\r\n\r\n');
  const lines = all.subarray(0, end).toString('latin1').split('\r\n');
  const headers: Record<string, string[]> = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    (headers[l.slice(0, i).toLowerCase()] ??= []).push(l.slice(i + 1).trim());
  }
  return { status: Number(lines[0]!.split(' ')[1]), headers, body: all.subarray(end + 4) };
}

t.test('hop-by-hop fields stop at the proxy in both directions', async (t) => {
  let upHeaders: string[] = [];
  let upLines: string[] = [];
  // A raw upstream, so the response carries exactly the fields under test.
  const raw = net.createServer((sock) => {
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      upLines = buf.slice(0, end).split('\r\n').slice(1);
      upHeaders = upLines.map((l) => l.slice(0, l.indexOf(':')).toLowerCase());
      buf = '';
      sock.write(
        'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: x-resp, keep-alive\r\nX-Resp: secret\r\n' +
          'Keep-Alive: timeout=77\r\nProxy-Connection: keep-alive\r\nUpgrade: foo\r\nTrailer: x-t\r\n' +
          'Set-Cookie: a=1; Path=/\r\nSet-Cookie: b=2; HttpOnly\r\nSet-Cookie: c=3\r\n\r\nok',
      );
    });
  });
  const upPort = await listen(t, raw);
  const group = new UpstreamGroup([target(upPort)], CFG);
  const port = await front(t, forwarder(t), () => group);
  // A raw client too: Node's client refuses to send some of these fields.
  const r = await rawRequest(
    port,
    'GET / HTTP/1.1\r\nHost: h.example.test\r\nConnection: close, X-Custom\r\nX-Custom: drop-me\r\n' +
      'Keep-Alive: timeout=9\r\nTE: trailers\r\nUpgrade: h2c\r\nProxy-Connection: keep-alive\r\n' +
      'Trailer: x-t\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n',
  );
  t.equal(r.status, 200);
  t.equal(r.body.toString(), 'ok');
  for (const name of ['x-custom', 'keep-alive', 'te', 'upgrade', 'proxy-connection', 'trailer']) {
    t.notOk(upHeaders.includes(name), `${name} does not reach the upstream`);
  }
  t.same(
    upLines.filter((l) => /^connection:/i.test(l)),
    ['connection: keep-alive'],
    "the client's Connection is replaced by the proxy's own for its pooled connection",
  );
  t.equal(upHeaders.filter((n) => n === 'cookie').length, 2, 'both Cookie fields kept');
  t.equal(r.headers['x-resp'], undefined, 'a field named by the upstream Connection is dropped');
  t.equal(r.headers['upgrade'], undefined);
  t.equal(r.headers['trailer'], undefined);
  t.equal(r.headers['proxy-connection'], undefined);
  t.equal(r.headers['keep-alive'], undefined, "the upstream's Keep-Alive is not relayed");
  t.same(r.headers.connection, ['close'], "only the front server's own Connection field");
  t.same(r.headers['set-cookie'], ['a=1; Path=/', 'b=2; HttpOnly', 'c=3'], 'every Set-Cookie kept, in order');
});

t.test('header names: compared ignoring ASCII case without copies; the in-place response filter matches the copying one', async (t) => {
  for (const n of ['Content-Length', 'content-length', 'CONTENT-LENGTH', 'cOnTeNt-LeNgTh']) t.ok(isNamed(n, 'content-length'), n);
  for (const n of ['Content-Lengthx', 'Content_Length', 'Content-Lengt', 'Kontent-Length', '']) t.notOk(isNamed(n, 'content-length'), JSON.stringify(n));
  // Lengths that share no name the filter acts on are kept as they are; the rest are judged in any case.
  const fields = ['Server', 'x', 'CONNECTION', 'X-A, keep-alive', 'x-a', '1', 'Keep-Alive', 'timeout=5', 'ETag', '"e"', 'TE', 'trailers', 'Set-Cookie', 'a=1', 'Trailer', 'X-T', 'Set-Cookie', 'b=2'];
  const copied = responseHeaders(fields);
  const kept = ['Server', 'x', 'ETag', '"e"', 'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2'];
  t.same(copied, kept, 'hop-by-hop fields and those Connection names are dropped, repeats kept in order');
  const same = fields.slice();
  t.equal(responseHeadersInPlace(same), same, 'in place: the same array');
  t.same(same, kept, 'in place: the same result');
});

t.test('keep-alive: connections to the upstream are reused, at most pool_connections', async (t) => {
  const up = await upstream(t, (_req, res) => setTimeout(() => res.end('x'), 2));
  const group = new UpstreamGroup([up.target], CFG);
  const port = await front(t, forwarder(t), () => group);
  for (let i = 0; i < 20; i++) t.equal((await request(port)).status, 200);
  t.equal(up.stats.accepted, 1, '20 sequential requests share one connection');
  const all = await Promise.all(Array.from({ length: 100 }, () => request(port)));
  t.ok(all.every((r) => r.status === 200));
  t.ok(up.stats.accepted <= CFG.pool_connections, `100 concurrent requests used ${up.stats.accepted} connections`);
});

t.test('a response that ends in the read that filled the client buffer leaves its pooled connection reading', async (t) => {
  // 20 KiB in one upstream read: the client write of it returns false (over the
  // 16 KiB high-water mark), so the exchange pauses the upstream socket, and the
  // response completes in that same read. The connection goes back to the pool;
  // the next request takes it (last in, first out) and must be answered.
  const big = Buffer.alloc(20 * 1024, 0x61);
  const up = await upstream(t, (req, res) => {
    if (req.url === '/big') {
      res.writeHead(200, { 'content-length': String(big.length) });
      return void res.end(big);
    }
    res.end('small');
  });
  const group = new UpstreamGroup([up.target], CFG);
  const port = await front(t, forwarder(t), () => group, 1500);
  for (let i = 0; i < 3; i++) {
    const r = await request(port, { path: '/big' });
    t.equal(r.status, 200);
    t.equal(r.body.length, big.length, `big response ${i} whole`);
    const s = await request(port, { path: '/small', headers: { accept: 'application/json' } });
    t.equal(s.status, 200, `the request after big response ${i} is answered on the reused connection`);
    t.equal(s.body.toString(), 'small');
  }
  t.equal(up.stats.accepted, 1, 'all six requests on one upstream connection');
});

t.test('fixed-length bodies: split anywhere, empty, short then closed, followed by bytes nobody asked for', async (t) => {
  // The lean pool reads Content-Length bodies itself, past llhttp
  // (lean-pool.ts ownBody): every way the bytes can arrive must come out whole,
  // and the parser must take the next response on the same connection.
  const HEAD = (n: number): string => `HTTP/1.1 200 OK\r\nContent-Length: ${n}\r\n\r\n`;
  const later = (s: net.Socket, ms: number, data: string, end = false): void =>
    void setTimeout(() => (end ? s.end(data) : s.write(data)), ms);
  const answers: Record<string, (s: net.Socket) => void> = {
    '/split': (s) => {
      s.write(HEAD(10));
      later(s, 20, '01234');
      later(s, 40, '5678');
      later(s, 60, '9');
    },
    '/head-and-part': (s) => {
      s.write(HEAD(6) + 'abc');
      later(s, 20, 'def');
    },
    '/empty': (s) => s.write(HEAD(0)),
    '/hello': (s) => s.write(HEAD(5) + 'hello'),
    '/extra': (s) => s.write(HEAD(2) + 'okHTTP/1.1 200 OK\r\n'),
    '/empty-extra': (s) => s.write(HEAD(0) + 'HTTP/1.1 200 OK\r\n'),
    '/short': (s) => {
      s.write(HEAD(10) + '0123');
      later(s, 20, '', true);
    },
  };
  let accepted = 0;
  const raw = net.createServer((s) => {
    accepted++;
    let pending = '';
    s.on('data', (d: Buffer) => {
      pending += d.toString('latin1');
      for (let i = pending.indexOf('\r\n\r\n'); i !== -1; i = pending.indexOf('\r\n\r\n')) {
        const path = pending.slice(0, i).split(' ')[1] as string;
        pending = pending.slice(i + 4);
        answers[path]!(s);
      }
    });
  });
  const group = new UpstreamGroup([target(await listen(t, raw))], CFG);
  const port = await front(t, forwarder(t), () => group);
  const get = async (path: string): Promise<string> => {
    const r = await request(port, { path });
    t.equal(r.status, 200, `${path}: 200`);
    t.equal(r.complete, true, `${path}: a clean end`);
    return r.body.toString('latin1');
  };
  t.equal(await get('/split'), '0123456789', 'head, then the body in three reads (the last of one byte)');
  t.equal(await get('/head-and-part'), 'abcdef', 'head with the first body bytes, then the rest');
  t.equal(await get('/empty'), '', 'Content-Length: 0');
  t.equal(await get('/hello'), 'hello', 'head and body in one read');
  t.equal(accepted, 1, 'all four on one upstream connection: the parser took each next response');
  t.equal(await get('/extra'), 'ok', 'the response before the stray bytes');
  t.equal(await get('/hello'), 'hello', 'the next request is answered');
  t.equal(accepted, 2, 'the connection that sent bytes after its response was not reused');
  const short = await request(port, { path: '/short' });
  t.equal(short.status, 200, '/short: head relayed');
  t.equal(short.complete, false, '/short: closed before Content-Length bytes: not a clean end');
  t.equal(short.body.toString('latin1'), '0123', '/short: the bytes that came');
  t.equal(await get('/hello'), 'hello', 'and the pool recovers');
  t.equal(accepted, 3);
  t.equal(await get('/empty-extra'), '', 'Content-Length: 0 with stray bytes behind it');
  t.equal(await get('/hello'), 'hello', 'answered after it');
  t.equal(accepted, 4, 'that connection was not reused either');
});

t.test('upstream down: 502, JSON or HTML by Accept, no internal address', async (t) => {
  const dead = await deadPort();
  const group = new UpstreamGroup([target(dead)], CFG);
  const port = await front(t, forwarder(t), () => group);
  const json = await request(port, { headers: { accept: 'application/json' } });
  t.equal(json.status, 502);
  t.match(json.headers['content-type'], /application\/json/);
  t.equal(json.headers['cache-control'], 'no-store');
  t.same(JSON.parse(json.body.toString()), { error: 'upstream_refused', message: 'the upstream refused the connection' });
  const html = await request(port, { headers: { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' } });
  t.equal(html.status, 502);
  t.match(html.headers['content-type'], /text\/html/);
  t.match(html.body.toString(), /<h1>502 Bad Gateway<\/h1>/);
  for (const r of [json, html]) {
    t.notMatch(r.body.toString(), '127.0.0.1');
    t.notMatch(r.body.toString(), String(dead));
  }
  const post = await request(port, { method: 'POST', body: 'abc', headers: { accept: '*/*' } });
  t.equal(post.status, 502, 'a request with a body is answered too');
  t.equal(JSON.parse(post.body.toString()).error, 'upstream_refused');
});

t.test('slow upstream: 504 after timeoutMs, and the upstream request is abandoned', async (t) => {
  let closed = 0;
  const up = await upstream(t, (req, res) => {
    res.on('close', () => closed++);
    setTimeout(() => res.end('late'), 3000).unref();
  });
  const group = new UpstreamGroup([up.target], CFG);
  const port = await front(t, forwarder(t), () => group, 300);
  const start = Date.now();
  const r = await request(port, { headers: { accept: 'application/json' } });
  const took = Date.now() - start;
  t.equal(r.status, 504);
  t.equal(JSON.parse(r.body.toString()).error, 'upstream_timeout');
  // undici's headers timer has ~0.5 s resolution (its coarse shared clock), hence the slack.
  t.ok(took >= 280 && took < 2500, `answered after ${took} ms`);
  await new Promise((r) => setTimeout(r, 100));
  t.equal(closed, 1, 'upstream connection closed');
});

t.test('upstream reset mid-body: the client sees a truncated response', async (t) => {
  const up = await upstream(t, (req, res) => {
    if (req.url === '/cl') res.writeHead(200, { 'content-length': '100000' });
    else res.writeHead(200); // chunked
    res.write(Buffer.alloc(1000, 1));
    setTimeout(() => res.socket?.destroy(), 50);
  });
  const group = new UpstreamGroup([up.target], CFG);
  const port = await front(t, forwarder(t), () => group);
  for (const path of ['/cl', '/chunked']) {
    const r = await request(port, { path });
    t.equal(r.status, 200, `${path}: head was relayed`);
    t.equal(r.complete, false, `${path}: not a clean end`);
    t.ok(r.body.length >= 1000 && r.body.length < 100000, `${path}: partial body`);
  }
});

t.test('client disconnect aborts the upstream exchange', async (t) => {
  let upClosed: () => void;
  const closed = new Promise<void>((r) => (upClosed = r));
  const up = await upstream(t, (_req, res) => {
    res.writeHead(200);
    res.write('start');
    res.on('close', () => upClosed());
  });
  const group = new UpstreamGroup([up.target], CFG);
  const port = await front(t, forwarder(t), () => group);
  await new Promise<void>((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, agent: false }, (res) => {
      res.once('data', () => {
        req.destroy();
        resolve();
      });
    });
    req.on('error', () => {});
  });
  await closed;
  t.pass('upstream response closed after the client left');
});

t.test('round-robin, passive ejection and retry of body-less requests', async (t) => {
  const counts = [0, 0];
  const a = await upstream(t, (_req, res) => res.end(String(++counts[0])));
  const b = await upstream(t, (_req, res) => res.end(String(++counts[1])));
  const c = await upstream(t, (_req, res) => res.end('c'));
  const third = { n: 0 };
  c.server.on('request', () => third.n++);
  const cfg = { ...CFG, max_fails: 2, eject_ms: 60_000 };
  const fwd = forwarder(t, cfg);

  const even = new UpstreamGroup([a.target, b.target, c.target], cfg);
  const p1 = await front(t, fwd, () => even);
  for (let i = 0; i < 30; i++) await request(p1);
  t.same([counts[0], counts[1], third.n], [10, 10, 10], 'even distribution across 3 upstreams');

  counts[0] = counts[1] = 0;
  const dead = target(await deadPort());
  const group = new UpstreamGroup([a.target, dead, b.target], cfg);
  const p2 = await front(t, fwd, () => group);
  const statuses: number[] = [];
  for (let i = 0; i < 30; i++) statuses.push((await request(p2)).status);
  t.ok(statuses.every((s) => s === 200), 'no 502 while another upstream is healthy (GET retried once)');
  t.equal(counts[0] + counts[1], 30);
  t.ok(Math.abs(counts[0] - counts[1]) <= 2, `the healthy two share the load: ${counts}`);
  t.notOk(group.isHealthy(dead, Date.now()), 'the dead upstream is ejected');
  t.ok(group.isHealthy(a.target, Date.now()) && group.isHealthy(b.target, Date.now()));

  // A request with a body is never replayed: the upstream might have acted on it.
  const deadFirst = new UpstreamGroup([target(await deadPort()), a.target], cfg);
  const p3 = await front(t, fwd, () => deadFirst);
  const post = await request(p3, { method: 'POST', body: 'x' });
  t.equal(post.status, 502, 'POST to a refusing upstream is not retried');
  t.equal((await request(p3)).status, 200, 'the next GET goes to the healthy one');
});

t.test('all ejected: the group still picks the one whose ejection ends first', async (t) => {
  const ts = [target(1), target(2), target(3)];
  const g = new UpstreamGroup(ts, { max_fails: 1, eject_ms: 1000 });
  g.reportFailure(ts[0]!, 100);
  g.reportFailure(ts[1]!, 50);
  g.reportFailure(ts[2]!, 200);
  t.equal(g.pick(300), ts[1], 'soonest back');
  t.equal(g.pick(1060), ts[1], 'back in rotation once its ejection ended');
  g.reportSuccess(ts[0]!);
  t.equal(g.pick(300), ts[0]);
});

t.test('classifyUpstreamError maps codes in one place', async (t) => {
  const e = (code: string) => Object.assign(new Error('x'), { code });
  t.equal(classifyUpstreamError(e('ECONNREFUSED')), 'UPSTREAM_REFUSED');
  t.equal(classifyUpstreamError(e('ENOTFOUND')), 'UPSTREAM_REFUSED');
  t.equal(classifyUpstreamError(e('EHOSTUNREACH')), 'UPSTREAM_REFUSED');
  t.equal(classifyUpstreamError(e('ECONNRESET')), 'UPSTREAM_RESET');
  t.equal(classifyUpstreamError(e('UND_ERR_SOCKET')), 'UPSTREAM_RESET');
  t.equal(classifyUpstreamError(e('UND_ERR_CLOSED')), 'UPSTREAM_RESET');
  t.equal(classifyUpstreamError(e('EPIPE')), 'UPSTREAM_RESET');
  t.equal(classifyUpstreamError(e('UND_ERR_HEADERS_TIMEOUT')), 'UPSTREAM_TIMEOUT');
  t.equal(classifyUpstreamError(e('UND_ERR_BODY_TIMEOUT')), 'UPSTREAM_TIMEOUT');
  t.equal(classifyUpstreamError(e('UND_ERR_CONNECT_TIMEOUT')), 'UPSTREAM_TIMEOUT');
  t.equal(classifyUpstreamError(e('ETIMEDOUT')), 'UPSTREAM_TIMEOUT');
  t.equal(classifyUpstreamError(e('HPE_INVALID_CONSTANT')), 'UPSTREAM_BAD_RESPONSE');
  t.equal(classifyUpstreamError(new Error('no code')), 'UPSTREAM_BAD_RESPONSE');
});

t.test('invalid upstream response: 502 upstream_bad_response', async (t) => {
  const raw = net.createServer((s) => s.once('data', () => s.end('HTTP/1.1 2x0 Nope\r\n\r\n')));
  const group = new UpstreamGroup([target(await listen(t, raw))], CFG);
  const port = await front(t, forwarder(t), () => group);
  const r = await request(port);
  t.equal(r.status, 502);
  t.equal(JSON.parse(r.body.toString()).error, 'upstream_bad_response');
});

t.test('https upstream: verified against its own name, never the client Host', async (t) => {
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    keySize: 2048,
    algorithm: 'sha256',
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] }],
  });
  let sni: string | false = false;
  const server = https.createServer({ key: pems.private, cert: pems.cert }, (req, res) => {
    sni = (req.socket as import('node:tls').TLSSocket & { servername: string | false }).servername;
    res.end(`secure ${req.headers.host}`);
  });
  const upPort = await listen(t, server);
  const byName = new UpstreamGroup([target(upPort, 'https:', 'localhost')], CFG);
  const byIp = new UpstreamGroup([target(upPort, 'https:', '127.0.0.1')], CFG);
  const trusted = forwarder(t, CFG, { ca: pems.cert });
  const pName = await front(t, trusted, () => byName);
  const pIp = await front(t, trusted, () => byIp);
  const r1 = await request(pName, { headers: { host: 'app.example.test' } });
  t.equal(r1.status, 200);
  t.equal(r1.body.toString(), 'secure app.example.test');
  t.equal(sni, 'localhost', 'SNI names the upstream');
  const r2 = await request(pIp, { headers: { host: 'other.example.test' } });
  t.equal(r2.status, 200, 'an IP upstream is checked against its IP SAN');
  const untrusted = await front(t, forwarder(t), () => byName);
  const r3 = await request(untrusted);
  t.equal(r3.status, 502, 'an untrusted certificate is refused');
});

t.test('streaming: 1 GiB up and 1 GiB down with flat memory', async (t) => {
  const GiB = 1024 * MiB;
  const up = await upstream(t, (req, res) => {
    if (req.method === 'POST') {
      let n = 0;
      req.on('data', (c: Buffer) => (n += c.length));
      req.on('end', () => res.end(String(n)));
    } else {
      res.writeHead(200, { 'content-length': String(GiB) });
      generated(GiB).pipe(res);
    }
  });
  const group = new UpstreamGroup([up.target], CFG);
  const port = await front(t, forwarder(t), () => group, 10_000);

  let s = rssSampler();
  let start = Date.now();
  const upload = await request(port, { method: 'POST', body: generated(GiB), headers: { 'content-length': String(GiB) } });
  let grew = s.stop();
  t.equal(upload.status, 200);
  t.equal(upload.body.toString(), String(GiB), 'upstream counted every byte');
  t.ok(grew < 96 * MiB, `upload: rss grew ${(grew / MiB).toFixed(1)} MiB in ${Date.now() - start} ms`);

  s = rssSampler();
  start = Date.now();
  const got = await new Promise<number>((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, agent: false }, (res) => {
        let n = 0;
        res.on('data', (c: Buffer) => (n += c.length));
        res.on('end', () => resolve(n));
        res.on('error', reject);
      })
      .on('error', reject);
  });
  grew = s.stop();
  t.equal(got, GiB, 'client received every byte');
  t.ok(grew < 96 * MiB, `download: rss grew ${(grew / MiB).toFixed(1)} MiB in ${Date.now() - start} ms`);
});

t.test('an upstream that never answers: 200 concurrent requests all get 504, memory flat', async (t) => {
  const hung = new Set<http.ServerResponse>();
  const up = await upstream(t, (_req, res) => hung.add(res));
  // Fewer connections than requests: most wait in the pool queue, where only
  // the forwarder's own deadline sweep can answer them.
  const cfg = { ...CFG, pool_connections: 16 };
  const group = new UpstreamGroup([up.target], cfg);
  const port = await front(t, forwarder(t, cfg), () => group, 300);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 200 });
  t.teardown(() => agent.destroy());
  const round = async () => {
    const start = Date.now();
    const rs = await Promise.all(Array.from({ length: 200 }, () => request(port, { agent })));
    return { statuses: rs.map((r) => r.status), took: Date.now() - start };
  };
  const first = await round();
  t.ok(first.statuses.every((s) => s === 504), 'all 504');
  t.ok(first.took < 2500, `200 answered within ${first.took} ms (timeout 300 ms)`);
  gc();
  const heap0 = process.memoryUsage().heapUsed;
  for (let i = 0; i < 5; i++) {
    const r = await round();
    t.ok(r.statuses.every((s) => s === 504), `round ${i + 2}: all 504`);
  }
  await new Promise((r) => setTimeout(r, 200));
  gc();
  const grew = process.memoryUsage().heapUsed - heap0;
  t.ok(grew < 16 * MiB, `heap grew ${(grew / MiB).toFixed(1)} MiB over 1000 more hung requests`);
  t.ok(up.stats.open <= cfg.pool_connections, `upstream connections open: ${up.stats.open}`);
});
