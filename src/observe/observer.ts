// The data plane's one call per request into observability: metrics, the
// access log and per-host activity, fed from the same few numbers.
//
// Per request: one Exchange object, one request id string, one 'close'
// listener (a shared function that finds the Exchange through a symbol on the
// response). Per connection: one ConnState and one shared 'close' listener.
// Bytes are the connection's counters (cleartext HTTP bytes, heads included)
// between the end of its previous exchange and the end of this one.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Config } from '../config/types.js';
import type { RequestView } from '../http1/request-view.js';
import { ERRORS, type ErrorCode } from '../errors.js';
import type { Logger } from '../log.js';
import { classifyHost } from '../hosts/hostname.js';
import type { RouteTable } from '../routes/table.js';
import type { CompiledHost, CompiledLocation } from '../routes/types.js';
import type { CertListing } from '../tls/cert-store.js';
import { AccessLog, nextRequestId, upstreamOf, type AccessFields } from './access-log.js';
import { Activity, LocalActivitySource, type ActivityRow, type HostStats } from './activity.js';
import { Metrics, comboOf } from './metrics.js';
import { kErrorCode, kRequestId, type ActivitySource, type ObservedRequest, type RequestMarks, type RequestObserver } from './types.js';

const kEx = Symbol('edgeway.observe.exchange');
const kConn = Symbol('edgeway.observe.conn');
type TaggedRes = ServerResponse & RequestMarks & { [kEx]?: Exchange };
type TaggedSocket = Socket & RequestMarks & { [kConn]?: ConnState };

/** One request or websocket, from routing to its end. */
class Exchange {
  constructor(
    readonly obs: Observer,
    readonly req: RequestView,
    readonly start: number,
    readonly combo: number,
    readonly conn: ConnState,
    readonly hs: HostStats | undefined,
    readonly loc: CompiledLocation | undefined,
    readonly id: string,
    /** A websocket counted in the open gauges (its upgrade had a location). */
    readonly ws: boolean,
  ) {}
}

/** One client connection: which host it counts for, and its byte counters at the end of its last exchange. */
class ConnState {
  /** Kept here: `req.socket` is null once Node detached the socket from a finished exchange. */
  socket: Socket | undefined = undefined;
  host: HostStats | undefined = undefined;
  read = 0;
  written = 0;
  /** False once 'close' fired (or when it had fired before we saw the socket). */
  open = true;
  upgrade: Exchange | undefined = undefined;
  constructor(readonly obs: Observer) {}
}

function onResClose(this: TaggedRes): void {
  const ex = this[kEx];
  if (ex === undefined) return;
  this[kEx] = undefined;
  ex.obs.finished(this, ex);
}

function onSocketClose(this: TaggedSocket): void {
  const c = this[kConn];
  if (c !== undefined) c.obs.closed(this, c);
}

const TIME_ORIGIN = performance.timeOrigin;

/** Reused for every access line (AccessLog.write is synchronous). */
const scratch: AccessFields = {
  id: '',
  status: 0,
  ms: 0,
  upstream: undefined,
  bytesIn: 0,
  bytesOut: 0,
  error: undefined,
  ws: false,
  aborted: false,
};

export class Observer implements RequestObserver {
  constructor(
    readonly metrics: Metrics,
    readonly activity: Activity,
    /** undefined: no access log in this process. */
    readonly accessLog: AccessLog | undefined,
  ) {}

  request(req: IncomingMessage, res: ServerResponse, host: CompiledHost | undefined, loc: CompiledLocation | undefined): void {
    (res as TaggedRes)[kEx] = this.begin(req, req.socket, host, loc);
    res.on('close', onResClose);
  }

  /**
   * A request the fast lane serves (src/server/fast-lane.ts): the same
   * accounting as request(), ended by fastEnded() instead of a response's 'close'.
   */
  fastRequest(req: RequestView, socket: Socket, host: CompiledHost, loc: CompiledLocation): ObservedRequest {
    return this.begin(req, socket, host, loc);
  }

  /** A request's start: its connection and host counted, its id given. */
  private begin(req: RequestView, socket: Socket, host: CompiledHost | undefined, loc: CompiledLocation | undefined): Exchange {
    const start = performance.now();
    const conn = this.connOf(socket as TaggedSocket);
    const hs = this.touch(conn, host, start);
    const id = nextRequestId();
    (req as RequestMarks)[kRequestId] = id;
    return new Exchange(this, req, start, comboOf(host, loc), conn, hs, loc, id, false);
  }

  /** The fast lane's request ended: `status` sent (499: nothing was), `aborted` when the body was cut short. */
  fastEnded(r: ObservedRequest, status: number, code: ErrorCode | undefined, aborted: boolean): void {
    this.ended(r as Exchange, status, code, aborted);
  }

  upgrade(req: IncomingMessage, socket: Duplex, host: CompiledHost | undefined, loc: CompiledLocation | undefined): void {
    const start = performance.now();
    const s = socket as TaggedSocket;
    const conn = this.connOf(s);
    const hs = this.touch(conn, host, start);
    const id = nextRequestId();
    (req as RequestMarks)[kRequestId] = id;
    const ws = loc !== undefined;
    conn.upgrade = new Exchange(this, req, start, comboOf(host, loc), conn, hs, loc, id, ws);
    if (ws) {
      this.metrics.openWebsockets++;
      if (hs !== undefined) hs.openWebsockets++;
    }
    // The client left while this was routed: 'close' has fired already.
    if (!conn.open) this.upgradeEnded(s, conn);
  }

  authFailure(reason: string): void {
    this.metrics.authFailure(reason);
  }

  private connOf(socket: TaggedSocket): ConnState {
    let c = socket[kConn];
    if (c !== undefined) return c;
    c = new ConnState(this);
    c.socket = socket;
    socket[kConn] = c;
    if (socket.closed) {
      c.open = false;
    } else {
      socket.on('close', onSocketClose);
      this.metrics.openConnections++;
    }
    return c;
  }

  /** Counts a routed request on its host and moves the connection to that host. */
  private touch(conn: ConnState, host: CompiledHost | undefined, start: number): HostStats | undefined {
    // Refused before routing: the connection stays with the host of its last routed request.
    if (host === undefined) return undefined;
    const hs = this.activity.statsFor(host.host);
    hs.requests++;
    // Wall-clock time from the monotonic reading taken anyway (one clock call less per request).
    hs.lastRequestAt = TIME_ORIGIN + start;
    if (conn.host !== hs) {
      if (conn.open) {
        if (conn.host !== undefined) conn.host.openConnections--;
        hs.openConnections++;
      }
      conn.host = hs;
    }
    return hs;
  }

  /** @internal the response ended (complete or not). */
  finished(res: TaggedRes, ex: Exchange): void {
    this.ended(ex, res.headersSent ? res.statusCode : 499, res[kErrorCode], !res.writableFinished);
  }

  private ended(ex: Exchange, status: number, code: ErrorCode | undefined, aborted: boolean): void {
    const seconds = (performance.now() - ex.start) / 1000;
    if (code !== undefined) this.metrics.upstreamError(code);
    this.metrics.request(ex.combo, status, seconds);
    this.account(ex, (ex.req.socket as Socket | null) ?? ex.conn.socket, status, seconds * 1000, code, aborted);
  }

  /** @internal a client connection closed. */
  closed(socket: TaggedSocket, c: ConnState): void {
    if (!c.open) return;
    c.open = false;
    this.metrics.openConnections--;
    if (c.host !== undefined) c.host.openConnections--;
    if (c.upgrade !== undefined) this.upgradeEnded(socket, c);
  }

  private upgradeEnded(socket: TaggedSocket, c: ConnState): void {
    const ex = c.upgrade!;
    c.upgrade = undefined;
    if (ex.ws) {
      this.metrics.openWebsockets--;
      if (ex.hs !== undefined) ex.hs.openWebsockets--;
    }
    // Refusals and upstream failures are answered through failure.ts, which marks the socket.
    // Otherwise the upgrade went through (an upstream's own non-101 answer is not seen here).
    const code = socket[kErrorCode];
    const status = code === undefined ? 101 : ERRORS[code].status;
    if (code !== undefined) this.metrics.upstreamError(code);
    this.metrics.count(ex.combo, status);
    this.account(ex, socket, status, performance.now() - ex.start, code, false);
  }

  /** Bytes to the host, and the access line. */
  private account(ex: Exchange, socket: Socket | undefined, status: number, ms: number, error: ErrorCode | undefined, aborted: boolean): void {
    const conn = ex.conn;
    const read = socket?.bytesRead ?? conn.read;
    const written = socket?.bytesWritten ?? conn.written;
    const bytesIn = read - conn.read;
    const bytesOut = written - conn.written;
    conn.read = read;
    conn.written = written;
    if (ex.hs !== undefined) {
      ex.hs.bytesIn += bytesIn;
      ex.hs.bytesOut += bytesOut;
    }
    const log = this.accessLog;
    if (log === undefined || !log.enabled) return;
    const f = scratch;
    f.id = ex.id;
    f.status = status;
    f.ms = ms;
    f.upstream = upstreamOf(ex.loc);
    f.bytesIn = bytesIn;
    f.bytesOut = bytesOut;
    f.error = error;
    f.ws = ex.ws;
    f.aborted = aborted;
    log.write(ex.req, f);
  }
}

export interface Observability {
  readonly observer: Observer;
  /** MetricsSource for GET /metrics; `leaseExpired()` for the control plane. */
  readonly metrics: Metrics;
  /** For GET /v1/activity. */
  readonly activity: ActivitySource;
  /** This process's per-host rows (what a cluster worker sends the primary). */
  activityRows(): ActivityRow[];
  /** Applies a reloaded configuration (log.access_log). */
  applyConfig(cfg: Config): void;
  close(): void;
}

export interface ObservabilityOptions {
  readonly config: Config;
  /** The process logger; access lines go to a child of it. */
  readonly log: Logger;
  /** The data plane's route table (hosts and their orgs for the report; pruning). */
  readonly table: RouteTable;
  /** What this process serves certificates from, e.g. `() => state.certs.list()`. */
  readonly certificates?: () => Iterable<CertListing>;
  /** Report the route table size (false in cluster workers: the primary reports it). Default true. */
  readonly tableSize?: boolean;
  /** Node's process metrics. Default true. */
  readonly processMetrics?: boolean;
  /** ACME certificates per state (issue 5). */
  readonly certStates?: () => Readonly<Record<string, number>> | undefined;
}

/** Everything one request-serving process needs: the single-process appliance, or a cluster worker. */
export function createObservability(o: ObservabilityOptions): Observability {
  const table = o.table;
  const metrics = new Metrics({
    domain: table.domain,
    ...(o.tableSize === false ? {} : { tableSize: () => table.size }),
    ...(o.certificates === undefined ? {} : { certificates: o.certificates }),
    ...(o.processMetrics === undefined ? {} : { processMetrics: o.processMetrics }),
    ...(o.certStates === undefined ? {} : { certStates: o.certStates }),
  });
  const activity = new Activity((h) => table.has(h));
  const accessLog = new AccessLog(o.log, o.config.log.access_log);
  const observer = new Observer(metrics, activity, accessLog);
  const hosts = function* (): Iterable<string> {
    yield* table.hosts();
  };
  return {
    observer,
    metrics,
    activity: new LocalActivitySource(activity, hosts, (h) => classifyHost(h, table.domain).orgId),
    activityRows: () => activity.rows(),
    applyConfig(cfg: Config): void {
      accessLog.enabled = cfg.log.access_log;
    },
    close(): void {
      activity.close();
    },
  };
}
