// The access log: one JSON line per request or websocket (pino), written when
// the response or the websocket ends. Its own logger level (a child at
// `info`), so `log.level: warn` quiets the process log without losing access
// lines; `log.access_log: false` turns them off.
//
// What a line carries is chosen field by field, never copied from the request:
// the path without its query (edgeway_token, token, code, state, access_token
// live there), no header but Host, the upstream's origin (scheme, host, port:
// no user info, no path), and the user id only (never the token it came from).

import { randomBytes } from 'node:crypto';
import type { RequestView } from '../http1/request-view.js';
import { pathForLog, type Logger } from '../log.js';
import type { ErrorCode } from '../errors.js';
import type { CompiledLocation } from '../routes/types.js';
import { kUser, type RequestMarks } from './types.js';

// Request ids: a per-process prefix (pid and 24 random bits, so two processes
// or two runs do not collide) and a counter. One short string per request.
const PREFIX = `${process.pid.toString(36)}${randomBytes(3).toString('hex')}-`;
let counter = 0;

export function nextRequestId(): string {
  return PREFIX + (++counter).toString(36);
}

/** Upstream for a log line: the origin(s) of a proxy location, the service's name; undefined for static. */
const multi = new WeakMap<CompiledLocation, string>();
export function upstreamOf(loc: CompiledLocation | undefined): string | undefined {
  if (loc === undefined) return undefined;
  switch (loc.kind) {
    case 'proxy': {
      const ups = loc.upstreams;
      if (ups.length === 1) return ups[0]!.origin;
      let s = multi.get(loc);
      if (s === undefined) multi.set(loc, (s = ups.map((u) => u.origin).join(' ')));
      return s;
    }
    case 'service':
      return loc.service;
    default:
      return undefined;
  }
}

/**
 * What the observer knows about one finished exchange besides the request
 * itself. Mutable: write() is synchronous, so the caller may fill one scratch
 * object for every line.
 */
export interface AccessFields {
  id: string;
  status: number;
  ms: number;
  upstream: string | undefined;
  bytesIn: number;
  bytesOut: number;
  error: ErrorCode | undefined;
  /** True for a websocket (the line is written when it closes; ms is its lifetime). */
  ws: boolean;
  /** The client left before the response was complete. */
  aborted: boolean;
}

export class AccessLog {
  enabled: boolean;
  private readonly log: Logger;

  constructor(parent: Logger, enabled = true) {
    this.enabled = enabled;
    this.log = parent.child({ log: 'access' }, { level: 'info' });
  }

  write(req: RequestView, f: AccessFields): void {
    const url = req.url;
    this.log.info(
      {
        id: f.id,
        host: req.headers.host,
        method: req.method,
        // An absolute-form target (refused with 400) may carry user info: only origin-form paths are logged.
        path: url !== undefined && url.charCodeAt(0) === 47 /* '/' */ ? pathForLog(url) : '-',
        status: f.status,
        ms: Math.round(f.ms * 10) / 10,
        upstream: f.upstream,
        bytes_in: f.bytesIn,
        bytes_out: f.bytesOut,
        user: (req as RequestMarks)[kUser],
        error: f.error === undefined ? undefined : f.error.toLowerCase(),
        ws: f.ws || undefined,
        aborted: f.aborted || undefined,
      },
      'access',
    );
  }
}
