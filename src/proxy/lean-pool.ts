// Keep-alive connections to one plain-HTTP upstream origin (or the control
// plane's unix socket), for the lean forwarding path (lean-forwarder.ts).
// Issue 4: the request path's CPU went to stream machinery and per-request
// objects of the HTTP client, not to proxying; here a connection is a socket
// plus one llhttp parser reused for every response it carries, and the
// listeners are module functions that find their connection through a field,
// so a request allocates nothing on this side.
//
// A connection carries one exchange at a time (no pipelining: issue 4 measured
// it does not help, and it lets one slow response stall others). Idle
// connections are reused last-in first-out (the warmest socket), closed after
// the upstream's Keep-Alive hint minus a second (undici's threshold) or 4 s,
// and dropped as soon as the upstream closes them.

import { connect, type LookupFunction, type Socket } from 'node:net';
import type { UpstreamTarget } from '../routes/types.js';
import {
  kOnBody,
  kOnHeaders,
  kOnHeadersComplete,
  kOnMessageComplete,
  newResponseParser,
  type ResponseParser,
} from './llhttp.js';
import { fixedBodyLength, IDLE_MS, keepAliveHint } from './response-framing.js';

/** What a connection reports to the exchange it carries (lean-forwarder.ts). */
export interface ConnUser {
  /** The socket is connected: send the request. */
  connected(conn: UpstreamConn): void;
  /** A response head (1xx excluded). Return true to skip the body (HEAD). */
  head(status: number, reason: string, headers: string[], keepAliveMs: number): boolean;
  /** Body bytes in the shared read buffer: copy what must outlive the call. */
  body(chunk: Buffer): void;
  complete(): void;
  /** The connection failed or closed before `complete`. */
  failed(err: Error | undefined, reused: boolean): void;
  /** The socket can take more of the request body. */
  drained(): void;
}

interface ParserWithConn extends ResponseParser {
  conn: UpstreamConn;
}

export class UpstreamConn {
  readonly socket: Socket;
  readonly parser: ParserWithConn;
  user: ConnUser | null = null;
  /** At least one response completed on it: a failure before any byte may be a stale keep-alive. */
  reused = false;
  connecting = true;
  connectDeadline: number;
  /** Epoch ms after which an idle connection is closed. */
  idleUntil = 0;
  /** Head fields delivered early by kOnHeaders (heads spread over several reads). */
  partial: string[] | null = null;
  informational = false;
  /** The current exchange's response ended inside execute(): release after execute returns. */
  finished = false;
  /** Set by head(): whether the upstream lets the connection live on. */
  keepAlive = false;
  keepAliveMs = IDLE_MS;
  /**
   * Body bytes still owed by a Content-Length response that this module reads
   * itself; -1 while llhttp frames the body. Issue 4: llhttp's body callback
   * copies every chunk into a fresh ArrayBuffer (node_http_parser's
   * Buffer::Copy), and sweeping those was up to half of each scavenge pause.
   */
  bodyLeft = -1;
  error: Error | undefined;
  dead = false;

  constructor(readonly pool: LeanPool, now: number) {
    const t = pool.target;
    this.connectDeadline = now + pool.connectTimeoutMs;
    this.socket =
      t.socketPath !== undefined
        ? connect({ path: t.socketPath, onread: ONREAD })
        : connect({
            host: t.hostname.startsWith('[') ? t.hostname.slice(1, -1) : t.hostname,
            port: t.port,
            noDelay: true,
            onread: ONREAD,
            ...(pool.lookup !== undefined ? { lookup: pool.lookup } : {}),
          });
    (this.socket as SocketWithConn)[kConn] = this;
    this.socket.on('connect', onConnect);
    this.socket.on('end', onEnd);
    this.socket.on('error', onError);
    this.socket.on('close', onClose);
    this.socket.on('drain', onDrain);
    const p = newResponseParser() as ParserWithConn;
    p.conn = this;
    p[kOnHeaders] = onParserHeaders;
    p[kOnHeadersComplete] = onHeadersComplete;
    p[kOnBody] = onBody;
    p[kOnMessageComplete] = onMessageComplete;
    this.parser = p;
  }

  /** Closes the connection; the exchange it carries (if any) hears `failed`. */
  destroy(err?: Error): void {
    if (this.error === undefined && err !== undefined) this.error = err;
    this.socket.destroy();
  }

  /** The socket is gone: report once, free the parser, tell the pool. */
  closed(): void {
    if (this.dead) return;
    this.dead = true;
    // close() deletes the native parser, which otherwise holds its JS object
    // (and through it this connection) alive: Node's own http client does the same.
    this.parser.close();
    const u = this.user;
    this.user = null;
    this.pool.closed(this);
    if (u !== null) u.failed(this.error, this.reused);
  }

  /** After a response completed: back to the pool when both sides allow it. */
  release(requestSent: boolean): void {
    this.user = null;
    this.reused = true;
    // An exchange pauses its socket while the client cannot take more, and a
    // response can end in the very read that paused it (the last bytes fill
    // the client's buffer, or the client has just left). A pooled connection
    // must read: paused, the next response on it would never be seen and its
    // exchange would hang until the gateway timeout.
    if (this.socket.isPaused()) this.socket.resume();
    if (this.keepAlive && requestSent && !this.dead) this.pool.release(this);
    else this.socket.destroy();
  }
}

const kConn = Symbol('edgeway.upstreamConn');
type SocketWithConn = Socket & { [kConn]: UpstreamConn };

function onConnect(this: SocketWithConn): void {
  const c = this[kConn];
  c.connecting = false;
  c.user?.connected(c);
}

/**
 * Every upstream socket reads into this one buffer (issue 4: a fresh 64 KiB
 * allocation per read was garbage on every response). Safe because a read is
 * parsed to the end before the next one is delivered, llhttp copies partial
 * fields out of it when execute() returns, and every consumer of body bytes
 * (fast-exchange.ts, lean-forwarder.ts) copies them before the callback returns.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);
const ONREAD = { buffer: READ_BUFFER, callback: onRead };

function onRead(this: SocketWithConn, nread: number, buf: Buffer): boolean {
  onData.call(this, buf.subarray(0, nread));
  return true;
}

function onData(this: SocketWithConn, chunk: Buffer): void {
  const c = this[kConn];
  if (c.user === null) {
    // Bytes nobody asked for (a response before a request): not HTTP we relay.
    c.destroy();
    return;
  }
  if (c.bodyLeft > 0) return ownBody(c, chunk, 0);
  const r = c.parser.execute(chunk);
  if (typeof r !== 'number') {
    c.destroy(r);
    return;
  }
  // The head ended at r and a fixed-length body follows (onHeadersComplete).
  if (c.bodyLeft > 0) return ownBody(c, chunk, r);
  if (c.finished) {
    c.finished = false;
    // Bytes after the response were never asked for (one exchange at a time): not reused.
    if (r < chunk.length) c.keepAlive = false;
    const u = c.user as ConnUser | null;
    if (u !== null) u.complete();
  }
}

function onEnd(this: SocketWithConn): void {
  const c = this[kConn];
  // A body delimited by the connection's close (RFC 9112 §6.3 rule 8) ends here.
  if (c.user !== null && c.bodyLeft > 0) {
    // Fewer bytes than Content-Length said: what llhttp's finish() reports.
    c.error ??= Object.assign(new Error('Parse Error: Invalid EOF state'), { code: 'HPE_INVALID_EOF_STATE' });
  } else if (c.user !== null) {
    const r = c.parser.finish();
    if (r !== undefined) c.error ??= r;
    if (c.finished) {
      c.finished = false;
      c.keepAlive = false;
      c.user.complete();
    }
  }
  this.destroy();
}

function onError(this: SocketWithConn, err: Error): void {
  const c = this[kConn];
  c.error ??= err;
}

function onClose(this: SocketWithConn): void {
  this[kConn].closed();
}

function onDrain(this: SocketWithConn): void {
  this[kConn].user?.drained();
}

function onParserHeaders(this: ParserWithConn, fields: string[]): void {
  const c = this.conn;
  if (c.partial === null) c.partial = fields.slice();
  else for (const f of fields) c.partial.push(f);
}

function onHeadersComplete(
  this: ParserWithConn,
  _major: number,
  _minor: number,
  fields: string[] | undefined,
  _method: unknown,
  _url: unknown,
  status: number,
  reason: string,
  _upgrade: boolean,
  keepAlive: boolean,
): number {
  const c = this.conn;
  let headers = fields;
  if (c.partial !== null) {
    if (headers !== undefined) for (const f of headers) c.partial.push(f);
    headers = c.partial;
    c.partial = null;
  }
  const u = c.user;
  if (u === null) return 0;
  if (status < 200) {
    // 100 and 103 carry no body; the final response follows (RFC 9110 §15.2).
    // A 101 was never asked for: upgrades take the websocket path.
    if (status === 101) c.destroy(Object.assign(new Error('unexpected 101'), { code: 'HPE_UNEXPECTED_101' }));
    c.informational = true;
    return 0;
  }
  const h = headers ?? [];
  c.keepAlive = keepAlive;
  c.keepAliveMs = keepAliveHint(h);
  // Read before head(): the exchange filters the field list in place.
  const length = fixedBodyLength(status, h);
  if (u.head(status, reason, h, c.keepAliveMs)) return 1;
  if (length < 0) return 0;
  // 2 tells llhttp "no body, the rest is not HTTP" (as for an upgrade):
  // execute() returns where the head ended and onData reads the body itself.
  // Node resumes the parser at once (llhttp_resume_after_upgrade), so the
  // next response on this connection parses as usual.
  c.bodyLeft = length;
  return 2;
}

/** Bytes `from`.. of `chunk` belong to the body being read by length: hand them on, complete at the end. */
function ownBody(c: UpstreamConn, chunk: Buffer, from: number): void {
  const avail = chunk.length - from;
  const n = avail < c.bodyLeft ? avail : c.bodyLeft;
  c.bodyLeft -= n;
  if (n > 0) c.user?.body(from === 0 && n === avail ? chunk : chunk.subarray(from, from + n));
  if (c.bodyLeft > 0) return;
  c.bodyLeft = -1;
  // Bytes after the response were never asked for (one exchange at a time): not reused.
  if (from + n < chunk.length) c.keepAlive = false;
  c.user?.complete();
}

function onBody(this: ParserWithConn, chunk: Buffer): void {
  this.conn.user?.body(chunk);
}

function onMessageComplete(this: ParserWithConn): void {
  const c = this.conn;
  if (c.informational) {
    c.informational = false;
    return;
  }
  // For llhttp the message ended with its head (we returned 2); the body is ours to read.
  if (c.bodyLeft > 0) return;
  c.bodyLeft = -1;
  c.finished = true;
}

/** Someone waiting for a connection (an exchange). */
export interface Waiter {
  /** False once it no longer wants one (answered, timed out, client gone). */
  readonly waiting: boolean;
  attach(conn: UpstreamConn): void;
}

export class LeanPool {
  private readonly idle: UpstreamConn[] = [];
  private readonly queue: Waiter[] = [];
  private queueHead = 0;
  private total = 0;
  closing = false;

  constructor(
    readonly target: UpstreamTarget,
    private readonly max: number,
    readonly connectTimeoutMs: number,
    readonly lookup: LookupFunction | undefined,
    private readonly clock: { now: number },
  ) {}

  get size(): number {
    return this.total;
  }

  /** Hands `w` an idle connection, a new one, or queues it until one is free. */
  acquire(w: Waiter): void {
    const c = this.idle.pop();
    if (c !== undefined) return w.attach(c);
    if (this.total < this.max) {
      this.total++;
      return w.attach(new UpstreamConn(this, this.clock.now));
    }
    this.queue.push(w);
  }

  /** A connection that must be new (a retry after a stale keep-alive). */
  fresh(w: Waiter): void {
    this.total++;
    w.attach(new UpstreamConn(this, this.clock.now));
  }

  release(c: UpstreamConn): void {
    const w = this.nextWaiter();
    if (w !== undefined) return w.attach(c);
    if (this.closing) return void c.socket.destroy();
    c.idleUntil = this.clock.now + c.keepAliveMs;
    this.idle.push(c);
  }

  closed(c: UpstreamConn): void {
    this.total--;
    const i = this.idle.indexOf(c);
    if (i >= 0) this.idle.splice(i, 1);
    // A slot opened: the next waiter gets a new connection.
    const w = this.closing ? undefined : this.nextWaiter();
    if (w !== undefined) {
      this.total++;
      w.attach(new UpstreamConn(this, this.clock.now));
    }
  }

  /** Closes idle connections past their lifetime (oldest are at the bottom of the stack). */
  sweepIdle(now: number): void {
    let n = 0;
    while (n < this.idle.length && (this.idle[n] as UpstreamConn).idleUntil <= now) n++;
    if (n === 0) return;
    for (const c of this.idle.splice(0, n)) c.socket.destroy();
  }

  closeIdle(): void {
    this.closing = true;
    for (const c of this.idle.splice(0)) c.socket.destroy();
  }

  private nextWaiter(): Waiter | undefined {
    const q = this.queue;
    while (this.queueHead < q.length) {
      const w = q[this.queueHead++] as Waiter;
      if (this.queueHead === q.length) {
        q.length = 0;
        this.queueHead = 0;
      } else if (this.queueHead >= 1024 && this.queueHead * 2 >= q.length) {
        // Under constant load the queue never empties: drop the consumed front
        // so answered exchanges are not kept alive by it.
        q.splice(0, this.queueHead);
        this.queueHead = 0;
      }
      if (w.waiting) return w;
    }
    return undefined;
  }
}
