// What the admin API reads from the data planes (issue 3: activity and
// metrics). Implemented in src/observe/; with `workers: N` the control plane
// merges what every worker reports.

/** Per host, what a pool manager needs to find idle orgs (GET /v1/activity). */
export interface HostActivity {
  readonly host: string;
  /** org id for org, uc and org-wildcard hosts. */
  readonly org_id: string | null;
  /** ISO time of the last request or upgrade, null when none since start. */
  readonly last_request_at: string | null;
  readonly open_connections: number;
  readonly open_websockets: number;
  readonly requests: number;
  readonly bytes_in: number;
  readonly bytes_out: number;
}

/** The same counters summed over an org's hosts. */
export interface OrgActivity extends Omit<HostActivity, 'host' | 'org_id'> {
  readonly org_id: string;
  readonly hosts: number;
}

export interface ActivityReport {
  readonly hosts: readonly HostActivity[];
  readonly orgs: readonly OrgActivity[];
  /**
   * With `workers: N`: data-plane workers that did not answer in time, so the
   * counts above miss their share (0 when complete). A pool manager must not
   * call an org idle from an incomplete report.
   */
  readonly workers_missing?: number;
}

export interface ActivitySource {
  activity(): Promise<ActivityReport>;
}

export interface MetricsSource {
  /** Prometheus text exposition format (version 0.0.4). */
  metrics(): Promise<string>;
  readonly contentType: string;
}

/** What RequestObserver.fastRequest() hands out, opaque to its holder. */
export type ObservedRequest = object & { readonly __observed?: never };

/**
 * The data plane's one call into observability per request (metrics, the
 * access log, activity). Implementations attach completion tracking without
 * per-request closures (shared listeners that find their state on the object).
 */
export interface RequestObserver {
  /** After routing, before the answer; host/location undefined when the request was refused before routing. */
  request(
    req: import('node:http').IncomingMessage,
    res: import('node:http').ServerResponse,
    host: import('../routes/types.js').CompiledHost | undefined,
    location: import('../routes/types.js').CompiledLocation | undefined,
  ): void;
  /** A websocket upgrade that is about to be proxied (or refused when location is undefined). */
  upgrade(
    req: import('node:http').IncomingMessage,
    socket: import('node:stream').Duplex,
    host: import('../routes/types.js').CompiledHost | undefined,
    location: import('../routes/types.js').CompiledLocation | undefined,
  ): void;
  /** A request served by the fast lane (src/server/fast-lane.ts); the token goes back to fastEnded(). */
  fastRequest(
    req: import('../http1/request-view.js').RequestView,
    socket: import('node:net').Socket,
    host: import('../routes/types.js').CompiledHost,
    location: import('../routes/types.js').CompiledLocation,
  ): ObservedRequest;
  fastEnded(r: ObservedRequest, status: number, code: import('../errors.js').ErrorCode | undefined, aborted: boolean): void;
  /** An authentication or authorization refusal at the edge (reason: no_token, expired, signature, scope, …). */
  authFailure(reason: string): void;
}

// ---- Symbols shared with other modules (Symbol.for: one value however the module is loaded) ----

/**
 * The authenticated user's id (`sub`), set by the access check on the request:
 * `(req as RequestMarks)[kUser] = sub`. The access log reads it when the
 * response ends, so setting it any time before that is fine.
 */
export const kUser: unique symbol = Symbol.for('edgeway.user');

/**
 * This request's id (`<process prefix><counter>`), set by the observer in
 * `request()`/`upgrade()`, for anything that wants to echo or forward it
 * (`X-Request-Id` towards the upstream, the `request_id` of error bodies).
 */
export const kRequestId: unique symbol = Symbol.for('edgeway.request_id');

/** The catalogue code edgeway answered with (set by src/proxy/failure.ts on the response or the raw socket). */
export const kErrorCode: unique symbol = Symbol.for('edgeway.error_code');

/** The marks above, for casts: `(req as RequestMarks)[kUser]`. */
export interface RequestMarks {
  [kUser]?: string;
  [kRequestId]?: string;
  [kErrorCode]?: import('../errors.js').ErrorCode;
}
