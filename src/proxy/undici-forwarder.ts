// Forwards HTTP requests through undici: one keep-alive Pool per upstream
// origin, the request body streamed from the client and the response streamed
// back, with backpressure both ways.
//
// Per request there is exactly one object of ours, an Exchange, which is both
// undici's dispatch options and its handler. It uses undici's native handler
// interface (onConnect/onHeaders/onData/onComplete/onError): handlers with the
// newer onRequestStart interface are wrapped per request (a wrapper, a
// controller and a parsed-headers object), and we want the raw header list
// anyway. Listeners on `res` are shared functions that find their Exchange
// through a symbol, so forwarding creates no closures.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP, type LookupFunction } from 'node:net';
import { Pool, buildConnector, type Dispatcher } from 'undici';
import type { ProxyConfig } from '../config/types.js';
import type { UpstreamTarget } from '../routes/types.js';
import type { Forwarder, ForwardRequest, UpstreamTlsOptions } from './forwarder.js';
import { classifyUpstreamError, isConnectFailure, sendError } from './failure.js';
import { responseHeaders, upstreamHeaders } from './headers.js';

/** How often requests still queued for a connection are checked against their deadline. */
const SWEEP_MS = 100;

const kExchange = Symbol('edgeway.exchange');
type ResWithExchange = ServerResponse & { [kExchange]?: Exchange };

/** The reason we abort an upstream request whose client went away (never answered, never counted). */
class ClientGone extends Error {
  override readonly name = 'ClientGone';
}
const CLIENT_GONE = new ClientGone('client closed the connection');

function onResClose(this: ResWithExchange): void {
  this[kExchange]?.clientClosed();
}
function onResDrain(this: ResWithExchange): void {
  this[kExchange]?.drained();
}

/**
 * One proxied request. Field names double as undici dispatch options (`method`,
 * `path`, `headers`, `body`, `headersTimeout`, `bodyTimeout`, `servername`), so
 * no other field may use a name undici reads there (origin, query, idempotent,
 * blocking, upgrade, reset, expectContinue, throwOnError, typeOfService…).
 */
class Exchange implements Dispatcher.DispatchHandler {
  // --- dispatch options ---
  readonly method: Dispatcher.HttpMethod;
  path = '';
  readonly headers: string[];
  readonly body: IncomingMessage | null;
  readonly headersTimeout: number;
  readonly bodyTimeout: number;
  /** Constant per pool: keeps undici from dropping TLS connections when Host varies (it keys SNI on it). */
  servername = '';
  // --- state ---
  private readonly fwd: UndiciForwarder;
  private readonly req: IncomingMessage;
  private readonly res: ResWithExchange;
  private readonly fr: ForwardRequest;
  private target: UpstreamTarget;
  private abortFn: ((err?: Error) => void) | null = null;
  private resumeFn: (() => void) | null = null;
  private retried = false;
  private drainListening = false;
  /** Answered (or the client left): every later undici callback is ignored. */
  private done = false;
  /** Waiting in the pool's queue for a connection (linked in the forwarder's pending list). */
  pendingPrev: Exchange | null = null;
  pendingNext: Exchange | null = null;
  pendingLinked = false;
  deadline = 0;

  constructor(fwd: UndiciForwarder, req: IncomingMessage, res: ServerResponse, fr: ForwardRequest) {
    this.fwd = fwd;
    this.req = req;
    this.res = res as ResWithExchange;
    this.fr = fr;
    this.method = (req.method ?? 'GET') as Dispatcher.HttpMethod;
    this.headers = upstreamHeaders(req, fr);
    const h = req.headers;
    const cl = h['content-length'];
    // Only a body-less request may be replayed on another target (nginx's
    // proxy_next_upstream does the same for non-idempotent bodies).
    this.body = h['transfer-encoding'] !== undefined || (cl !== undefined && cl !== '0') ? req : null;
    this.headersTimeout = fr.timeoutMs;
    this.bodyTimeout = fr.timeoutMs;
    this.target = fr.group.pick(fr.group.size > 1 ? Date.now() : 0);
    this.res[kExchange] = this;
    res.on('close', onResClose);
  }

  start(): void {
    const t = this.target;
    this.path = this.fr.path;
    this.servername = t.hostname;
    // One deadline from the first attempt to the response head, swept by the
    // forwarder's one timer: undici's own header timer ticks every ~0.5 s and
    // does not run while a request waits in the pool's queue, so alone it
    // would answer a 500 ms timeout after up to 1.5 s. It stays as a backstop.
    if (this.deadline === 0) this.deadline = Date.now() + this.headersTimeout;
    this.fwd.linkPending(this);
    this.fwd.poolFor(t, this.fr.trusted === true).dispatch(this, this);
  }

  onConnect(abort: (err?: Error) => void): void {
    if (this.done) {
      abort(CLIENT_GONE);
      return;
    }
    this.abortFn = abort;
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    if (this.done) return false;
    if (statusCode < 200) return true; // 1xx: informational, the final head follows
    if (this.pendingLinked) this.fwd.unlinkPending(this);
    this.fr.group.reportSuccess(this.target);
    this.resumeFn = resume;
    try {
      this.res.writeHead(statusCode, statusText === '' ? undefined : statusText, responseHeaders(rawHeaders));
    } catch {
      // A field value Node refuses to send (invalid characters): not HTTP we can relay.
      this.fail('UPSTREAM_BAD_RESPONSE');
      return false;
    }
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.done) return false;
    if (this.res.write(chunk)) return true;
    if (!this.drainListening) {
      this.drainListening = true;
      this.res.on('drain', onResDrain);
    }
    return false;
  }

  onComplete(): void {
    if (this.done) return;
    this.done = true;
    this.res.end();
  }

  onError(err: Error): void {
    if (this.pendingLinked) this.fwd.unlinkPending(this);
    if (this.done || err === CLIENT_GONE) return;
    if (this.req.destroyed && !this.req.complete) {
      // The client's upload broke (undici saw the body stream fail): not the upstream's fault.
      this.done = true;
      this.res.destroy();
      return;
    }
    const group = this.fr.group;
    const code = classifyUpstreamError(err);
    if (code === 'UPSTREAM_REFUSED' || code === 'UPSTREAM_RESET' || code === 'UPSTREAM_TIMEOUT') {
      const now = Date.now();
      group.reportFailure(this.target, now);
      // proxy_next_upstream error: once, only when the upstream never saw the request.
      if (!this.retried && this.body === null && !this.res.headersSent && isConnectFailure(err) && group.size > 1) {
        const next = group.pick(now);
        if (next !== this.target) {
          this.retried = true;
          this.target = next;
          this.abortFn = null;
          this.start();
          return;
        }
      }
    }
    this.done = true;
    sendError(this.req, this.res, code);
  }

  drained(): void {
    if (!this.done) this.resumeFn?.();
  }

  clientClosed(): void {
    if (this.done) return;
    this.done = true;
    if (this.pendingLinked) this.fwd.unlinkPending(this);
    this.abortFn?.(CLIENT_GONE);
  }

  /** The response head did not arrive by the deadline (queued or sent). */
  expire(): void {
    this.fwd.unlinkPending(this);
    if (this.done) return;
    this.done = true; // onConnect will abort it when undici gets to it
    // Only a request the upstream received counts against it: waiting in our
    // own queue is congestion, not an upstream failure.
    if (this.abortFn !== null) this.fr.group.reportFailure(this.target, Date.now());
    sendError(this.req, this.res, 'UPSTREAM_TIMEOUT');
    this.abortFn?.(CLIENT_GONE);
  }

  private fail(code: 'UPSTREAM_BAD_RESPONSE'): void {
    this.done = true;
    this.abortFn?.(CLIENT_GONE);
    sendError(this.req, this.res, code);
  }
}

export class UndiciForwarder implements Forwarder {
  private readonly cfg: ProxyConfig;
  private readonly tls: UpstreamTlsOptions;
  private readonly pools = new Map<string, Pool>();
  /** Pools of routes/ entries, which skip the connect-time guard (separate: an origin may be in both). */
  private readonly trustedPools = new Map<string, Pool>();
  /** The connect-time SSRF guard (guarded-lookup.ts) for upstream names of API entries. */
  private readonly lookup: LookupFunction | undefined;
  private pendingHead: Exchange | null = null;
  private readonly sweepTimer: NodeJS.Timeout;
  private closed = false;

  constructor(cfg: ProxyConfig, tls: UpstreamTlsOptions = {}, lookup?: LookupFunction) {
    this.cfg = cfg;
    this.tls = tls;
    this.lookup = lookup;
    this.sweepTimer = setInterval(sweep, SWEEP_MS, this);
    this.sweepTimer.unref();
  }

  forward(req: IncomingMessage, res: ServerResponse, fr: ForwardRequest): void {
    if (this.closed) {
      sendError(req, res, 'SHUTTING_DOWN');
      return;
    }
    try {
      new Exchange(this, req, res, fr).start();
    } catch (err) {
      sendError(req, res, classifyUpstreamError(err));
    }
  }

  /** Upstream origins with a pool (for metrics and tests). */
  get poolCount(): number {
    return this.pools.size + this.trustedPools.size;
  }

  poolFor(t: UpstreamTarget, trusted = false): Pool {
    const pools = trusted ? this.trustedPools : this.pools;
    let pool = pools.get(t.origin);
    if (pool === undefined) {
      pool = this.createPool(t, trusted ? undefined : this.lookup);
      pools.set(t.origin, pool);
    }
    return pool;
  }

  private createPool(t: UpstreamTarget, lookup: LookupFunction | undefined): Pool {
    const base = buildConnector({
      timeout: this.cfg.connect_timeout_ms,
      ...(t.socketPath !== undefined ? { socketPath: t.socketPath } : {}),
      // Every new connection to a named upstream resolves through the guard.
      ...(lookup !== undefined ? { lookup } : {}),
      rejectUnauthorized: this.tls.rejectUnauthorized ?? true,
      ...(this.tls.ca !== undefined ? { ca: this.tls.ca as string | Buffer | (string | Buffer)[] } : {}),
    });
    // SNI and certificate checks name the upstream as configured (nginx's
    // proxy_ssl_name default), never the client's Host, which passes through
    // unchanged. An IP upstream gets no SNI (RFC 6066 §3 forbids literals) and
    // is verified against its IP SAN.
    const servername = t.protocol === 'https:' && isIP(t.hostname) === 0 ? t.hostname : undefined;
    const connect: buildConnector.connector =
      t.protocol === 'https:' ? (opts, cb) => base({ ...opts, servername }, cb) : base;
    return new Pool(t.origin, {
      connections: this.cfg.pool_connections,
      pipelining: 1,
      connect,
      headersTimeout: this.cfg.timeout_ms,
      bodyTimeout: this.cfg.timeout_ms,
    });
  }

  linkPending(ex: Exchange): void {
    if (ex.pendingLinked) return;
    ex.pendingLinked = true;
    ex.pendingPrev = null;
    ex.pendingNext = this.pendingHead;
    if (this.pendingHead !== null) this.pendingHead.pendingPrev = ex;
    this.pendingHead = ex;
  }

  unlinkPending(ex: Exchange): void {
    if (!ex.pendingLinked) return;
    ex.pendingLinked = false;
    if (ex.pendingPrev !== null) ex.pendingPrev.pendingNext = ex.pendingNext;
    else this.pendingHead = ex.pendingNext;
    if (ex.pendingNext !== null) ex.pendingNext.pendingPrev = ex.pendingPrev;
    ex.pendingPrev = ex.pendingNext = null;
  }

  /** Answers 504 to every queued request past its deadline. */
  sweep(now: number): void {
    let ex = this.pendingHead;
    while (ex !== null) {
      const next = ex.pendingNext;
      if (ex.deadline <= now) ex.expire();
      ex = next;
    }
  }

  /** Stops new requests, lets in-flight ones finish (each bounded by its timeout), closes every pool. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweepTimer);
    const pools = [...this.pools.values(), ...this.trustedPools.values()];
    this.pools.clear();
    this.trustedPools.clear();
    await Promise.all(pools.map((p) => p.close()));
  }
}

function sweep(fwd: UndiciForwarder): void {
  fwd.sweep(Date.now());
}
