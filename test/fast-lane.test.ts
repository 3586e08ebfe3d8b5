// The fast lane (issue 4, src/server/fast-lane.ts) against node:http, over
// real TLS with raw bytes: two in-process appliances with the same routes and
// the same upstream, one with `proxy.fast_lane: true`, one with `false`.
//
// 1. What the lane serves is byte-identical to what node:http serves (Date
//    blanked), and the upstream sees identical request heads.
// 2. Malformed and smuggling shapes plus a seeded mutation fuzzer: the same
//    answers, the same requests reaching the upstream.
// 3. Keep-alive, a client leaving mid-response, the keep-alive timeout, drain.
// 4. Metrics and the access log count a lane request like a node:http one.
//
// "The lane served it" is read without touching src/: the observer's
// fastRequest() is only ever called by the lane right before it forwards
// (src/server/fast-lane.ts serve()), so a spy on it counts lane-served
// requests; the https server's own 'request' event counts what node:http
// parsed. The FastLane object itself (for its connection set) is reached
// through the symbol it puts on each TLS socket it holds.

import t from 'tap';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import tls from 'node:tls';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import { startAppliance, type Appliance } from '../src/appliance.js';
import { loadJwtKeys } from '../src/auth/keys.js';
import { signToken } from '../src/auth/jwt.js';
import { SessionCookies } from '../src/auth/session-cookie.js';
import { loadConfig } from '../src/config/load.js';
import type { Config } from '../src/config/types.js';
import { ORG, ORG2_HOST, ORG_HOST, UC, UC_HOST, portOf, writeTestConfig } from './helpers/appliance.js';
import { deadPort } from './helpers/upstreams.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const SECRET = 'fast-lane-test-secret-0123456789abcdefgh';
const SESSION_KEY = Buffer.alloc(32, 0x5a);
const KEEPALIVE_MS = 1500;
const HEADER_TIMEOUT_MS = 1000;
const MAX_HEADER_BYTES = 8192;
const HANG_TIMEOUT_MS = 300;

// ---------------------------------------------------------------------------
// The upstream: one plain HTTP server behind every appliance of this file.

interface SeenHead {
  readonly xff: string;
  readonly method: string;
  readonly url: string;
  readonly raw: readonly string[];
}

const BIG = Buffer.alloc(20 * 1024, 0x62);
const seen: SeenHead[] = [];
let upstreamClientErrors = 0;
const upSockets = new Set<Socket>();
const streams = { open: 0, closedEarly: 0 };

function rawReply(req: http.IncomingMessage, text: string): void {
  // A response node:http would never write (close-delimited, own framing): the socket is ours from here.
  const s = req.socket;
  s.write(Buffer.from(text, 'latin1'), () => s.end());
}

const upServer = http.createServer((req, res) => {
  seen.push({ xff: String(req.headers['x-forwarded-for'] ?? ''), method: req.method ?? '', url: req.url ?? '', raw: req.rawHeaders });
  const url = req.url ?? '/';
  const path = url.split('?')[0]!;
  switch (path) {
    case '/cl': {
      const body = 'hello from the upstream, with a length';
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body), 'X-Up': 'cl' });
      return void res.end(body);
    }
    case '/echo': {
      const body = JSON.stringify({ method: req.method, url, raw: req.rawHeaders });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      return void res.end(body);
    }
    case '/chunked': {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first part;');
      setTimeout(() => res.end('second part.'), 30);
      return;
    }
    case '/close':
      // HTTP/1.0-style: no length, the body ends when the connection does.
      return rawReply(req, 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nX-Up: close\r\n\r\nbody delimited by the close');
    case '/close-empty':
      return rawReply(req, 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n');
    case '/early':
      return rawReply(req, 'HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
    case '/obs-text':
      return rawReply(req, 'HTTP/1.1 200 OK\r\nX-Obs: caf\xe9 \xff\tend\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
    case '/trailer':
      return rawReply(req, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\nConnection: close\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n');
    case '/cl0':
      res.writeHead(200, { 'content-length': '0' });
      return void res.end();
    case '/empty-chunked':
      return rawReply(req, 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n');
    case '/reason':
      return rawReply(req, 'HTTP/1.1 200 Quite Fine\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
    case '/204':
      res.writeHead(204, { 'x-up': '204' });
      return void res.end();
    case '/304':
      res.writeHead(304, { etag: '"v1"', 'cache-control': 'max-age=60' });
      return void res.end();
    case '/cookies': {
      res.setHeader('Set-Cookie', ['a=1; Path=/; HttpOnly', 'b=2; Path=/', 'c=3']);
      res.setHeader('Content-Type', 'text/plain');
      res.setHeader('Content-Length', '7');
      return void res.end('cookies');
    }
    case '/big': {
      // Over the client socket's 16 KiB high-water mark, in one upstream write (and read).
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(BIG.length) });
      return void res.end(BIG);
    }
    case '/hang':
      return; // never answered (the location's timeout_ms is HANG_TIMEOUT_MS)
    case '/slow':
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '4' });
        res.end('slow');
      }, 600);
      return;
    case '/stream': {
      // A long body in small pieces: the client leaves in the middle.
      streams.open++;
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      let n = 0;
      const timer = setInterval(() => {
        if (++n > 100) {
          clearInterval(timer);
          res.end();
          return;
        }
        res.write(Buffer.alloc(1024, 0x61));
      }, 10);
      res.on('close', () => {
        clearInterval(timer);
        streams.open--;
        if (n <= 100) streams.closedEarly++;
      });
      return;
    }
    default: {
      // Everything else (the fuzzer's targets): a small answer that names what arrived, not who sent it.
      const body = `${req.method} ${url}`;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
      return void res.end(body);
    }
  }
});
upServer.on('connection', (s: Socket) => {
  upSockets.add(s);
  s.on('close', () => upSockets.delete(s));
});
upServer.on('clientError', (_err, socket: Socket) => {
  upstreamClientErrors++;
  socket.destroy();
});
await new Promise<void>((r) => upServer.listen(0, '127.0.0.1', r));
t.teardown(
  () =>
    new Promise<void>((resolve) => {
      for (const s of upSockets) s.destroy();
      upServer.close(() => resolve());
    }),
);
const UP = `http://127.0.0.1:${(upServer.address() as AddressInfo).port}`;
const DEAD = `http://127.0.0.1:${await deadPort()}`;

// ---------------------------------------------------------------------------
// The appliances.

interface Edge {
  readonly name: string;
  readonly app: Appliance;
  readonly cfg: Config;
  readonly port: number;
  readonly context: tls.SecureContext;
  readonly adminUrl: string;
  readonly platformToken: string;
  /** Access log lines (JSON). */
  readonly lines: string[];
  /** Requests the fast lane served (the observer's fastRequest), by client address. */
  readonly lane: { count: number; byAddress: Map<string, number> };
  /** Requests node:http parsed ('request' and 'upgrade' events on the https server). */
  readonly node: { count: number };
  /** The FastLane object, once a socket showed it. */
  laneObject(): { conns: Set<unknown> } | undefined;
  stop(): Promise<boolean>;
}

async function startEdge(name: string, fastLane: boolean): Promise<Edge> {
  const { dir, file } = await writeTestConfig({
    limits: { header_timeout_ms: HEADER_TIMEOUT_MS, keepalive_timeout_ms: KEEPALIVE_MS, max_header_bytes: MAX_HEADER_BYTES, drain_timeout_ms: 5000 },
    proxy: { fast_lane: fastLane },
    auth: { jwt: { secret: SECRET }, fail_limit: { max_failures: 100_000 } },
    log: { level: 'silent', access_log: true },
  });
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // One session key for every appliance here: a session cookie minted below opens them all.
  await mkdir(join(dir, 'data'), { recursive: true, mode: 0o700 });
  await writeFile(join(dir, 'data', 'session.key'), SESSION_KEY.toString('base64url') + '\n', { mode: 0o600 });
  const cfg = await loadConfig(file);
  const lines: string[] = [];
  const log = pino({ level: 'silent' }, { write: (s: string) => void lines.push(s) });
  const app = await startAppliance(cfg, log, { processMetrics: false });
  let stopping: Promise<boolean> | undefined;
  const stop = (): Promise<boolean> => (stopping ??= app.stop());
  t.teardown(stop);

  const lane = { count: 0, byAddress: new Map<string, number>() };
  const obs = app.data.plane.observer!;
  const fastRequest = obs.fastRequest.bind(obs);
  obs.fastRequest = (req, socket, host, loc) => {
    lane.count++;
    const a = socket.remoteAddress ?? '';
    lane.byAddress.set(a, (lane.byAddress.get(a) ?? 0) + 1);
    return fastRequest(req, socket, host, loc);
  };
  const node = { count: 0 };
  const server = app.data.servers[0]!;
  server.on('request', () => node.count++);
  server.on('upgrade', () => node.count++);
  let laneObj: { conns: Set<unknown> } | undefined;
  server.on('secureConnection', (s: tls.TLSSocket) => {
    if (laneObj !== undefined) return;
    const sym = Object.getOwnPropertySymbols(s).find((x) => x.description === 'edgeway.fastLane');
    const conn = sym === undefined ? undefined : ((s as unknown as Record<symbol, { lane?: { conns: Set<unknown> } } | undefined>)[sym]);
    if (conn?.lane !== undefined) laneObj = conn.lane;
  });

  const caPem = await readFile(join(cfg.data_dir, 'ca', 'edgeway-local-ca.crt'), 'utf8');
  const keys = await loadJwtKeys(cfg);
  const edge: Edge = {
    name,
    app,
    cfg,
    port: portOf(app.addresses.https),
    context: tls.createSecureContext({ ca: [caPem] }),
    adminUrl: `http://${app.addresses.admin}`,
    platformToken: signToken(keys, cfg.auth.jwt, { type: 'platform', scope: ['edge:admin'] }, 3600),
    lines,
    lane,
    node,
    laneObject: () => laneObj,
    stop,
  };
  const hosts: [string, Record<string, unknown>][] = [
    [
      ORG_HOST,
      {
        access: 'public',
        locations: [
          { path: '/', upstream: UP },
          { path: '/hang', upstream: UP, timeout_ms: HANG_TIMEOUT_MS },
          { path: '/dead', upstream: DEAD },
        ],
      },
    ],
    [UC_HOST, { locations: [{ path: '/', upstream: UP }] }],
  ];
  for (const [host, entry] of hosts) {
    const r = await adminCall(edge, 'PUT', `/v1/hosts/${host}`, { host, ...entry });
    if (r.status !== 201) throw new Error(`${name}: PUT ${host}: ${r.status} ${r.text}`);
  }
  return edge;
}

async function adminCall(e: Pick<Edge, 'adminUrl' | 'platformToken'>, method: string, path: string, body?: unknown): Promise<{ status: number; text: string }> {
  const res = await fetch(e.adminUrl + path, {
    method,
    headers: { authorization: `Bearer ${e.platformToken}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, text: await res.text() };
}

/** Prometheus text → { 'name{labels}': value }. */
async function metrics(e: Edge): Promise<Map<string, number>> {
  const r = await adminCall(e, 'GET', '/metrics');
  if (r.status !== 200) throw new Error(`/metrics: ${r.status}`);
  const out = new Map<string, number>();
  for (const line of r.text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return out;
}

function sumOf(m: Map<string, number>, prefix: string): number {
  let n = 0;
  for (const [k, v] of m) if (k.startsWith(prefix)) n += v;
  return n;
}

const fast = await startEdge('fast', true);
const plain = await startEdge('plain', false);

const carolBearer = signToken(await loadJwtKeys(fast.cfg), fast.cfg.auth.jwt, { type: 'user', sub: 'carol', scope: [`org:${ORG}:member`, `uc:${UC}:access`] }, 3600);
const setCookie = new SessionCookies(SESSION_KEY, 3600).mint(UC_HOST, 'carol', [`uc:${UC}:access`], [UC_HOST]);
if (setCookie === undefined) throw new Error('no session minted');
const session = setCookie.slice(0, setCookie.indexOf(';'));

// ---------------------------------------------------------------------------
// A raw client: exact bytes out, responses framed just enough to know where they end.

function connect(e: Edge, servername: string, localAddress?: string): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({
      host: '127.0.0.1',
      port: e.port,
      servername,
      secureContext: e.context,
      checkServerIdentity: () => undefined,
      ...(localAddress === undefined ? {} : { localAddress }),
    });
    s.once('secureConnect', () => {
      s.off('error', reject);
      // 'close' follows an error; the readers watch that.
      s.on('error', () => undefined);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Where the response starting at `at` ends: an offset, 'close' (delimited by the close), or undefined (not all here). */
function responseEnd(buf: Buffer, at: number, isHead: boolean): number | 'close' | undefined {
  const e = buf.indexOf('\r\n\r\n', at);
  if (e === -1) return undefined;
  const head = buf.subarray(at, e).toString('latin1');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
  const status = m ? Number(m[1]) : 0;
  const bodyAt = e + 4;
  if (isHead || status === 204 || status === 304 || (status >= 100 && status < 200)) return bodyAt;
  if (/\r\ntransfer-encoding:[^\r]*chunked/i.test(head)) {
    let p = bodyAt;
    for (;;) {
      const le = buf.indexOf('\r\n', p);
      if (le === -1) return undefined;
      const size = parseInt(buf.subarray(p, le).toString('latin1'), 16);
      if (Number.isNaN(size)) return 'close';
      if (size === 0) {
        // No trailers here: the last chunk is followed by one CRLF.
        return buf.length >= le + 4 ? le + 4 : undefined;
      }
      p = le + 2 + size + 2;
      if (p > buf.length) return undefined;
    }
  }
  const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  if (cl) {
    const end = bodyAt + Number(cl[1]);
    return buf.length >= end ? end : undefined;
  }
  return 'close';
}

interface Got {
  /** Everything received, Date values blanked. */
  readonly text: string;
  /** Whole responses received (by their framing). */
  readonly responses: string[];
  /** The server closed the connection within the wait. */
  readonly closed: boolean;
  readonly timedOut: boolean;
}

/** Date, and the random login state of a redirect, blanked. */
function blankDate(s: string): string {
  return s.replace(/\r\nDate: [^\r\n]*/gi, '\r\nDate: -').replace(/edgeway_state(=|%3D)[A-Za-z0-9_-]+/g, 'edgeway_state$1-');
}

/**
 * Writes `steps` (bytes, or a pause in ms) on `s`, then reads until `want`
 * responses are complete (and, when `waitClose`, the close), the server
 * closes, nothing more came for `graceMs` after a complete response, or
 * `timeoutMs` passed.
 */
function talk(
  s: tls.TLSSocket,
  steps: readonly (string | Buffer | number)[],
  o: { isHead?: boolean; want?: number; graceMs?: number; timeoutMs?: number; waitClose?: boolean } = {},
): Promise<Got> {
  const want = o.want ?? Infinity;
  const grace = o.graceMs ?? 120;
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    let settled = false;
    let graceTimer: NodeJS.Timeout | undefined;
    let writing = true;
    const responses: string[] = [];
    let at = 0;
    const finish = (closed: boolean, timedOut: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(graceTimer);
      s.off('data', onData);
      s.off('close', onClose);
      const tail = buf.length > at ? buf.subarray(at).toString('latin1') : '';
      if (closed && tail !== '') responses.push(blankDate(tail));
      resolve({ text: blankDate(buf.toString('latin1')), responses, closed, timedOut });
    };
    const check = (): void => {
      clearTimeout(graceTimer);
      for (;;) {
        const end = responseEnd(buf, at, o.isHead === true);
        if (typeof end !== 'number') break;
        responses.push(blankDate(buf.subarray(at, end).toString('latin1')));
        at = end;
      }
      if (responses.length >= want && !o.waitClose) return finish(s.destroyed, false);
      if (responses.length > 0 && at === buf.length && !writing && !o.waitClose && want === Infinity) {
        graceTimer = setTimeout(() => finish(s.destroyed, false), grace);
      }
    };
    const onData = (c: Buffer): void => {
      buf = Buffer.concat([buf, c]);
      check();
    };
    const onClose = (): void => finish(true, false);
    const timer = setTimeout(() => finish(s.destroyed, true), o.timeoutMs ?? 5000);
    s.on('data', onData);
    s.on('close', onClose);
    void (async () => {
      for (const step of steps) {
        if (typeof step === 'number') await sleep(step);
        else if (!s.destroyed) s.write(typeof step === 'string' ? Buffer.from(step, 'latin1') : step);
      }
      writing = false;
      if (!settled) check();
    })();
  });
}

/** One connection: send, read, close. */
async function exchange(
  e: Edge,
  servername: string,
  steps: readonly (string | Buffer | number)[],
  o: { isHead?: boolean; want?: number; localAddress?: string; timeoutMs?: number; graceMs?: number; waitClose?: boolean } = {},
): Promise<Got> {
  const s = await connect(e, servername, o.localAddress);
  try {
    return await talk(s, steps, o);
  } finally {
    s.destroy();
  }
}

const statusOf = (r: string | undefined): number => Number(/^HTTP\/1\.[01] (\d{3})/.exec(r ?? '')?.[1] ?? 0);
const headOf = (r: string): string => r.slice(0, r.indexOf('\r\n\r\n') === -1 ? r.length : r.indexOf('\r\n\r\n'));

// ---------------------------------------------------------------------------

t.test('1. indistinguishable: the same bytes from both paths, the same heads upstream', async (t) => {
  const get = (path: string, host = ORG_HOST, extra = '', method = 'GET'): string =>
    `${method} ${path} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: fast-lane-test\r\nAccept: */*\r\n${extra}\r\n`;
  interface Case {
    readonly name: string;
    readonly bytes: string;
    readonly sni?: string;
    readonly isHead?: boolean;
    readonly status: number;
    /** Expected to be served by the fast lane (else handed to node:http). */
    readonly lane: boolean;
    /** 0: whatever node:http answers. */
    /** Requests the upstream should see per appliance. */
    readonly upstream: number;
  }
  const cases: Case[] = [
    { name: 'GET, upstream Content-Length', bytes: get('/cl?x=1'), status: 200, lane: true, upstream: 1 },
    { name: 'GET, echo of the request head', bytes: get('/echo', ORG_HOST, 'X-Custom: a b  c\r\nCookie: app=1; edgeway_token=zzz\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: keep-alive, X-Custom\r\n'), status: 200, lane: true, upstream: 1 },
    { name: 'HEAD, upstream Content-Length', bytes: get('/cl', ORG_HOST, '', 'HEAD'), isHead: true, status: 200, lane: true, upstream: 1 },
    { name: 'HEAD, upstream without a length', bytes: get('/chunked', ORG_HOST, '', 'HEAD'), isHead: true, status: 200, lane: true, upstream: 1 },
    { name: 'GET, upstream chunked', bytes: get('/chunked'), status: 200, lane: true, upstream: 1 },
    { name: 'GET, upstream close-delimited (HTTP/1.0)', bytes: get('/close'), status: 200, lane: true, upstream: 1 },
    { name: 'GET, upstream empty chunked body', bytes: get('/empty-chunked'), status: 200, lane: true, upstream: 1 },
    { name: 'GET, upstream empty close-delimited body', bytes: get('/close-empty'), status: 200, lane: true, upstream: 1 },
    { name: 'GET, upstream Content-Length: 0', bytes: get('/cl0'), status: 200, lane: true, upstream: 1 },
    { name: 'GET, upstream 103 Early Hints before its 200', bytes: get('/early'), status: 0, lane: true, upstream: 1 },
    { name: 'GET, upstream obs-text in a field value', bytes: get('/obs-text'), status: 200, lane: true, upstream: 1 },
    { name: 'GET, upstream chunked with a trailer', bytes: get('/trailer'), status: 200, lane: true, upstream: 1 },
    { name: 'GET, upstream custom reason phrase', bytes: get('/reason'), status: 200, lane: true, upstream: 1 },
    { name: 'GET, upstream 204', bytes: get('/204'), status: 204, lane: true, upstream: 1 },
    { name: 'GET, upstream 304', bytes: get('/304', ORG_HOST, 'If-None-Match: "v1"\r\n'), status: 304, lane: true, upstream: 1 },
    { name: 'GET, upstream Set-Cookie repeated', bytes: get('/cookies'), status: 200, lane: true, upstream: 1 },
    { name: 'GET, upstream refused: 502 JSON', bytes: get('/dead/x'), status: 502, lane: true, upstream: 0 },
    { name: 'GET, upstream refused, Accept: text/html: the HTML page', bytes: `GET /dead/y HTTP/1.1\r\nHost: ${ORG_HOST}\r\nAccept: text/html,application/xhtml+xml\r\n\r\n`, status: 502, lane: true, upstream: 0 },
    { name: 'HEAD, upstream refused', bytes: get('/dead/z', ORG_HOST, '', 'HEAD'), isHead: true, status: 502, lane: true, upstream: 0 },
    { name: 'GET, upstream timeout: 504', bytes: get('/hang'), status: 504, lane: true, upstream: 1 },
    { name: 'uc host, valid bearer: granted, Authorization not forwarded', bytes: get('/echo', UC_HOST, `Authorization: Bearer ${carolBearer}\r\n`), sni: UC_HOST, status: 200, lane: true, upstream: 1 },
    { name: 'uc host, valid session cookie: granted, cookie not forwarded', bytes: get('/echo?s=1', UC_HOST, `Cookie: theme=dark; ${session}\r\n`), sni: UC_HOST, status: 200, lane: true, upstream: 1 },
    { name: 'uc host, bad token: 401 from node:http', bytes: get('/echo', UC_HOST, 'Authorization: Bearer not.a.token\r\n'), sni: UC_HOST, status: 401, lane: false, upstream: 0 },
    { name: 'uc host, no token, browser: the login redirect from node:http', bytes: `GET /page HTTP/1.1\r\nHost: ${UC_HOST}\r\nAccept: text/html\r\n\r\n`, sni: UC_HOST, status: 302, lane: false, upstream: 0 },
    { name: "edgeway's own query parameter", bytes: get('/echo?a=1&edgeway_state=s1'), status: 200, lane: false, upstream: 1 },
    { name: '404 host', bytes: get('/', ORG2_HOST), sni: ORG2_HOST, status: 404, lane: false, upstream: 0 },
  ];

  for (const c of cases) {
    const results: { got: Got; heads: SeenHead[]; lane: number; node: number }[] = [];
    for (const e of [fast, plain]) {
      const before = { seen: seen.length, lane: e.lane.count, node: e.node.count };
      const got = await exchange(e, c.sni ?? ORG_HOST, [c.bytes], { isHead: c.isHead === true, want: 1 });
      // A timed-out upstream request is seen before the answer; give a refused retry nothing to race.
      results.push({ got, heads: seen.slice(before.seen), lane: e.lane.count - before.lane, node: e.node.count - before.node });
    }
    const [f, p] = results as [(typeof results)[0], (typeof results)[0]];
    if (c.status !== 0) t.equal(statusOf(p.got.responses[0]), c.status, `${c.name}: node:http answers ${c.status}`);
    t.equal(f.got.responses[0], p.got.responses[0], `${c.name}: byte-identical response`);
    t.equal(f.got.responses.length, 1, `${c.name}: one whole response from the fast-lane appliance`);
    t.equal(f.heads.length, c.upstream, `${c.name}: the upstream saw ${c.upstream} request(s) from the fast-lane appliance`);
    t.same(f.heads, p.heads, `${c.name}: identical request heads upstream`);
    t.equal(f.lane, c.lane ? 1 : 0, `${c.name}: ${c.lane ? 'served by the fast lane' : 'handed over to node:http'}`);
    t.equal(f.node, c.lane ? 0 : 1, `${c.name}: node:http ${c.lane ? 'never saw it' : 'served it'}`);
    t.equal(p.lane, 0, `${c.name}: no fast lane on the other appliance`);
  }

  // The heads upstream, once, by value: X-Forwarded-* are edgeway's, the client's are gone.
  const mark = seen.length;
  await exchange(fast, ORG_HOST, [get('/echo?q=2', ORG_HOST, 'X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil\r\n')], { want: 1 });
  const h = seen[mark]!;
  const pairs = new Map<string, string>();
  for (let i = 0; i < h.raw.length; i += 2) pairs.set(h.raw[i]!.toLowerCase(), h.raw[i + 1]!);
  t.equal(h.url, '/echo?q=2');
  t.equal(pairs.get('x-forwarded-for'), '127.0.0.1', 'X-Forwarded-For is the client address');
  t.equal(pairs.get('x-forwarded-proto'), 'https');
  t.equal(pairs.get('x-forwarded-host'), ORG_HOST);
  t.equal(pairs.get('host'), ORG_HOST, 'Host passes');
});

// ---------------------------------------------------------------------------

/** A seeded PRNG (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

interface DiffCase {
  readonly name: string;
  readonly steps: readonly (string | Buffer | number)[];
}

t.test('2. differential against node:http: malformed and smuggling shapes, and a mutation fuzzer', async (t) => {
  const H = ORG_HOST;
  const many = Array.from({ length: 40 }, (_, i) => `X-Many-${i}: v${i}\r\n`).join('');
  const corpus: DiffCase[] = [
    { name: 'control: plain GET', steps: [`GET /d/ok HTTP/1.1\r\nHost: ${H}\r\n\r\n`] },
    { name: 'CL + TE', steps: [`GET /d/clte HTTP/1.1\r\nHost: ${H}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`] },
    { name: 'TE chunked on GET', steps: [`GET /d/te HTTP/1.1\r\nHost: ${H}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`] },
    { name: 'TE identity, chunked', steps: [`GET /d/te2 HTTP/1.1\r\nHost: ${H}\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n`] },
    { name: 'duplicate Content-Length', steps: [`GET /d/dcl HTTP/1.1\r\nHost: ${H}\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n`] },
    { name: 'Content-Length: 0 on GET', steps: [`GET /d/cl0 HTTP/1.1\r\nHost: ${H}\r\nContent-Length: 0\r\n\r\n`] },
    { name: 'obs-fold', steps: [`GET /d/fold HTTP/1.1\r\nHost: ${H}\r\nX-A: a\r\n b\r\n\r\n`] },
    { name: 'bare CR in a value', steps: [`GET /d/cr HTTP/1.1\r\nHost: ${H}\r\nX-A: a\rb\r\n\r\n`] },
    { name: 'bare LF line ends', steps: [`GET /d/lf HTTP/1.1\nHost: ${H}\n\n`] },
    { name: 'bare LF after a value', steps: [`GET /d/lf2 HTTP/1.1\r\nHost: ${H}\r\nX-A: a\n\r\n`] },
    { name: 'invalid token char in a name', steps: [`GET /d/name HTTP/1.1\r\nHost: ${H}\r\nX(A): 1\r\n\r\n`] },
    { name: 'invalid token char in the method', steps: [`G@T /d/m HTTP/1.1\r\nHost: ${H}\r\n\r\n`] },
    { name: 'lowercase method', steps: [`get /d/lm HTTP/1.1\r\nHost: ${H}\r\n\r\n`] },
    { name: 'NUL in a value', steps: [`GET /d/nul HTTP/1.1\r\nHost: ${H}\r\nX-A: a\0b\r\n\r\n`] },
    { name: `head over max_header_bytes (${MAX_HEADER_BYTES})`, steps: [`GET /d/big HTTP/1.1\r\nHost: ${H}\r\nX-Big: ${'b'.repeat(9000)}\r\n\r\n`] },
    { name: 'head just under max_header_bytes', steps: [`GET /d/fits HTTP/1.1\r\nHost: ${H}\r\nX-Fits: ${'f'.repeat(7000)}\r\n\r\n`] },
    { name: 'HTTP/1.0', steps: [`GET /d/10 HTTP/1.0\r\nHost: ${H}\r\n\r\n`] },
    { name: 'HTTP/1.0 keep-alive', steps: [`GET /d/10ka HTTP/1.0\r\nHost: ${H}\r\nConnection: keep-alive\r\n\r\n`] },
    { name: 'HTTP/2.0 version string', steps: [`GET /d/20 HTTP/2.0\r\nHost: ${H}\r\n\r\n`] },
    { name: 'HTTP/1.1 Connection: close', steps: [`GET /d/close HTTP/1.1\r\nHost: ${H}\r\nConnection: close\r\n\r\n`] },
    { name: 'absolute-form target', steps: [`GET https://${H}/d/abs HTTP/1.1\r\nHost: ${H}\r\n\r\n`] },
    { name: 'asterisk target', steps: [`GET * HTTP/1.1\r\nHost: ${H}\r\n\r\n`] },
    { name: 'missing Host', steps: ['GET /d/nohost HTTP/1.1\r\nX-A: 1\r\n\r\n'] },
    { name: 'empty Host', steps: ['GET /d/emptyhost HTTP/1.1\r\nHost:\r\n\r\n'] },
    { name: 'duplicate Host', steps: [`GET /d/dhost HTTP/1.1\r\nHost: ${H}\r\nHost: ${H}\r\n\r\n`] },
    { name: 'duplicate Host, different', steps: [`GET /d/dhost2 HTTP/1.1\r\nHost: ${H}\r\nHost: ${ORG2_HOST}\r\n\r\n`] },
    { name: 'duplicate Accept', steps: [`GET /d/dacc HTTP/1.1\r\nHost: ${H}\r\nAccept: a\r\nAccept: b\r\n\r\n`] },
    { name: 'space before colon', steps: [`GET /d/sp HTTP/1.1\r\nHost : ${H}\r\n\r\n`] },
    { name: 'space before colon, other field', steps: [`GET /d/sp2 HTTP/1.1\r\nHost: ${H}\r\nX-A : 1\r\n\r\n`] },
    { name: 'very many headers (40)', steps: [`GET /d/many HTTP/1.1\r\nHost: ${H}\r\n${many}\r\n`] },
    { name: 'pipelined GETs in one write', steps: [`GET /d/p1 HTTP/1.1\r\nHost: ${H}\r\n\r\nGET /d/p2 HTTP/1.1\r\nHost: ${H}\r\n\r\n`] },
    { name: 'GET then POST with a body, one connection', steps: [`GET /d/g1 HTTP/1.1\r\nHost: ${H}\r\n\r\n`, 150, `POST /d/post HTTP/1.1\r\nHost: ${H}\r\nContent-Length: 5\r\n\r\nhello`] },
    { name: 'GET and POST with a body in one write', steps: [`GET /d/g2 HTTP/1.1\r\nHost: ${H}\r\n\r\nPOST /d/post2 HTTP/1.1\r\nHost: ${H}\r\nContent-Length: 5\r\n\r\nhello`] },
    { name: 'GET then GET, one connection', steps: [`GET /d/a1 HTTP/1.1\r\nHost: ${H}\r\n\r\n`, 150, `GET /d/a2 HTTP/1.1\r\nHost: ${H}\r\n\r\n`] },
    { name: 'GET then a smuggled CL.TE GET, one connection', steps: [`GET /d/s1 HTTP/1.1\r\nHost: ${H}\r\n\r\n`, 150, `GET /d/s2 HTTP/1.1\r\nHost: ${H}\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /d/smuggled HTTP/1.1\r\nHost: ${H}\r\n\r\n`] },
    { name: 'a head split over two writes', steps: [`GET /d/split HTTP/1.1\r\nHost: ${H}\r\nX-A:`, 80, ' 1\r\n\r\n'] },
    { name: 'a head split right before its last CRLF', steps: [`GET /d/split2 HTTP/1.1\r\nHost: ${H}\r\n`, 80, '\r\n'] },
    { name: 'Upgrade: websocket', steps: [`GET /d/ws HTTP/1.1\r\nHost: ${H}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`] },
    { name: 'Upgrade without Connection: upgrade', steps: [`GET /d/up2 HTTP/1.1\r\nHost: ${H}\r\nUpgrade: websocket\r\n\r\n`] },
    { name: 'Expect: 100-continue on GET', steps: [`GET /d/exp HTTP/1.1\r\nHost: ${H}\r\nExpect: 100-continue\r\n\r\n`] },
    { name: 'HEAD', steps: [`HEAD /d/head HTTP/1.1\r\nHost: ${H}\r\n\r\n`] },
    { name: 'OPTIONS', steps: [`OPTIONS /d/opt HTTP/1.1\r\nHost: ${H}\r\n\r\n`] },
    { name: 'DELETE without a body', steps: [`DELETE /d/del HTTP/1.1\r\nHost: ${H}\r\n\r\n`] },
    { name: 'tab in a value', steps: [`GET /d/tab HTTP/1.1\r\nHost: ${H}\r\nX-A: a\tb\r\n\r\n`] },
    { name: 'high bytes in a value', steps: [Buffer.concat([Buffer.from(`GET /d/hi HTTP/1.1\r\nHost: ${H}\r\nX-A: `, 'latin1'), Buffer.from([0xc3, 0xa9, 0xff]), Buffer.from('\r\n\r\n', 'latin1')])] },
    { name: 'high bytes in the target', steps: [Buffer.concat([Buffer.from('GET /d/', 'latin1'), Buffer.from([0xc3, 0xa9]), Buffer.from(` HTTP/1.1\r\nHost: ${H}\r\n\r\n`, 'latin1')])] },
    { name: 'fragment in the target', steps: [`GET /d/frag#x HTTP/1.1\r\nHost: ${H}\r\n\r\n`] },
    { name: 'dot segments', steps: [`GET /d/../cl HTTP/1.1\r\nHost: ${H}\r\n\r\n`] },
    { name: 'Host with port and upper case', steps: [`GET /d/hp HTTP/1.1\r\nHost: ${H.toUpperCase()}:443\r\n\r\n`] },
    { name: 'Host with a trailing dot', steps: [`GET /d/hd HTTP/1.1\r\nHost: ${H}.\r\n\r\n`] },
    { name: 'trailing whitespace after the version', steps: [`GET /d/tw HTTP/1.1 \r\nHost: ${H}\r\n\r\n`] },
    { name: 'two spaces after the method', steps: [`GET  /d/2sp HTTP/1.1\r\nHost: ${H}\r\n\r\n`] },
    { name: 'leading CRLF before the request line', steps: [`\r\nGET /d/lead HTTP/1.1\r\nHost: ${H}\r\n\r\n`] },
    { name: 'garbage after the head', steps: [`GET /d/garbage HTTP/1.1\r\nHost: ${H}\r\n\r\nxyz`] },
    { name: 'Connection: keep-alive, Upgrade without Upgrade field', steps: [`GET /d/cku HTTP/1.1\r\nHost: ${H}\r\nConnection: keep-alive, Upgrade\r\n\r\n`] },
    { name: 'Proxy-Connection and Keep-Alive fields', steps: [`GET /d/pc HTTP/1.1\r\nHost: ${H}\r\nProxy-Connection: close\r\nKeep-Alive: timeout=1\r\nTE: trailers\r\n\r\n`] },
  ];

  // The fuzzer: byte flips, insertions and deletions of the bytes parsers disagree on.
  const bases = [
    `GET /fz?a=1&b=%20 HTTP/1.1\r\nHost: ${H}\r\nUser-Agent: fuzz/1.0\r\nAccept: */*\r\n\r\n`,
    `GET / HTTP/1.1\r\nHost: ${H}\r\nCookie: a=b; c=d\r\nConnection: keep-alive\r\nX-Req: 1\r\n\r\n`,
    `HEAD /fz/head HTTP/1.1\r\nHost: ${H}\r\nAccept-Encoding: gzip\r\n\r\n`,
    `GET /fz/x HTTP/1.1\r\nhost: ${H}\r\ncontent-type: text/plain\r\n\r\n`,
  ];
  const SPECIAL = [0x0d, 0x0a, 0x20, 0x3a, 0x00, 0x7f, 0x80];
  const rnd = prng(0x4fa57);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const FUZZ = 400;
  const fuzz: DiffCase[] = [];
  for (let i = 0; i < FUZZ; i++) {
    const b = [...Buffer.from(pick(bases), 'latin1')];
    const ops: string[] = [];
    const n = 1 + Math.floor(rnd() * 3);
    for (let k = 0; k < n; k++) {
      const op = Math.floor(rnd() * 3);
      const at = Math.floor(rnd() * b.length);
      const byte = pick(SPECIAL);
      if (op === 0) b[at] = byte;
      else if (op === 1) b.splice(at, 0, byte);
      else b.splice(at, 1);
      ops.push(`${['flip', 'ins', 'del'][op]}@${at}${op === 2 ? '' : `=0x${byte.toString(16)}`}`);
    }
    fuzz.push({ name: `fuzz #${i} ${ops.join(',')}`, steps: [Buffer.from(b)] });
  }

  const all = [...corpus, ...fuzz];
  // How long a case waits, after its last write and its last whole response,
  // for one more. 120 ms (talk's default) was once too short on a loaded
  // machine: "GET then GET, one connection" saw the second response from one
  // appliance only, with the upstream having received both requests.
  const GRACE_MS = 500;
  // Each case comes from its own client address on each appliance, so the
  // upstream's X-Forwarded-For says which case (and which appliance) a request belongs to.
  const addr = (i: number, side: 0 | 1): string => `127.${10 + side}.${Math.floor(i / 250) + 1}.${(i % 250) + 1}`;
  const before = { seen: seen.length, clientErrors: upstreamClientErrors, lane: fast.lane.count };
  const got: { f: Got; p: Got }[] = new Array(all.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < all.length) {
      const i = next++;
      const c = all[i]!;
      const first = c.steps.find((s) => typeof s !== 'number');
      const isHead = first !== undefined && Buffer.from(first as string | Buffer).subarray(0, 5).toString('latin1') === 'HEAD ';
      // Same bytes, both appliances at once; a head that never completes ends with node:http's 408.
      try {
        const [f, p] = await Promise.all([
          exchange(fast, H, c.steps, { isHead, localAddress: addr(i, 0), timeoutMs: 4000, graceMs: GRACE_MS }),
          exchange(plain, H, c.steps, { isHead, localAddress: addr(i, 1), timeoutMs: 4000, graceMs: GRACE_MS }),
        ]);
        got[i] = { f, p };
      } catch (err) {
        next = all.length; // the other workers stop too: nothing runs on behind the later subtests
        throw err;
      }
    }
  };
  const started = Date.now();
  await Promise.all(Array.from({ length: 48 }, worker));
  await sleep(100);

  const upBy = new Map<string, SeenHead[]>();
  for (const h of seen.slice(before.seen)) {
    const list = upBy.get(h.xff) ?? [];
    list.push(h);
    upBy.set(h.xff, list);
  }
  const norm = (hs: readonly SeenHead[] | undefined): string[] =>
    (hs ?? []).map((h) => JSON.stringify({ m: h.method, u: h.url, raw: h.raw.map((v, j) => (j % 2 === 1 && h.raw[j - 1]!.toLowerCase() === 'x-forwarded-for' ? '-' : v)) })).sort();

  let mismatches = 0;
  let laneServed = 0;
  let laneCases = 0;
  let timeouts = 0;
  const mism: string[] = [];
  for (let i = 0; i < all.length; i++) {
    const c = all[i]!;
    const { f, p } = got[i]!;
    const fu = norm(upBy.get(addr(i, 0)));
    const pu = norm(upBy.get(addr(i, 1)));
    const served = fast.lane.byAddress.get(addr(i, 0)) ?? 0;
    laneServed += served;
    if (served > 0) laneCases++;
    if (f.timedOut || p.timedOut) timeouts++;
    if (plain.lane.byAddress.has(addr(i, 1))) mism.push(`${c.name}: the node:http appliance's lane spy fired`);
    const line = (r: Got): string => `${r.responses.map((x) => x.split('\r\n')[0]).join(' | ')}${r.closed ? ' [closed]' : ''}`;
    const sameResponses = f.text === p.text;
    const bodies = (r: Got): string[] => r.responses.map((x) => `${x.split('\r\n')[0]}\n${x.indexOf('\r\n\r\n') === -1 ? '' : x.slice(x.indexOf('\r\n\r\n') + 4)}`);
    const sameLines = JSON.stringify(bodies(f)) === JSON.stringify(bodies(p));
    const sameUp = JSON.stringify(fu) === JSON.stringify(pu);
    if (!sameLines || !sameUp || f.closed !== p.closed) {
      mismatches++;
      mism.push(
        `${c.name}: lane ${line(f)} upstream ${fu.length}; node:http ${line(p)} upstream ${pu.length}` +
          (sameUp ? '' : ` heads lane=${JSON.stringify(fu)} node=${JSON.stringify(pu)}`) +
          ` bytes=${JSON.stringify(c.steps.map((s) => (typeof s === 'number' ? s : Buffer.from(s as string | Buffer).toString('latin1'))))}`,
      );
    } else if (!sameResponses) {
      mismatches++;
      mism.push(`${c.name}: same status lines and bodies, different heads:\nlane ${JSON.stringify(f.text)}\nnode ${JSON.stringify(p.text)}`);
    }
  }
  for (const m of mism.slice(0, 25)) t.comment(`MISMATCH ${m}`);
  if (process.env['FAST_LANE_DEBUG'] !== undefined) {
    for (let i = 0; i < all.length; i++) {
      const r = got[i]!.f;
      if (statusOf(r.responses[0]) === 200 && (fast.lane.byAddress.get(addr(i, 0)) ?? 0) === 0) t.comment(`node-served 200: ${all[i]!.name} ${JSON.stringify(all[i]!.steps.map((x) => (typeof x === 'number' ? x : Buffer.from(x as string | Buffer).toString('latin1'))))}`);
    }
  }
  t.comment(
    `differential: ${all.length} cases (${corpus.length} corpus + ${FUZZ} fuzz, seed 0x4fa57) in ${Date.now() - started} ms; ` +
      `fast lane served ${laneServed} request(s) in ${laneCases} case(s), handed ${all.length - laneCases} case(s) to node:http; ` +
      `${timeouts} case(s) waited out a read timeout; upstream saw ${seen.length - before.seen} request(s), ${upstreamClientErrors - before.clientErrors} unparseable; mismatches = ${mismatches}`,
  );
  t.equal(mismatches, 0, 'every case: the same responses and the same requests upstream from both appliances');
  t.equal(mism.length, 0, 'no mismatch of any kind');
  t.ok(laneCases > 20, `the fast lane really served part of the corpus (${laneCases} cases)`);
  t.ok(laneCases < all.length, 'and handed the rest over');
  t.equal(laneServed, fast.lane.count - before.lane, 'every lane-served request is attributed to a case');
  // Spot checks that the comparison itself can tell answers apart.
  const idx = (name: string): number => all.findIndex((c) => c.name === name);
  t.equal(statusOf(got[idx('control: plain GET')]!.f.responses[0]), 200, 'control: 200');
  t.equal(fast.lane.byAddress.get(addr(idx('control: plain GET'), 0)), 1, 'control: served by the lane');
  t.equal(statusOf(got[idx('CL + TE')]!.f.responses[0]), 400, 'CL+TE: 400');
  t.notOk(upBy.has(addr(idx('CL + TE'), 0)), 'CL+TE: never upstream');
  t.equal(statusOf(got[idx(`head over max_header_bytes (${MAX_HEADER_BYTES})`)]!.f.responses[0]), 431, 'oversized head: 431');
  t.equal(got[idx('pipelined GETs in one write')]!.f.responses.length, 2, 'pipelined: two answers');
  t.equal(upBy.get(addr(idx('GET then POST with a body, one connection'), 0))?.length, 2, 'GET then POST: both upstream');
  t.equal(fast.lane.byAddress.get(addr(idx('GET then POST with a body, one connection'), 0)), 1, 'GET then POST: the GET on the lane, the POST handed over');
});

// ---------------------------------------------------------------------------

t.test('3. connection behaviour', async (t) => {
  const req = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: ${ORG_HOST}\r\n\r\n`;

  t.test('many keep-alive GETs on one connection, all served by the lane', async (t) => {
    const s = await connect(fast, ORG_HOST);
    t.teardown(() => s.destroy());
    const before = { lane: fast.lane.count, node: fast.node.count };
    const N = 60;
    let ok = 0;
    for (let i = 0; i < N; i++) {
      const r = await talk(s, [req(i % 3 === 0 ? '/chunked' : `/cl?i=${i}`)], { want: 1 });
      if (statusOf(r.responses[0]) === 200 && !r.closed && /\r\nConnection: keep-alive\r\n/.test(r.responses[0]!)) ok++;
    }
    t.equal(ok, N, `${N} answers, 200, keep-alive`);
    t.equal(fast.lane.count - before.lane, N, 'every one served by the fast lane');
    t.equal(fast.node.count - before.node, 0, 'none by node:http');
    t.notOk(s.destroyed, 'the connection is still open');
  });

  t.test('a request sent while the lane still answers one (pipelining): answered in order, the second by node:http', async (t) => {
    const s = await connect(fast, ORG_HOST);
    t.teardown(() => s.destroy());
    const before = { lane: fast.lane.count, node: fast.node.count };
    // /slow answers after 600 ms; the second request arrives while the first is in flight.
    const r = await talk(s, [req('/slow'), 100, req('/cl?second')], { want: 2, timeoutMs: 4000 });
    t.equal(r.responses.length, 2, 'two answers');
    t.match(r.responses[0], /\r\n\r\nslow$/, 'the first answer is the first request\'s');
    t.match(r.responses[1], /\r\n\r\nhello from the upstream, with a length$/, 'the second answer is the second request\'s');
    t.equal(fast.lane.count - before.lane, 1, 'the first served by the lane');
    t.equal(fast.node.count - before.node, 1, 'the second, which came while the first was in flight, by node:http');
    t.notOk(r.closed, 'the connection stays open');
  });

  t.test('a response that fills the client buffer in its last read: the pooled upstream connection still answers the next request', async (t) => {
    // The write of the 20 KiB response returns false, so the exchange pauses
    // the upstream socket, and the response completes in that same read. The
    // next request takes that connection from the pool (last in, first out).
    const s = await connect(fast, ORG_HOST);
    t.teardown(() => s.destroy());
    const before = fast.lane.count;
    for (let i = 0; i < 3; i++) {
      const big = await talk(s, [req('/big')], { want: 1, timeoutMs: 3000 });
      t.equal(statusOf(big.responses[0]), 200, `big ${i}: 200`);
      t.ok(big.responses[0]?.endsWith(BIG.toString('latin1')), `big ${i}: the whole body`);
      const next = await talk(s, [req(`/cl?after-big=${i}`)], { want: 1, timeoutMs: 3000 });
      t.notOk(next.timedOut, `the request after big ${i} is answered`);
      t.match(next.responses[0], /hello from the upstream/);
    }
    t.equal(fast.lane.count - before, 6, 'all six served by the lane');
  });

  t.test('a client that closes mid-response does not break the next connection', async (t) => {
    const closedBefore = streams.closedEarly;
    const s = await connect(fast, ORG_HOST);
    const first = new Promise<Buffer>((resolve) => s.once('data', resolve));
    s.write(req('/stream'));
    const chunk = await first;
    t.match(chunk.toString('latin1'), /^HTTP\/1\.1 200 OK\r\n/, 'the stream started');
    s.destroy();
    // The upstream connection is cut (it cannot carry another request mid-body).
    const until = Date.now() + 3000;
    while (streams.closedEarly === closedBefore && Date.now() < until) await sleep(20);
    t.equal(streams.closedEarly, closedBefore + 1, 'the upstream response was abandoned');
    const before = fast.lane.count;
    const r = await exchange(fast, ORG_HOST, [req('/cl?after=1')], { want: 1 });
    t.equal(statusOf(r.responses[0]), 200, 'the next connection: 200');
    t.match(r.responses[0], /hello from the upstream/);
    t.equal(fast.lane.count - before, 1, 'served by the lane');
    const lane = fast.laneObject();
    t.ok(lane !== undefined, 'the FastLane object was found on a socket');
    await sleep(50);
    t.equal(lane?.conns.size, 0, 'the lane holds no connection once its clients left');
  });

  // Four connections a quarter of the lane's one-second sweep apart, so that
  // whatever the sweep's phase, a close ahead of the timeout shows.
  const closeTimes = async (e: Edge, sendRequest: boolean, limitMs: number): Promise<{ ms: number[]; served: number }> => {
    const before = e.lane.count;
    const one = async (delay: number): Promise<number> => {
      await sleep(delay);
      const s = await connect(e, ORG_HOST);
      // Read what comes: node:http answers 408 before it closes, and a paused socket would never see the close.
      s.on('data', () => undefined);
      let start = Date.now();
      if (sendRequest) {
        const r = await talk(s, [req('/cl?idle=1')], { want: 1 });
        if (statusOf(r.responses[0]) !== 200) throw new Error(`${e.name}: ${r.responses[0]}`);
        start = Date.now();
      }
      const closed = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), limitMs);
        if (s.destroyed) return resolve(true);
        s.once('close', () => {
          clearTimeout(timer);
          resolve(true);
        });
      });
      s.destroy();
      return closed ? Date.now() - start : -1;
    };
    const ms = await Promise.all([0, 250, 500, 750].map(one));
    return { ms, served: e.lane.count - before };
  };

  t.test(`an idle keep-alive connection is closed after keepalive_timeout_ms (${KEEPALIVE_MS}), not before`, async (t) => {
    const [f, p] = await Promise.all([closeTimes(fast, true, 4000), closeTimes(plain, true, 4000)]);
    t.comment(`idle keep-alive connections closed after ${f.ms.join(', ')} ms on the fast lane, ${p.ms.join(', ')} ms on node:http (keepalive_timeout_ms ${KEEPALIVE_MS}, Keep-Alive: timeout=${Math.floor(KEEPALIVE_MS / 1000)})`);
    t.equal(f.served, 4, 'the requests were the lane’s');
    t.ok(f.ms.every((ms) => ms >= 0), 'fast lane: every idle connection closed');
    t.ok(p.ms.every((ms) => ms >= 0), 'node:http: every idle connection closed');
    t.ok(p.ms.every((ms) => ms >= KEEPALIVE_MS - 50), `node:http: none before keepalive_timeout_ms (${p.ms.join(', ')} ms)`);
    t.ok(f.ms.every((ms) => ms <= KEEPALIVE_MS + 1500), `fast lane: each within a sweep after the timeout (${f.ms.join(', ')} ms)`);
    t.ok(f.ms.every((ms) => ms >= KEEPALIVE_MS - 50), `fast lane: none before keepalive_timeout_ms (${f.ms.join(', ')} ms)`);
  });

  t.test(`a silent TLS connection is closed after header_timeout_ms (${HEADER_TIMEOUT_MS}), not before`, async (t) => {
    const [f, p] = await Promise.all([closeTimes(fast, false, 2500), closeTimes(plain, false, 2500)]);
    t.comment(`silent connections closed after ${f.ms.join(', ')} ms on the fast lane; on node:http after ${p.ms.join(', ')} ms (header_timeout_ms ${HEADER_TIMEOUT_MS})`);
    t.ok(f.ms.every((ms) => ms >= 0), 'fast lane: every silent connection closed');
    t.ok(p.ms.every((ms) => ms >= 0), 'node:http: every silent connection closed');
    t.ok(f.ms.every((ms) => ms >= HEADER_TIMEOUT_MS - 50), `fast lane: none before header_timeout_ms (${f.ms.join(', ')} ms)`);
    t.ok(p.ms.every((ms) => ms >= HEADER_TIMEOUT_MS - 50), `node:http: none before header_timeout_ms (${p.ms.join(', ')} ms)`);
  });

  t.test('drain: an idle lane connection closes promptly, a request in flight completes with Connection: close', async (t) => {
    const d = await startEdge('drain', true);
    const idle = await connect(d, ORG_HOST);
    t.teardown(() => idle.destroy());
    const r1 = await talk(idle, [req('/cl?drain=idle')], { want: 1 });
    t.equal(statusOf(r1.responses[0]), 200, 'the idle connection served one request');
    t.equal(d.lane.count, 1, 'on the lane');

    const busy = await connect(d, ORG_HOST);
    t.teardown(() => busy.destroy());
    const mark = seen.length;
    const inFlight = talk(busy, [req('/slow')], { want: 1, waitClose: true, timeoutMs: 5000 });
    while (!seen.slice(mark).some((h) => h.url === '/slow')) await sleep(10);
    t.equal(d.lane.count, 2, 'the slow request is on the lane');

    const idleClosed = new Promise<number>((resolve) => {
      const start = Date.now();
      if (idle.destroyed) return resolve(0);
      idle.once('close', () => resolve(Date.now() - start));
    });
    const stopped = d.stop();
    const ms = await Promise.race([idleClosed, sleep(2000).then(() => -1)]);
    t.ok(ms >= 0 && ms < 500, `the idle lane connection closed promptly on drain (${ms} ms)`);
    const r2 = await inFlight;
    t.equal(statusOf(r2.responses[0]), 200, 'the request in flight completed');
    t.match(r2.responses[0], /\r\nConnection: close\r\n/, 'with Connection: close');
    t.notMatch(r2.responses[0], /Keep-Alive:/, 'and no keep-alive hint');
    t.match(r2.responses[0], /\r\n\r\nslow$/, 'the whole body');
    t.ok(r2.closed, 'then the connection closed');
    t.equal(await stopped, true, 'the drain finished cleanly, before its deadline');
  });
});

// ---------------------------------------------------------------------------

t.test('4. observability: metrics and the access log count a lane request as node:http would', async (t) => {
  const accessLines = (e: Edge, path: string): Record<string, unknown>[] =>
    e.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((o) => o['msg'] === 'access' && o['path'] === path);
  const OK = `edgeway_requests_total{host_class="org",location_kind="proxy",status="200"}`;
  const DENIED = `edgeway_requests_total{host_class="uc",location_kind="proxy",status="401"}`;
  const fields = (o: Record<string, unknown>): Record<string, unknown> => ({
    host: o['host'],
    method: o['method'],
    path: o['path'],
    status: o['status'],
    upstream: o['upstream'],
    user: o['user'],
    error: o['error'],
    aborted: o['aborted'],
    bytes_in: o['bytes_in'],
    bytes_out: o['bytes_out'],
  });

  const rows: Record<string, unknown>[] = [];
  for (const e of [fast, plain]) {
    const m0 = await metrics(e);
    const lane0 = e.lane.count;
    const ok = await exchange(e, ORG_HOST, [`GET /cl/observed?x=secret HTTP/1.1\r\nHost: ${ORG_HOST}\r\n\r\n`], { want: 1 });
    t.equal(statusOf(ok.responses[0]), 200, `${e.name}: 200`);
    const granted = await exchange(e, UC_HOST, [`GET /echo/user HTTP/1.1\r\nHost: ${UC_HOST}\r\nAuthorization: Bearer ${carolBearer}\r\n\r\n`], { want: 1 });
    t.equal(statusOf(granted.responses[0]), 200, `${e.name}: granted 200`);
    const denied = await exchange(e, UC_HOST, [`GET /echo/denied HTTP/1.1\r\nHost: ${UC_HOST}\r\nAuthorization: Bearer bad.bad.bad\r\n\r\n`], { want: 1 });
    t.equal(statusOf(denied.responses[0]), 401, `${e.name}: refused 401`);
    const up0 = sumOf(m0, 'edgeway_upstream_errors_total{cause="upstream_refused"}');
    const refused = await exchange(e, ORG_HOST, [`GET /dead/observed HTTP/1.1\r\nHost: ${ORG_HOST}\r\n\r\n`], { want: 1 });
    t.equal(statusOf(refused.responses[0]), 502, `${e.name}: 502`);
    t.equal(e.lane.count - lane0, e === fast ? 3 : 0, `${e.name}: ${e === fast ? 'three of the four on the lane (not the 401)' : 'no lane'}`);
    const m1 = await metrics(e);
    t.equal((m1.get(OK) ?? 0) - (m0.get(OK) ?? 0), 1, `${e.name}: edgeway_requests_total{…status="200"} +1`);
    t.equal(
      (m1.get(`edgeway_request_duration_seconds_count{host_class="org",location_kind="proxy"}`) ?? 0) -
        (m0.get(`edgeway_request_duration_seconds_count{host_class="org",location_kind="proxy"}`) ?? 0),
      2,
      `${e.name}: two org proxy latencies observed (200 and 502)`,
    );
    t.equal((m1.get(DENIED) ?? 0) - (m0.get(DENIED) ?? 0), 1, `${e.name}: the 401 counted once in edgeway_requests_total`);
    t.equal(sumOf(m1, 'edgeway_auth_failures_total') - sumOf(m0, 'edgeway_auth_failures_total'), 1, `${e.name}: the refusal counted exactly once in edgeway_auth_failures_total`);
    t.equal(sumOf(m1, 'edgeway_upstream_errors_total{cause="upstream_refused"}') - up0, 1, `${e.name}: the 502 counted once as upstream_refused`);

    const okLines = accessLines(e, '/cl/observed');
    t.equal(okLines.length, 1, `${e.name}: one access line for the 200`);
    t.equal(okLines[0]?.['status'], 200, `${e.name}: with its status`);
    t.equal(accessLines(e, '/echo/user')[0]?.['user'], 'carol', `${e.name}: the granted request logs its user`);
    t.equal(accessLines(e, '/echo/denied')[0]?.['status'], 401, `${e.name}: the refusal logged with 401`);
    t.equal(accessLines(e, '/dead/observed')[0]?.['error'], 'upstream_refused', `${e.name}: the 502 logged with its error`);
    t.notOk(e.lines.some((l) => l.includes('secret')), `${e.name}: no query string in the log`);
    rows.push({
      ok: fields(okLines[0] ?? {}),
      user: fields(accessLines(e, '/echo/user')[0] ?? {}),
      denied: fields(accessLines(e, '/echo/denied')[0] ?? {}),
      refused: fields(accessLines(e, '/dead/observed')[0] ?? {}),
    });
  }
  t.same(rows[0], rows[1], 'the access lines say the same on both paths (host, method, path, status, upstream, user, error, bytes)');
});
