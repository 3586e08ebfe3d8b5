// One catalogue of every error edgeway reports (fastify's pattern): each has a
// stable code that clients and tests match on, the HTTP status it maps to, and
// a cause kept for logs. Messages never carry tokens or internal addresses.

export interface ErrorSpec {
  readonly status: number;
  readonly message: string;
}

export const ERRORS = {
  // configuration and start-up (status unused: these stop the start, exit 2)
  CONFIG_INVALID: { status: 500, message: 'invalid configuration' },
  ROUTES_INVALID: { status: 500, message: 'invalid routes file' },
  /** The state under data_dir (snapshot, journal) is damaged: the start stops rather than lose entries. */
  STATE_INVALID: { status: 500, message: 'the stored state under data_dir cannot be read' },

  // request shape (public listener and admin API alike)
  BAD_REQUEST: { status: 400, message: 'bad request' },
  BAD_HOST: { status: 400, message: 'missing or malformed Host header' },
  INVALID_FIELD: { status: 400, message: 'invalid field' },
  INVALID_JSON: { status: 400, message: 'request body is not valid JSON' },
  UNAUTHORIZED: { status: 401, message: 'a valid token is required' },
  FORBIDDEN: { status: 403, message: 'the token does not grant this' },
  NOT_FOUND: { status: 404, message: 'not found' },
  HOST_NOT_FOUND: { status: 404, message: 'no route for this host' },
  METHOD_NOT_ALLOWED: { status: 405, message: 'method not allowed' },
  STATIC_ENTRY: { status: 409, message: 'entry comes from routes/ and cannot be changed through the API' },
  PAYLOAD_TOO_LARGE: { status: 413, message: 'request body too large' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'expected application/json' },
  MISDIRECTED: { status: 421, message: 'TLS server name and Host header name different hosts' },
  TOO_MANY_REQUESTS: { status: 429, message: 'too many failed authentication attempts' },
  HEADERS_TOO_LARGE: { status: 431, message: 'request header fields too large' },

  // upstream failures, mapped in one place (src/proxy/failure.ts)
  UPSTREAM_REFUSED: { status: 502, message: 'the upstream refused the connection' },
  UPSTREAM_RESET: { status: 502, message: 'the upstream closed the connection' },
  UPSTREAM_BAD_RESPONSE: { status: 502, message: 'the upstream sent an invalid response' },
  UPSTREAM_UNAVAILABLE: { status: 503, message: 'no healthy upstream' },
  UPSTREAM_TIMEOUT: { status: 504, message: 'the upstream did not answer in time' },
  // The connect-time SSRF guard refused the address an upstream name resolved to (src/proxy/guarded-lookup.ts).
  UPSTREAM_FORBIDDEN: { status: 502, message: 'the upstream address is not allowed' },
  SERVICE_UNAVAILABLE: { status: 503, message: 'this service is not available yet' },
  SHUTTING_DOWN: { status: 503, message: 'edgeway is shutting down' },
  /** A journal write or fsync failed: nothing more is accepted until a restart (its pages may be gone). */
  STATE_UNAVAILABLE: { status: 503, message: 'the change could not be stored durably' },

  // ACME certificates (issue 5): codes of `last_error` in GET /v1/certs.
  ACME_BUDGET_EXCEEDED: { status: 429, message: 'the configured ACME order budget is used up' },
  ACME_DNS_FAILED: { status: 502, message: 'the DNS-01 hook failed' },
  ACME_ORDER_FAILED: { status: 502, message: 'the ACME order failed' },
  // collab relay (src/collab; issue 6)
  COLLAB_UPGRADE_REQUIRED: { status: 426, message: 'this location is a y-websocket endpoint: open a websocket' },
  COLLAB_INVALID_UPDATE: { status: 400, message: 'the body is not a valid Yjs update' },
  /** The room's store failed (its sockets were closed with 1011); a retry loads it afresh. */
  COLLAB_STORE_FAILED: { status: 503, message: 'the room could not be read or stored; try again' },

  INTERNAL: { status: 500, message: 'internal error' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

export class EdgewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Field or key that is wrong, for 400s and config errors (e.g. `locations[0].upstream`). */
  readonly field: string | undefined;

  constructor(code: ErrorCode, message?: string, opts?: { field?: string; cause?: unknown }) {
    super(message ?? ERRORS[code].message, opts?.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'EdgewayError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.field = opts?.field;
  }

  /** The contract's error body: `{ "error": "<code>", "message": "…" }` (+ field). */
  toJSON(): { error: string; message: string; field?: string } {
    const body: { error: string; message: string; field?: string } = {
      error: this.code.toLowerCase(),
      message: this.message,
    };
    if (this.field !== undefined) body.field = this.field;
    return body;
  }
}

/** A field-level validation error: 400 naming the offending field. */
export function invalidField(field: string, expected: string): EdgewayError {
  return new EdgewayError('INVALID_FIELD', `${field}: ${expected}`, { field });
}

export function isEdgewayError(e: unknown): e is EdgewayError {
  return e instanceof EdgewayError;
}
