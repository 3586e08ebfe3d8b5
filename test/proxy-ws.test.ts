import t, { type Test } from 'tap';
import http from 'node:http';
import type { Socket } from 'node:net';
import { once } from 'node:events';
import WebSocket, { WebSocketServer } from 'ws';
import { WebSocketProxy } from '../src/proxy/websocket.js';
import { UpstreamGroup } from '../src/proxy/upstream-group.js';
import { CFG, MiB, deadPort, forwardRequest, gc, listen, target, upstream, type Upstream } from './helpers/upstreams.js';

interface WsUpstream extends Upstream {
  readonly wss: WebSocketServer;
  /** The first request heads the upstream saw (bounded: the cycle test must not retain 10,000). */
  readonly heads: http.IncomingMessage[];
}

/** An echo server; `onConnection` may take over a connection instead. */
async function wsUpstream(t: Test, onConnection?: (ws: WebSocket, req: http.IncomingMessage) => void): Promise<WsUpstream> {
  const up = await upstream(t, (_req, res) => res.end('plain'));
  const heads: http.IncomingMessage[] = [];
  const wss = new WebSocketServer({
    server: up.server,
    handleProtocols: (protocols) => (protocols.has('b') ? 'b' : false),
  });
  wss.on('connection', (ws, req) => {
    if (heads.length < 16) heads.push(req);
    if (onConnection) return onConnection(ws, req);
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  t.teardown(() => wss.close());
  return { ...up, wss, heads };
}

/** The data plane's upgrade path in miniature: `/loc2…` is location 2, the rest location 1. */
async function front(t: Test, proxy: WebSocketProxy, group: UpstreamGroup, timeoutMs = CFG.timeout_ms) {
  const server = http.createServer((_req, res) => res.end());
  const stats = { open: 0 };
  server.on('connection', (s: Socket) => {
    stats.open++;
    s.on('close', () => stats.open--);
  });
  server.on('upgrade', (req: http.IncomingMessage, socket, head: Buffer) => {
    const id = req.url?.startsWith('/loc2') ? 2 : 1;
    proxy.upgrade(req, socket, head, forwardRequest(req, group, timeoutMs), id);
  });
  const port = await listen(t, server);
  return { port, stats };
}

function wsProxy(t: Test): WebSocketProxy {
  const p = new WebSocketProxy(CFG);
  t.teardown(() => p.close());
  return p;
}

function open(url: string, protocols?: string[], opts?: WebSocket.ClientOptions): Promise<WebSocket> {
  const ws = new WebSocket(url, protocols, opts);
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`unexpected ${res.statusCode}`)));
  });
}

function closed(ws: WebSocket): Promise<[number, string]> {
  return new Promise((resolve) => ws.once('close', (code, reason) => resolve([code, reason.toString()])));
}

async function until(cond: () => boolean, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  return cond();
}

t.test('echo, Host and Origin unchanged, X-Forwarded-*, subprotocol', async (t) => {
  const up = await wsUpstream(t);
  const proxy = wsProxy(t);
  const { port } = await front(t, proxy, new UpstreamGroup([up.target], CFG));
  const ws = await open(`ws://127.0.0.1:${port}/socket//x?room=1`, ['a', 'b'], {
    headers: { host: 'uc-1.org-2.example.test:8443', 'x-forwarded-for': '6.6.6.6' },
    origin: 'https://uc-1.org-2.example.test:8443',
  });
  t.equal(ws.protocol, 'b', 'the subprotocol the upstream picked');
  const req = up.heads[0]!;
  t.equal(req.headers.host, 'uc-1.org-2.example.test:8443', 'Host unchanged');
  t.equal(req.headers.origin, 'https://uc-1.org-2.example.test:8443', 'Origin unchanged');
  t.equal(req.headers['x-forwarded-for'], '127.0.0.1');
  t.equal(req.headers['x-forwarded-proto'], 'http');
  t.equal(req.headers['x-forwarded-host'], 'uc-1.org-2.example.test:8443');
  t.equal(req.url, '/socket//x?room=1', 'path and query exact');
  t.equal(proxy.size, 1);

  ws.send('hello');
  const [text, isBin1] = (await once(ws, 'message')) as [Buffer, boolean];
  t.equal(text.toString(), 'hello');
  t.equal(isBin1, false);
  const bin = Buffer.from([0, 1, 2, 255, 254]);
  ws.send(bin);
  const [echo, isBin2] = (await once(ws, 'message')) as [Buffer, boolean];
  t.same(Buffer.from(echo), bin);
  t.equal(isBin2, true);
  ws.close();
  await closed(ws);
  t.ok(await until(() => proxy.size === 0), 'untracked after close');
});

t.test('close codes travel both ways', async (t) => {
  let upClose: Promise<[number, string]> | undefined;
  let serverSide: WebSocket | undefined;
  const up = await wsUpstream(t, (ws) => {
    serverSide = ws;
    upClose = closed(ws);
  });
  const proxy = wsProxy(t);
  const { port } = await front(t, proxy, new UpstreamGroup([up.target], CFG));

  const c1 = await open(`ws://127.0.0.1:${port}/`);
  await until(() => upClose !== undefined);
  c1.close(4000, 'client-bye');
  t.same(await upClose, [4000, 'client-bye'], 'upstream sees the client close');

  const c2 = await open(`ws://127.0.0.1:${port}/`);
  await until(() => serverSide !== undefined && upClose !== undefined);
  const c2closed = closed(c2);
  serverSide!.close(4001, 'server-bye');
  t.same(await c2closed, [4001, 'server-bye'], 'client sees the upstream close code');
  t.ok(await until(() => proxy.size === 0));
});

t.test('upstream down or silent: an HTTP error on the raw socket', async (t) => {
  const proxy = wsProxy(t);
  const dead = await front(t, proxy, new UpstreamGroup([target(await deadPort())], CFG));
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${dead.port}/`);
    ws.on('unexpected-response', (_req, r) => resolve(r));
    ws.on('open', () => reject(new Error('opened')));
    ws.on('error', reject);
  });
  t.equal(res.statusCode, 502);
  let body = '';
  for await (const c of res) body += c;
  t.same(JSON.parse(body), { error: 'upstream_refused', message: 'the upstream refused the connection' });

  // Accepts TCP, never answers the handshake.
  const silent = http.createServer();
  silent.on('upgrade', () => {});
  const silentPort = await listen(t, silent);
  const slow = await front(t, proxy, new UpstreamGroup([target(silentPort)], CFG), 300);
  const started = Date.now();
  const status = await new Promise<number>((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${slow.port}/`);
    ws.on('unexpected-response', (_req, r) => resolve(r.statusCode ?? 0));
    ws.on('error', reject);
  });
  t.equal(status, 504);
  t.ok(Date.now() - started < 2000, `answered after ${Date.now() - started} ms`);
  t.ok(await until(() => proxy.size === 0 && dead.stats.open === 0 && slow.stats.open === 0), 'nothing left open');
});

t.test('closeLocations sends 1001 to both sides, only for the named locations', async (t) => {
  const upCloses: Promise<[number, string]>[] = [];
  const up = await wsUpstream(t, (ws) => {
    upCloses.push(closed(ws));
    ws.on('message', (d, b) => ws.send(d, { binary: b }));
  });
  const proxy = wsProxy(t);
  const { port } = await front(t, proxy, new UpstreamGroup([up.target], CFG));
  const one = await open(`ws://127.0.0.1:${port}/loc1`);
  const two = await open(`ws://127.0.0.1:${port}/loc2`);
  t.equal(proxy.size, 2);
  const oneClosed = closed(one);
  proxy.closeLocations(new Set([1]), 1001);
  t.equal((await oneClosed)[0], 1001, 'client of location 1 gets 1001');
  t.equal((await upCloses[0]!)[0], 1001, 'its upstream gets 1001 too');
  t.equal(proxy.size, 1);
  two.send('still here');
  t.equal(((await once(two, 'message'))[0] as Buffer).toString(), 'still here', 'location 2 untouched');
  const twoClosed = closed(two);
  proxy.closeLocations('all', 1001);
  t.equal((await twoClosed)[0], 1001);
  t.equal(proxy.size, 0);
});

t.test('closeLocations mid-frame: the frame in flight completes, then 1001', async (t) => {
  const big = Buffer.alloc(8 * MiB);
  for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff;
  let sent: (() => void) | undefined;
  const started = new Promise<void>((r) => (sent = r));
  const up = await wsUpstream(t, (ws) => {
    ws.on('message', () => {
      ws.send(big);
      sent!();
    });
  });
  const proxy = wsProxy(t);
  const { port } = await front(t, proxy, new UpstreamGroup([up.target], CFG));
  const ws = await open(`ws://127.0.0.1:${port}/`);
  const got: Buffer[] = [];
  ws.on('message', (d: Buffer) => got.push(Buffer.from(d)));
  const wsClosed = closed(ws);
  ws.send('go');
  await started;
  ws.pause(); // the proxy's writes to us back up: the big frame is in flight
  await new Promise((r) => setTimeout(r, 50));
  proxy.closeLocations('all', 1001);
  ws.resume();
  const [code] = await wsClosed;
  t.equal(got.length, 1, 'the message in flight arrived');
  t.ok(got[0]?.equals(big), 'intact');
  t.equal(code, 1001);
});

t.test('10,000 open/close cycles leave nothing behind', async (t) => {
  const up = await wsUpstream(t);
  const proxy = wsProxy(t);
  const { port, stats } = await front(t, proxy, new UpstreamGroup([up.target], CFG));
  const url = `ws://127.0.0.1:${port}/cycle`;
  const cycle = async () => {
    const ws = await open(url);
    const c = closed(ws);
    ws.close(1000);
    await c;
  };
  const run = async (n: number) => {
    let next = 0;
    const worker = async () => {
      while (next < n) {
        next++;
        await cycle();
      }
    };
    await Promise.all(Array.from({ length: 50 }, worker));
  };
  // Settled heap: closing timers of the last sockets have run, then two full collections.
  const settledHeap = async () => {
    await new Promise((r) => setTimeout(r, 700));
    gc();
    gc();
    return process.memoryUsage().heapUsed;
  };
  const start = Date.now();
  await run(2000); // warm-up: code optimized, pools and caches at their size
  await until(() => proxy.size === 0 && stats.open === 0 && up.stats.open === 0);
  const heap0 = await settledHeap();
  await run(8000);
  const took = Date.now() - start;
  t.ok(await until(() => proxy.size === 0 && stats.open === 0 && up.stats.open === 0, 5000));
  t.equal(proxy.size, 0, 'proxy tracks nothing');
  t.equal(stats.open, 0, 'front connections all closed');
  t.equal(up.stats.open, 0, 'upstream connections all closed');
  t.equal(up.stats.accepted, 10_000, 'one upstream connection per websocket');
  const grew = (await settledHeap()) - heap0;
  t.ok(grew < 4 * MiB, `heap grew ${(grew / MiB).toFixed(2)} MiB over the last 8,000 cycles (${took} ms for 10,000)`);
});

t.test('bytes the upstream sends together with its 101 reach the client (a server that speaks first)', async (t) => {
  const { createHash } = await import('node:crypto');
  const up = await upstream(t, (_req, res) => res.end());
  // One write: the 101 and two frames (a text message, then close 4401), so
  // they arrive in the proxy's read of the response head.
  up.server.on('upgrade', (req: http.IncomingMessage, socket: Socket) => {
    const accept = createHash('sha1').update(`${req.headers['sec-websocket-key'] as string}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    const hello = Buffer.from([0x81, 5, ...Buffer.from('hello')]);
    const close = Buffer.from([0x88, 2, 0x11, 0x31]);
    socket.write(Buffer.concat([Buffer.from(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`), hello, close]));
    // The client's close frame answers ours: then the server closes TCP, as RFC 6455 §7.1.1 asks.
    socket.once('data', () => socket.end());
  });
  const proxy = wsProxy(t);
  const { port } = await front(t, proxy, new UpstreamGroup([up.target], CFG));
  for (let i = 0; i < 5; i++) {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/first`);
    const got: string[] = [];
    ws.on('message', (d: Buffer) => got.push(d.toString()));
    const [code] = (await Promise.race([once(ws, 'close'), new Promise((r) => setTimeout(() => r([-1]), 10_000))])) as [number];
    t.same([got, code], [['hello'], 4401], `round ${i}: the first message and the close code arrived`);
  }
});
