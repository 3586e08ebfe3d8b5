// What both kinds of exchange on the lean forwarder's pools share
// (lean-forwarder.ts behind node:http, fast-exchange.ts on the fast lane):
// the target picked from the location's group, the pooled connection, the
// links of the forwarder's coarse deadline sweep, and the retry rules.

import { isConnectFailure } from './failure.js';
import type { ErrorCode } from '../errors.js';
import type { UpstreamTarget } from '../routes/types.js';
import type { ForwardRequest } from './forwarder.js';
import type { LeanForwarder } from './lean-forwarder.js';
import type { ConnUser, UpstreamConn, Waiter } from './lean-pool.js';
import type { UpstreamGroup } from './upstream-group.js';

export const CONNECT_TIMEOUT = Object.assign(new Error('connect timeout'), { code: 'UND_ERR_CONNECT_TIMEOUT' });
export const CLOSED_EARLY = Object.assign(new Error('upstream closed the connection'), { code: 'ECONNRESET' });
/** Methods safe to send again when a reused connection died before answering (RFC 9110 §9.2.2). */
const REPLAYABLE = new Set(['GET', 'HEAD', 'OPTIONS']);

/** An exchange the forwarder's coarse sweep checks for deadlines (this file's Exchange, fast-exchange.ts). */
export interface Swept {
  prev: Swept | null;
  next: Swept | null;
  expire(now: number): void;
}

/**
 * After an upstream failure before any response byte: where to send the
 * request again, or null when the failure is the answer. proxy_next_upstream
 * error, once, only when the upstream never saw the request; or a safe method
 * replayed on a fresh socket when a kept-alive one was closed as we reused it
 * (the request most likely never arrived). Reports the failure to the group.
 */
export function nextAttempt(
  group: UpstreamGroup,
  target: UpstreamTarget,
  e: Error,
  code: ErrorCode,
  reused: boolean,
  method: string,
  mayRetry: boolean,
): { target: UpstreamTarget; fresh: boolean } | null {
  if (code !== 'UPSTREAM_REFUSED' && code !== 'UPSTREAM_RESET' && code !== 'UPSTREAM_TIMEOUT') return null;
  const now = Date.now();
  if (mayRetry) {
    if (isConnectFailure(e) && group.size > 1) {
      group.reportFailure(target, now);
      const next = group.pick(now);
      if (next !== target) return { target: next, fresh: false };
    }
    if (reused && code === 'UPSTREAM_RESET' && REPLAYABLE.has(method)) return { target, fresh: true };
  }
  group.reportFailure(target, now);
  return null;
}

/** The request head in one string: request line, fields, framing, blank line. */
export function requestHead(method: string, path: string, headers: readonly string[], chunked: boolean): string {
  let s = method + ' ' + path + ' HTTP/1.1\r\n';
  for (let i = 0; i < headers.length; i += 2) s += headers[i] + ': ' + headers[i + 1] + '\r\n';
  // Transfer-Encoding is hop-by-hop (dropped by headers.ts); the body is re-chunked here.
  if (chunked) s += 'transfer-encoding: chunked\r\n';
  // Explicit for HTTP/1.0-minded upstreams; the client's own Connection never passes (headers.ts).
  return s + 'connection: keep-alive\r\n\r\n';
}

/** The pooled-connection half of an exchange; subclasses send the request and relay the response. */
export abstract class PooledExchange implements ConnUser, Waiter, Swept {
  waiting = true;
  prev: Swept | null = null;
  next: Swept | null = null;
  /** Head deadline, then body-silence deadline, in the forwarder's coarse clock. */
  deadline: number;
  protected conn: UpstreamConn | null = null;
  protected target: UpstreamTarget;
  protected retried = false;

  constructor(
    protected readonly fwd: LeanForwarder,
    protected readonly fr: ForwardRequest,
    now: number,
  ) {
    this.target = fr.group.pick(fr.group.size > 1 ? now : 0);
    this.deadline = now + fr.timeoutMs;
  }

  start(): void {
    this.fwd.link(this);
    this.fwd.poolFor(this.target, this.fr.trusted === true).acquire(this);
  }

  attach(conn: UpstreamConn): void {
    this.waiting = false;
    this.conn = conn;
    conn.user = this;
    if (!conn.connecting) this.connected(conn);
  }

  abstract connected(conn: UpstreamConn): void;
  abstract head(status: number, reason: string, headers: string[], keepAliveMs: number): boolean;
  abstract body(chunk: Buffer): void;
  abstract complete(): void;
  abstract failed(err: Error | undefined, reused: boolean): void;
  abstract drained(): void;
  abstract expire(now: number): void;

  /** Again on `target` (a fresh socket when `fresh`), once: the caller checked nextAttempt(). */
  protected retry(target: UpstreamTarget, fresh: boolean): void {
    this.retried = true;
    this.target = target;
    const pool = this.fwd.poolFor(target, this.fr.trusted === true);
    this.waiting = true;
    if (fresh) pool.fresh(this);
    else pool.acquire(this);
  }
}
