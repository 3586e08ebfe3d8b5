// One request of the fast lane (src/server/fast-lane.ts, issue 4) on the lean
// forwarder's pooled upstream connections: the request head goes upstream in
// one write; the response head is built here as one string and leaves with
// the first body bytes in one client write. What node:http's ServerResponse
// adds to a proxied response is added here the same way (Date when the
// upstream sent none, the connection's fate, chunked framing when the
// upstream gave no length), so a client cannot tell which path served it.
//
// Failures map through failure.ts like every other answer; the retry rules
// are the lean forwarder's own (nextAttempt), not a copy.

import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { ErrorCode } from '../errors.js';
import { corkTillBatchEnd } from './batch-cork.js';
import type { RequestView } from '../http1/request-view.js';
import type { ObservedRequest, RequestObserver } from '../observe/types.js';
import { classifyUpstreamError, errorAnswer } from './failure.js';
import type { ForwardRequest } from './forwarder.js';
import { isNamed, responseHeadersInPlace, upstreamHeaders } from './headers.js';
import type { LeanForwarder } from './lean-forwarder.js';
import type { UpstreamConn } from './lean-pool.js';
import { CLOSED_EARLY, CONNECT_TIMEOUT, PooledExchange, nextAttempt, requestHead } from './pooled-exchange.js';

/** The client side of a fast-lane request. */
export interface FastClient {
  readonly socket: Socket;
  /** The connection ends after this response (the appliance is draining). */
  readonly closing: boolean;
  /** `Connection: keep-alive` and its Keep-Alive hint, with CRLFs, as node:http sends them. */
  keepAliveFields(): string;
  /** The exchange is over; `keep`: the connection may carry the next request. */
  exchangeEnded(keep: boolean): void;
}

const CRLF = '\r\n';
const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1');
const kFast = Symbol('edgeway.fastExchange');
type ClientSocket = Socket & { [kFast]?: FastExchange };

let dateText = '';
let dateUntil = 0;
/** The Date field value (RFC 9110 §6.6.1), made once per second as node:http does. */
function httpDate(now: number): string {
  if (now >= dateUntil) {
    dateText = new Date(now).toUTCString();
    dateUntil = now - (now % 1000) + 1000;
  }
  return dateText;
}

function onClientDrain(this: ClientSocket): void {
  const ex = this[kFast];
  if (ex !== undefined) ex.clientDrained();
}

/** `head` (latin1, ending in its blank line) and `body` in one buffer: one TLS record, one write. */
function packet(head: string, body: Buffer | undefined, chunked: boolean): Buffer {
  const size = chunked && body !== undefined ? body.length.toString(16) + CRLF : '';
  const tail = chunked && body !== undefined ? 2 : 0;
  const bodyLen = body === undefined ? 0 : body.length;
  const buf = Buffer.allocUnsafe(head.length + size.length + bodyLen + tail);
  let at = buf.write(head, 0, 'latin1');
  if (size !== '') at += buf.write(size, at, 'latin1');
  if (body !== undefined) at += body.copy(buf, at);
  if (tail !== 0) buf.write(CRLF, at, 'latin1');
  return buf;
}

export class FastExchange extends PooledExchange {
  private readonly requestHead: string;
  private readonly isHead: boolean;
  /** The response head, built and waiting for the first body bytes (or the end). */
  private pendingHead: string | null = null;
  private chunked = false;
  /** An upstream response head arrived (after that, a failure cuts the connection). */
  private responded = false;
  /** What the client is told (499 while nothing is: the access log's "client left first"). */
  private status = 499;
  private keep = true;
  private done = false;
  /** onClientDrain is on the client socket, which outlives this exchange. */
  private drainWait = false;

  constructor(
    fwd: LeanForwarder,
    private readonly client: FastClient,
    private readonly req: RequestView,
    fr: ForwardRequest,
    private readonly observer: RequestObserver | undefined,
    private readonly observed: ObservedRequest | undefined,
  ) {
    // The coarse clock may be a sweep behind: a deadline set against it would come early (as forward() does).
    super(fwd, fr, (fwd.clock.now = Date.now()));
    this.isHead = req.method === 'HEAD';
    this.requestHead = requestHead(req.method as string, fr.path, upstreamHeaders(req, fr), false);
    (client.socket as ClientSocket)[kFast] = this;
  }

  connected(conn: UpstreamConn): void {
    corkTillBatchEnd(conn.socket);
    conn.socket.write(this.requestHead, 'latin1');
  }

  /** No request body on the fast lane: nothing to resume. */
  drained(): void {}

  head(status: number, reason: string, headers: string[]): boolean {
    if (this.done) return false;
    this.responded = true;
    this.status = status;
    this.fr.group.reportSuccess(this.target);
    this.deadline = this.fwd.clock.now + this.fr.timeoutMs;
    const bodyless = this.isHead || status === 204 || status === 304;
    this.pendingHead = this.headText(status, reason, responseHeadersInPlace(headers), bodyless);
    return this.isHead;
  }

  /** Status line and fields in ServerResponse's order: the upstream's, Date, the connection's fate; framing is added on flush. */
  private headText(status: number, reason: string, h: readonly string[], bodyless: boolean): string {
    let s = 'HTTP/1.1 ' + status + ' ' + (reason !== '' ? reason : (STATUS_CODES[status] ?? 'unknown')) + CRLF;
    let hasLength = false;
    let hasDate = false;
    for (let i = 0; i < h.length; i += 2) {
      const name = h[i] as string;
      // Values came through llhttp (strict): no CR, LF or NUL can be in them.
      if (isNamed(name, 'content-length')) hasLength = true;
      else if (isNamed(name, 'date')) hasDate = true;
      s += name + ': ' + h[i + 1] + CRLF;
    }
    if (!hasDate) s += 'Date: ' + httpDate(Date.now()) + CRLF;
    this.keep = !this.client.closing;
    this.chunked = !bodyless && !hasLength;
    return s + (this.keep ? this.client.keepAliveFields() : 'Connection: close\r\n');
  }

  body(chunk: Buffer): void {
    if (this.done) return;
    this.deadline = this.fwd.clock.now + this.fr.timeoutMs;
    const sock = this.client.socket;
    corkTillBatchEnd(sock);
    let ok: boolean;
    const head = this.pendingHead;
    if (head !== null) {
      this.pendingHead = null;
      ok = sock.write(packet(this.chunked ? head + 'Transfer-Encoding: chunked\r\n\r\n' : head + CRLF, chunk, this.chunked));
    } else if (this.chunked) {
      ok = sock.write(packet('', chunk, true));
    } else {
      // A copy: chunk lives in the pool's shared read buffer (lean-pool.ts).
      ok = sock.write(Buffer.from(chunk));
    }
    if (!ok) {
      this.conn?.socket.pause();
      if (!this.drainWait) {
        this.drainWait = true;
        sock.once('drain', onClientDrain);
      }
    }
  }

  clientDrained(): void {
    this.drainWait = false;
    if (!this.done) this.conn?.socket.resume();
  }

  complete(): void {
    const conn = this.conn;
    this.conn = null;
    if (this.done) {
      conn?.destroy();
      return;
    }
    const sock = this.client.socket;
    const head = this.pendingHead;
    if (head !== null) {
      this.pendingHead = null;
      corkTillBatchEnd(sock);
      // No body and no length from the upstream: the framing was chosen at the head (chunked), as
      // ServerResponse does once writeHead() ran, so the body is the last chunk alone.
      sock.write(packet(this.chunked ? head + 'Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n' : head + CRLF, undefined, false));
    } else if (this.chunked) {
      corkTillBatchEnd(sock);
      sock.write(LAST_CHUNK);
    }
    if (conn !== null) conn.release(true);
    this.finish(undefined, false);
  }

  failed(err: Error | undefined, reused: boolean): void {
    this.conn = null;
    if (this.done) return;
    const e = err ?? CLOSED_EARLY;
    const code = classifyUpstreamError(e);
    if (!this.responded) {
      const again = nextAttempt(this.fr.group, this.target, e, code, reused, this.req.method as string, !this.retried);
      if (again !== null) return this.retry(again.target, again.fresh);
      return this.answer(code);
    }
    // Mid-response: the client sees a cut connection, never a fake-complete message.
    this.cut(code);
  }

  /** Swept: the head (or the next body bytes, or the connection) did not come in time. */
  expire(now: number): void {
    const c = this.conn;
    if (c !== null && c.connecting && c.connectDeadline <= now) return c.destroy(CONNECT_TIMEOUT);
    if (this.deadline > now) return;
    if (this.responded) return this.cut('UPSTREAM_TIMEOUT');
    // Waiting in our own queue is congestion, not an upstream failure.
    if (c !== null) this.fr.group.reportFailure(this.target, now);
    this.conn = null;
    this.answer('UPSTREAM_TIMEOUT');
    c?.destroy();
  }

  /** The client connection closed under the exchange. */
  clientClosed(): void {
    if (this.done) return;
    const c = this.conn;
    this.conn = null;
    this.finish(undefined, true);
    // Mid-exchange the upstream connection cannot carry another request.
    c?.destroy();
  }

  /** Answers `code` with the catalogue's page, on a connection that stays usable. */
  private answer(code: ErrorCode): void {
    const a = errorAnswer(code, this.req.headers.accept);
    this.status = a.status;
    const head = this.headText(a.status, '', a.headers, true) + CRLF;
    this.client.socket.write(packet(head, this.isHead ? undefined : a.body, false));
    this.finish(code, false);
  }

  private cut(code: ErrorCode): void {
    const c = this.conn;
    this.conn = null;
    this.keep = false;
    this.finish(code, true);
    c?.destroy();
    this.client.socket.destroy();
  }

  private finish(code: ErrorCode | undefined, aborted: boolean): void {
    this.done = true;
    this.waiting = false;
    (this.client.socket as ClientSocket)[kFast] = undefined;
    if (this.drainWait) {
      // Left on the socket, it would resume the next exchange's upstream connection at this one's drain.
      this.drainWait = false;
      this.client.socket.removeListener('drain', onClientDrain);
    }
    this.fwd.unlink(this);
    if (this.observed !== undefined) this.observer?.fastEnded(this.observed, this.status, code, aborted);
    this.client.exchangeEnded(this.keep && !aborted);
  }
}
