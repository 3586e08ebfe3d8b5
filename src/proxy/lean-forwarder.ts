// The lean forwarding path (issue 4): node:http (llhttp) parses the client's
// request; the request head goes upstream in one write on a pooled keep-alive
// socket (lean-pool.ts); llhttp parses the response, whose head reaches the
// client in the same write as the first body bytes (ServerResponse sends a
// stored head with the first write). Per request there is one object, an
// Exchange, and no closure or timer: listeners are module functions that find
// it through a symbol, and one coarse sweep enforces every deadline.
//
// Plain-HTTP and unix-socket upstreams take this path; https upstreams go
// through undici (undici-forwarder.ts), which keeps TLS session reuse and SNI
// handling in one tested place.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { LookupFunction, Socket } from 'node:net';
import type { ProxyConfig } from '../config/types.js';
import type { UpstreamTarget } from '../routes/types.js';
import type { Forwarder, ForwardRequest, UpstreamTlsOptions } from './forwarder.js';
import { classifyUpstreamError, sendError } from './failure.js';
import { responseHeadersInPlace, upstreamHeaders } from './headers.js';
import { LeanPool, type UpstreamConn } from './lean-pool.js';
import { PooledExchange, nextAttempt, requestHead, type Swept, CLOSED_EARLY, CONNECT_TIMEOUT } from './pooled-exchange.js';
import { UndiciForwarder } from './undici-forwarder.js';

/** Deadlines (response head, body silence, connect) are checked this often. */
const SWEEP_MS = 100;
/** Idle upstream connections are checked every this many sweeps. */
const IDLE_EVERY = 10;

const kEx = Symbol('edgeway.leanExchange');
type Tagged<T> = T & { [kEx]?: Exchange };

function onResClose(this: Tagged<ServerResponse>): void {
  this[kEx]?.clientClosed();
}
function onResDrain(this: Tagged<ServerResponse>): void {
  this[kEx]?.resDrained();
}
function onReqData(this: Tagged<IncomingMessage>, chunk: Buffer): void {
  this[kEx]?.reqData(chunk);
}
function onReqEnd(this: Tagged<IncomingMessage>): void {
  this[kEx]?.reqEnd();
}

class Exchange extends PooledExchange {
  private readonly requestHead: string;
  private readonly hasBody: boolean;
  private readonly chunked: boolean;
  private sent = false;
  /** The request head went out (bodies: with the first body bytes). */
  private headSent = false;
  private responded = false;
  private done = false;
  private bodyPaused = false;

  constructor(
    fwd: LeanForwarder,
    private readonly req: Tagged<IncomingMessage>,
    private readonly res: Tagged<ServerResponse>,
    fr: ForwardRequest,
  ) {
    super(fwd, fr, fwd.clock.now);
    const h = req.headers;
    const te = h['transfer-encoding'];
    const cl = h['content-length'];
    this.chunked = te !== undefined;
    this.hasBody = this.chunked || (cl !== undefined && cl !== '0');
    this.requestHead = requestHead(req.method ?? 'GET', fr.path, upstreamHeaders(req, fr), this.chunked);
    res[kEx] = this;
    res.on('close', onResClose);
  }

  connected(conn: UpstreamConn): void {
    if (!this.hasBody) {
      this.sent = true;
      conn.socket.write(this.requestHead, 'latin1');
      return;
    }
    // The head waits for the first body bytes (and goes out with them): node:http
    // emits 'request' before llhttp has judged the body, so a body that is
    // malformed from its first byte (a bad chunk size) never reaches the upstream.
    const req = this.req;
    req[kEx] = this;
    req.on('data', onReqData);
    req.on('end', onReqEnd);
    if (req.readableEnded) this.reqEnd();
  }

  reqData(chunk: Buffer): void {
    const s = this.conn?.socket;
    if (s === undefined || this.done) return;
    let ok: boolean;
    if (this.chunked) {
      s.cork();
      if (!this.headSent) this.writeHead(s);
      s.write(chunk.length.toString(16) + '\r\n', 'latin1');
      s.write(chunk);
      ok = s.write('\r\n', 'latin1');
      s.uncork();
    } else {
      if (!this.headSent) {
        s.cork();
        this.writeHead(s);
        ok = s.write(chunk);
        s.uncork();
      } else ok = s.write(chunk);
    }
    if (!ok && !this.bodyPaused) {
      this.bodyPaused = true;
      this.req.pause();
    }
  }

  reqEnd(): void {
    if (this.sent || this.done) return;
    this.sent = true;
    const s = this.conn?.socket;
    if (s === undefined) return;
    if (!this.headSent) this.writeHead(s);
    if (this.chunked) s.write('0\r\n\r\n', 'latin1');
  }

  private writeHead(s: Socket): void {
    this.headSent = true;
    s.write(this.requestHead, 'latin1');
  }

  drained(): void {
    if (this.bodyPaused) {
      this.bodyPaused = false;
      this.req.resume();
    }
  }

  head(status: number, reason: string, headers: string[]): boolean {
    if (this.done) return false;
    this.responded = true;
    this.fr.group.reportSuccess(this.target);
    this.deadline = this.fwd.clock.now + this.fr.timeoutMs;
    try {
      this.res.writeHead(status, reason === '' ? undefined : reason, responseHeadersInPlace(headers));
    } catch {
      // A field value Node refuses to send (invalid characters): not HTTP we can relay.
      this.fail('UPSTREAM_BAD_RESPONSE');
      return true;
    }
    return this.req.method === 'HEAD';
  }

  body(chunk: Buffer): void {
    if (this.done) return;
    this.deadline = this.fwd.clock.now + this.fr.timeoutMs;
    // A copy: chunk lives in the pool's shared read buffer (lean-pool.ts).
    if (!this.res.write(Buffer.from(chunk))) {
      this.conn?.socket.pause();
      this.res.once('drain', onResDrain);
    }
  }

  resDrained(): void {
    if (!this.done) this.conn?.socket.resume();
  }

  complete(): void {
    const conn = this.conn;
    this.conn = null;
    if (this.done) {
      // Answered already (a head Node refused): the connection's state is unknown.
      conn?.destroy();
      return;
    }
    this.finish();
    if (conn !== null) conn.release(this.sent);
    this.res.end();
  }

  failed(err: Error | undefined, reused: boolean): void {
    this.conn = null;
    if (this.done) return;
    const e = err ?? CLOSED_EARLY;
    if (!this.responded && this.req.destroyed && !this.req.complete) {
      // The client's upload broke: not the upstream's fault.
      this.finish();
      this.res.destroy();
      return;
    }
    const code = classifyUpstreamError(e);
    if (!this.responded) {
      const again = nextAttempt(this.fr.group, this.target, e, code, reused, this.req.method ?? '', !this.retried && !this.hasBody);
      if (again !== null) return this.retry(again.target, again.fresh);
    }
    this.finish();
    sendError(this.req, this.res, code);
  }

  protected override retry(target: UpstreamTarget, fresh: boolean): void {
    this.sent = false;
    this.headSent = false;
    super.retry(target, fresh);
  }

  clientClosed(): void {
    if (this.done) return;
    this.finish();
    // Mid-exchange the connection cannot carry another request.
    this.conn?.destroy();
  }

  /** Swept: the head (or the next body bytes, or the connection) did not come in time. */
  expire(now: number): void {
    const c = this.conn;
    if (c !== null && c.connecting && c.connectDeadline <= now) return c.destroy(CONNECT_TIMEOUT);
    if (this.deadline > now) return;
    if (this.responded) return this.clientClosedByTimeout();
    // Waiting in our own queue is congestion, not an upstream failure.
    if (c !== null) this.fr.group.reportFailure(this.target, now);
    this.finish();
    c?.destroy();
    sendError(this.req, this.res, 'UPSTREAM_TIMEOUT');
  }

  private clientClosedByTimeout(): void {
    this.finish();
    this.conn?.destroy();
    this.res.destroy();
  }

  private fail(code: 'UPSTREAM_BAD_RESPONSE'): void {
    this.finish();
    this.conn?.destroy();
    sendError(this.req, this.res, code);
  }

  private finish(): void {
    this.done = true;
    this.waiting = false;
    this.res[kEx] = undefined;
    this.req[kEx] = undefined;
    this.fwd.unlink(this);
  }
}

export class LeanForwarder implements Forwarder {
  /** Coarse clock (ms), advanced by the sweep; deadlines are set against it. */
  readonly clock = { now: Date.now() };
  private readonly pools = new Map<string, LeanPool>();
  private readonly trustedPools = new Map<string, LeanPool>();
  private readonly tlsPath: UndiciForwarder;
  private head: Swept | null = null;
  private active = 0;
  private ticks = 0;
  private closed = false;
  private idleWaiter: (() => void) | undefined;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly cfg: ProxyConfig,
    tls: UpstreamTlsOptions = {},
    private readonly lookup?: LookupFunction,
  ) {
    this.tlsPath = new UndiciForwarder(cfg, tls, lookup);
    this.timer = setInterval(sweep, SWEEP_MS, this);
    this.timer.unref();
  }

  forward(req: IncomingMessage, res: ServerResponse, fr: ForwardRequest): void {
    if (!fr.group.plain) return this.tlsPath.forward(req, res, fr);
    if (this.closed) return sendError(req, res, 'SHUTTING_DOWN');
    this.clock.now = Date.now();
    let ex: Exchange;
    try {
      ex = new Exchange(this, req, res, fr);
    } catch (err) {
      // Request framing upstreamHeaders refuses (headers.ts): nothing went upstream.
      return sendError(req, res, classifyUpstreamError(err));
    }
    ex.start();
  }

  get poolCount(): number {
    return this.pools.size + this.trustedPools.size + this.tlsPath.poolCount;
  }

  poolFor(t: UpstreamTarget, trusted: boolean): LeanPool {
    const pools = trusted ? this.trustedPools : this.pools;
    let pool = pools.get(t.origin);
    if (pool === undefined) {
      pool = new LeanPool(t, this.cfg.pool_connections, this.cfg.connect_timeout_ms, trusted ? undefined : this.lookup, this.clock);
      pools.set(t.origin, pool);
    }
    return pool;
  }

  link(ex: Swept): void {
    ex.next = this.head;
    if (this.head !== null) this.head.prev = ex;
    this.head = ex;
    this.active++;
  }

  unlink(ex: Swept): void {
    if (ex.prev === null && this.head !== ex) return;
    if (ex.prev !== null) ex.prev.next = ex.next;
    else this.head = ex.next;
    if (ex.next !== null) ex.next.prev = ex.prev;
    ex.prev = ex.next = null;
    if (--this.active === 0) this.idleWaiter?.();
  }

  sweep(now: number): void {
    this.clock.now = now;
    let ex = this.head;
    while (ex !== null) {
      const next = ex.next;
      ex.expire(now);
      ex = next;
    }
    if (++this.ticks % IDLE_EVERY === 0) {
      for (const p of this.pools.values()) p.sweepIdle(now);
      for (const p of this.trustedPools.values()) p.sweepIdle(now);
    }
  }

  /** Refuses new requests; in-flight ones finish (each bounded by its timeout), then every connection closes. */
  async close(): Promise<void> {
    this.closed = true;
    const pools = [...this.pools.values(), ...this.trustedPools.values()];
    for (const p of pools) p.closeIdle();
    if (this.active > 0) await new Promise<void>((resolve) => (this.idleWaiter = resolve));
    clearInterval(this.timer);
    await this.tlsPath.close();
  }
}

function sweep(fwd: LeanForwarder): void {
  fwd.sweep(Date.now());
}
