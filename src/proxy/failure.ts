// Upstream failures mapped to statuses in ONE place (Caddy's pattern), and the
// data plane's one error responder. Bodies are built once per catalogue code at
// load time; answering an error costs a header write and a buffer write.
//
// Bodies never carry an internal address: they are the catalogue's fixed text,
// never an error's message (which for socket errors names ip:port).

import type { IncomingMessage, ServerResponse } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { ERRORS, isEdgewayError, type ErrorCode } from '../errors.js';
import { kErrorCode, type RequestMarks } from '../observe/types.js';

/** Node/undici error codes → catalogue codes. */
const BY_ERRNO: Readonly<Record<string, ErrorCode>> = {
  // The connection was never established: the request did not reach the upstream.
  ECONNREFUSED: 'UPSTREAM_REFUSED',
  ENOTFOUND: 'UPSTREAM_REFUSED',
  EAI_AGAIN: 'UPSTREAM_REFUSED',
  EHOSTUNREACH: 'UPSTREAM_REFUSED',
  ENETUNREACH: 'UPSTREAM_REFUSED',
  EHOSTDOWN: 'UPSTREAM_REFUSED',
  // Established, then lost.
  ECONNRESET: 'UPSTREAM_RESET',
  EPIPE: 'UPSTREAM_RESET',
  ECONNABORTED: 'UPSTREAM_RESET',
  UND_ERR_SOCKET: 'UPSTREAM_RESET',
  UND_ERR_CLOSED: 'UPSTREAM_RESET',
  // Too slow.
  ETIMEDOUT: 'UPSTREAM_TIMEOUT',
  UND_ERR_CONNECT_TIMEOUT: 'UPSTREAM_TIMEOUT',
  UND_ERR_HEADERS_TIMEOUT: 'UPSTREAM_TIMEOUT',
  UND_ERR_BODY_TIMEOUT: 'UPSTREAM_TIMEOUT',
  // Spoke, but not valid HTTP (llhttp's HPE_* are matched by prefix below).
  UND_ERR_RES_CONTENT_LENGTH_MISMATCH: 'UPSTREAM_BAD_RESPONSE',
  UND_ERR_RES_EXCEEDED_MAX_SIZE: 'UPSTREAM_BAD_RESPONSE',
  UND_ERR_HEADERS_OVERFLOW: 'UPSTREAM_BAD_RESPONSE',
  UND_ERR_INFO: 'UPSTREAM_BAD_RESPONSE',
  // undici refused the request itself (a header it will not send): the client's fault.
  UND_ERR_INVALID_ARG: 'BAD_REQUEST',
  UND_ERR_NOT_SUPPORTED: 'BAD_REQUEST',
  // The pool was closed under the request: only happens while shutting down.
  UND_ERR_DESTROYED: 'SHUTTING_DOWN',
};

/** Maps any error an upstream exchange can raise to a catalogue code. */
export function classifyUpstreamError(err: unknown): ErrorCode {
  if (isEdgewayError(err)) return err.code;
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  if (typeof code !== 'string') return 'UPSTREAM_BAD_RESPONSE';
  const mapped = BY_ERRNO[code];
  if (mapped !== undefined) return mapped;
  // HPE_* (llhttp parse errors), ERR_TLS_* / ERR_SSL_* and OpenSSL verification
  // codes (CERT_HAS_EXPIRED, DEPTH_ZERO_SELF_SIGNED_CERT…): the peer answered
  // with something we will not accept. Caddy and nginx both answer 502.
  return 'UPSTREAM_BAD_RESPONSE';
}

/** True for failures where the upstream never saw the request (safe to retry elsewhere). */
export function isConnectFailure(err: unknown): boolean {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  // Derived from the one errno table, so the two cannot drift apart.
  return code === 'UND_ERR_CONNECT_TIMEOUT' || (typeof code === 'string' && BY_ERRNO[code] === 'UPSTREAM_REFUSED');
}

interface Prepared {
  readonly status: number;
  readonly json: Buffer;
  readonly html: Buffer;
  readonly jsonHeaders: readonly string[];
  readonly htmlHeaders: readonly string[];
  /** A complete HTTP/1.1 response for raw sockets (refused upgrades). */
  readonly raw: Buffer;
}

function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function headersFor(type: string, body: Buffer): string[] {
  return [
    'Content-Type', type,
    'Content-Length', String(body.length),
    // An error page must never be cached in place of the real resource.
    'Cache-Control', 'no-store',
    'X-Content-Type-Options', 'nosniff',
  ];
}

function prepare(code: ErrorCode): Prepared {
  const { status, message } = ERRORS[code];
  const reason = STATUS_CODES[status] ?? 'Error';
  const json = Buffer.from(JSON.stringify({ error: code.toLowerCase(), message }));
  const html = Buffer.from(
    `<!doctype html><html><head><meta charset="utf-8"><title>${status} ${escapeHtml(reason)}</title></head>` +
      `<body><h1>${status} ${escapeHtml(reason)}</h1><p>${escapeHtml(message)}.</p></body></html>\n`,
  );
  const raw = Buffer.concat([
    Buffer.from(
      `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${json.length}\r\n` +
        'Cache-Control: no-store\r\nConnection: close\r\n\r\n',
      'latin1',
    ),
    json,
  ]);
  return {
    status,
    json,
    html,
    jsonHeaders: headersFor('application/json', json),
    htmlHeaders: headersFor('text/html; charset=utf-8', html),
    raw,
  };
}

const PREPARED = new Map<ErrorCode, Prepared>();
for (const code of Object.keys(ERRORS) as ErrorCode[]) PREPARED.set(code, prepare(code));

function prepared(code: ErrorCode): Prepared {
  return PREPARED.get(code) ?? (PREPARED.get('INTERNAL') as Prepared);
}

/** "Names text/html explicitly": `*\/*` alone is an API client and gets JSON. */
const WANTS_HTML = /text\/html/i;

/**
 * Answers `code` on `res`: an HTML page when Accept names text/html, else the
 * contract's JSON body. After the head went out (upstream reset mid-body) the
 * response is destroyed instead, so the client sees a truncated message and
 * never a fake-complete one.
 */
export function sendError(req: IncomingMessage, res: ServerResponse, code: ErrorCode, requestId?: string): void {
  // For metrics and the access log (upstream errors by cause), read when the response closes.
  (res as RequestMarks)[kErrorCode] = code;
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const a = errorAnswer(code, req.headers.accept);
  const html = a.html;
  let body = a.body;
  let headers = a.headers;
  if (requestId !== undefined) {
    // Rare (only when the caller has an id): built per call, the rest stays shared.
    if (!html) {
      const { message } = ERRORS[code];
      body = Buffer.from(JSON.stringify({ error: code.toLowerCase(), message, request_id: requestId }));
      headers = headersFor('application/json', body);
    }
    headers = [...headers, 'X-Request-Id', requestId];
  }
  try {
    res.writeHead(a.status, headers as string[]);
  } catch {
    // A header already set by the caller conflicted; the response is unusable.
    res.destroy();
    return;
  }
  res.end(req.method === 'HEAD' ? undefined : body);
}

/** Refuses an upgrade on its raw socket: writes the error response and ends the socket. */
export function sendRawError(socket: Duplex, code: ErrorCode): void {
  (socket as RequestMarks)[kErrorCode] = code;
  if (socket.destroyed) return;
  if (socket.writable) socket.end(prepared(code).raw);
  else socket.destroy();
}

/**
 * `code`'s page for a client with this Accept: HTML when it names text/html,
 * else the contract's JSON. sendError() answers with it; the fast lane
 * (src/proxy/fast-exchange.ts) writes it itself.
 */
export function errorAnswer(code: ErrorCode, accept: string | undefined): { status: number; headers: readonly string[]; body: Buffer; html: boolean } {
  const p = prepared(code);
  const html = accept !== undefined && WANTS_HTML.test(accept);
  return { status: p.status, headers: html ? p.htmlHeaders : p.jsonHeaders, body: html ? p.html : p.json, html };
}
