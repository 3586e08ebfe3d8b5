// The fast lane (issue 4): the common request, a GET or HEAD whose head
// arrives whole in one read (keep-alive or `Connection: close`) and that routes to a plain-HTTP upstream with its
// access granted, is served straight from the TLS socket, without node:http's
// IncomingMessage, ServerResponse and their stream machinery, which the
// profile showed to be most of edgeway's own per-request CPU.
//
// Nothing is parsed twice and no parser of our own is trusted: the request is
// parsed by llhttp with the strict settings node:http uses (llhttp.ts). Every
// other case is node:http's, unchanged: a head split over reads, a body,
// pipelining, HTTP/1.0, an upgrade, a duplicate field, a parse error, any
// answer of edgeway's own (refusals, logins, redirects, services, static
// files). The lane then hands the connection to node:http's own connection
// listener, with the bytes of the request it did not serve, and never takes
// it back; node:http then decides, answers and counts as before.
//
// Deadlines are one coarse sweep over the lane's connections (headers
// timeout before the first request, keep-alive timeout between requests), not
// a timer per socket.

import type https from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { Config } from '../config/types.js';
import type { RequestView } from '../http1/request-view.js';
import { FastExchange, type FastClient } from '../proxy/fast-exchange.js';
import type { LeanForwarder } from '../proxy/lean-forwarder.js';
import { METHODS, kOnHeaders, kOnHeadersComplete, kOnMessageComplete, newRequestParser, type ResponseParser } from '../proxy/llhttp.js';
import type { DataPlane } from './data-plane.js';
import { requestView } from './fast-view.js';
import { copyOut, isShared, pushCopy, readInto } from './tls-read-buffer.js';

const kLane = Symbol('edgeway.fastLane');
type LaneSocket = TLSSocket & { [kLane]?: LaneConn };
type LaneParser = ResponseParser & { conn: LaneConn };

const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');
const SWEEP_MS = 1_000;
/** Smallest whole request head: `GET / HTTP/1.1\r\nHost: a\r\n\r\n`. */
const MIN_HEAD = 27;

function onData(this: LaneSocket, chunk: Buffer): void {
  const c = this[kLane];
  if (c !== undefined) c.data(chunk);
}
/** Reads into the shared buffer (tls-read-buffer.ts); once node:http's, copied and pushed as 'data' would be. */
function onRead(this: LaneSocket, nread: number, buf: Buffer): boolean {
  const c = this[kLane];
  if (c === undefined) return pushCopy.call(this, nread, buf);
  c.data(buf.subarray(0, nread));
  return true;
}
/** `chunk`, safe to keep past this read. */
function kept(chunk: Buffer): Buffer {
  return isShared(chunk) ? copyOut(chunk, chunk.length) : chunk;
}
function onClose(this: LaneSocket): void {
  const c = this[kLane];
  if (c !== undefined) c.closed();
}
/** 'close' follows; a socket error must not be thrown as an unhandled event. */
function onError(): void {}

function onHeadersComplete(
  this: LaneParser,
  major: number,
  minor: number,
  fields: string[] | undefined,
  method: number,
  url: string,
  _status: unknown,
  _reason: unknown,
  upgrade: boolean,
  keepAlive: boolean,
): number {
  const c = this.conn;
  // Fields flushed early (kOnHeaders: more than 32) leave `fields` short: node:http's case.
  c.ok = c.ok && major === 1 && minor === 1 && !upgrade && fields !== undefined;
  // `Connection: close` (issue 4 (d): a new connection per request): served, then closed, as node:http does.
  c.keepAlive = keepAlive;
  c.method = METHODS[method] ?? '';
  c.url = url;
  c.fields = fields;
  return 0;
}
function onHeaders(this: LaneParser): void {
  this.conn.ok = false;
}
function onMessageComplete(this: LaneParser): void {
  this.conn.complete = true;
}

class LaneConn implements FastClient {
  readonly parser: LaneParser;
  exchange: FastExchange | null = null;
  /** Bytes that came while a request was in flight (pipelining): node:http's after it. */
  stash: Buffer | null = null;
  /**
   * When the connection last went idle (epoch ms, exact: a coarse reading could
   * close it up to a sweep before its timeout); 0 while a request is in flight.
   */
  idleSince = Date.now();
  served = false;
  // What the parser reported of the current request.
  ok = true;
  keepAlive = true;
  complete = false;
  method = '';
  url = '';
  fields: string[] | undefined = undefined;

  constructor(
    readonly lane: FastLane,
    readonly socket: LaneSocket,
  ) {
    const p = newRequestParser(lane.maxHead) as LaneParser;
    p.conn = this;
    p[kOnHeaders] = onHeaders;
    p[kOnHeadersComplete] = onHeadersComplete;
    p[kOnMessageComplete] = onMessageComplete;
    this.parser = p;
    socket[kLane] = this;
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.on('error', onError);
  }

  get closing(): boolean {
    return !this.keepAlive || this.lane.plane.draining;
  }

  keepAliveFields(): string {
    return this.lane.keepAliveFields();
  }

  data(chunk: Buffer): void {
    if (this.exchange === null) return this.serve(chunk);
    this.stash = this.stash === null ? kept(chunk) : Buffer.concat([this.stash, chunk]);
    // Do not read on while the response is pending: node:http gets the rest.
    this.socket.pause();
  }

  /** One whole GET or HEAD head and nothing after it, or node:http's. */
  private serve(chunk: Buffer): void {
    const n = chunk.length;
    if (
      n < MIN_HEAD ||
      n > this.lane.maxHead ||
      (chunk[0] !== 0x47 /* G */ && chunk[0] !== 0x48) /* H */ ||
      chunk.indexOf(HEAD_END) !== n - 4
    ) {
      return this.handOver(kept(chunk));
    }
    const r = this.parse(chunk);
    if (r !== n || !this.ok || !this.complete || (this.method !== 'GET' && this.method !== 'HEAD')) return this.handOver(kept(chunk));
    const view = requestView(this.method, this.url, this.fields as string[], this.socket);
    const plan = view === undefined ? undefined : this.lane.plane.plainForward(view);
    if (plan === undefined) return this.handOver(kept(chunk));
    const obs = this.lane.plane.observer;
    const observed = obs?.fastRequest(view as RequestView, this.socket, plan.match.host, plan.match.location);
    this.idleSince = 0;
    if (!this.served) {
      this.served = true;
      // The lane served this connection's first request: its next reads land in
      // the shared buffer (tls-read-buffer.ts). Connections node:http takes at
      // once (websocket upgrades, bodies) keep Node's own reads, and so their
      // idle cost (issue 4 (e)).
      if (readInto(this.socket, onRead)) this.socket.removeListener('data', onData);
    }
    const ex = new FastExchange(this.lane.fwd, this, view as RequestView, plan.fr, obs, observed);
    this.exchange = ex;
    ex.start();
  }

  /** Bytes parsed (or the parse error); the callbacks above fill in ok, complete, method, url, fields. */
  private parse(chunk: Buffer): number | Error {
    this.ok = true;
    this.complete = false;
    this.fields = undefined;
    return this.parser.execute(chunk);
  }

  exchangeEnded(keep: boolean): void {
    this.exchange = null;
    this.idleSince = Date.now();
    if (!keep || this.lane.plane.draining) {
      this.socket.end();
      return;
    }
    const s = this.stash;
    if (s !== null) {
      this.stash = null;
      this.handOver(s);
    }
  }

  /** From here on the connection is node:http's; `chunk` (a copy, never the shared read buffer) is what it has not seen yet. */
  handOver(chunk: Buffer | null): void {
    const s = this.socket;
    this.lane.conns.delete(this);
    s[kLane] = undefined;
    s.removeListener('data', onData);
    s.removeListener('close', onClose);
    s.removeListener('error', onError);
    this.parser.close();
    if (s.isPaused()) s.resume();
    if (s.destroyed) return;
    this.lane.httpListener.call(this.lane.server, s);
    // Synchronously, before any later read: node:http's parser sees the bytes in order.
    if (chunk !== null) s.emit('data', chunk);
  }

  closed(): void {
    this.lane.conns.delete(this);
    this.socket[kLane] = undefined;
    this.parser.close();
    this.exchange?.clientClosed();
  }
}

export class FastLane {
  readonly conns = new Set<LaneConn>();
  /** node:http's own connection listener on the https server, for handing connections over. */
  readonly httpListener: (socket: TLSSocket) => void;
  readonly maxHead: number;
  private readonly timer: NodeJS.Timeout;
  private hintFor = -1;
  private hint = '';

  constructor(
    readonly server: https.Server,
    readonly plane: DataPlane,
    readonly fwd: LeanForwarder,
    cfg: Config,
  ) {
    this.maxHead = cfg.limits.max_header_bytes;
    const listeners = server.listeners('secureConnection') as ((socket: TLSSocket) => void)[];
    if (listeners.length !== 1) throw new Error(`fast lane: expected node:http's one secureConnection listener, found ${listeners.length}`);
    this.httpListener = listeners[0]!;
    server.removeListener('secureConnection', this.httpListener);
    server.on('secureConnection', (socket: TLSSocket) => {
      this.conns.add(new LaneConn(this, socket));
    });
    this.timer = setInterval(sweepLane, SWEEP_MS, this);
    this.timer.unref();
    server.on('close', () => clearInterval(this.timer));
  }

  /** What node:http sends on a kept-alive response (ServerResponse._storeHeader). */
  keepAliveFields(): string {
    const t = this.server.keepAliveTimeout;
    if (t !== this.hintFor) {
      this.hintFor = t;
      this.hint = t > 0 ? `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(t / 1000)}\r\n` : 'Connection: keep-alive\r\n';
    }
    return this.hint;
  }

  /** Idle connections past their deadline: the headers timeout before a first request, the keep-alive timeout after. */
  sweep(now: number): void {
    const first = now - this.server.headersTimeout;
    const later = now - this.server.keepAliveTimeout;
    for (const c of this.conns) {
      if (c.idleSince !== 0 && c.idleSince <= (c.served ? later : first)) c.socket.destroy();
    }
  }

  /** Draining: connections between requests close now (node:http's closeIdleConnections). */
  closeIdle(): void {
    for (const c of this.conns) if (c.exchange === null) c.socket.destroy();
  }

  closeAll(): void {
    for (const c of this.conns) c.socket.destroy();
  }
}

function sweepLane(lane: FastLane): void {
  lane.sweep(Date.now());
}
