// The access gate's answers: 401, 403 and 429, as JSON (the contract's error
// shape plus the reason), as an HTML page for browsers, and as a raw HTTP/1.1
// response for refused upgrades. Prepared once per reason at load, like
// src/proxy/failure.ts does for the catalogue; only 429's Retry-After is
// added per answer. No answer carries a token or a cookie value.
//
// WWW-Authenticate follows RFC 6750 §3: `Bearer` alone when no credential was
// presented, `error="invalid_token"` when one was refused, and
// `error="insufficient_scope"` on 403.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ErrorCode } from '../errors.js';
import { kErrorCode, type RequestMarks } from '../observe/types.js';

/** Why a request was refused: a label for metrics and the `reason` of the JSON body. */
export const REASONS = {
  no_token: [401, 'a valid user token is required'],
  malformed: [401, 'the token is malformed'],
  signature: [401, 'the token signature is invalid'],
  algorithm: [401, 'the token is signed with an algorithm edgeway does not accept'],
  expired: [401, 'the token has expired'],
  not_before: [401, 'the token is not valid yet'],
  issuer: [401, 'the token has the wrong issuer'],
  audience: [401, 'the token has the wrong audience'],
  no_exp: [401, 'the token has no expiry'],
  claims: [401, 'the token claims do not fit any token type'],
  invalid: [401, 'the token is invalid'],
  not_user: [401, 'not a user token'],
  session_invalid: [401, 'the session cookie is not valid'],
  session_expired: [401, 'the session has expired'],
  session_host: [401, 'the session cookie belongs to another host'],
  handoff_state: [401, 'login handoff refused: the edgeway_state parameter does not match the edgeway_state cookie (open the page again to sign in)'],
  handoff_ttl: [401, 'login handoff refused: the token lives longer than auth.handoff_max_ttl_s; hand over a short-lived token'],
  session_too_large: [401, 'login handoff refused: the token carries too many scopes for a session cookie'],
  scope: [403, 'the token does not grant access to this location'],
  users: [403, 'this location is open to other users only'],
  banned: [429, 'too many failed authentication attempts from this address'],
} as const satisfies Record<string, readonly [number, string]>;

export type Reason = keyof typeof REASONS;

const CODE_OF: Record<number, ErrorCode> = { 401: 'UNAUTHORIZED', 403: 'FORBIDDEN', 429: 'TOO_MANY_REQUESTS' };

interface Prepared {
  readonly status: number;
  readonly code: ErrorCode;
  readonly jsonHeaders: readonly string[];
  readonly htmlHeaders: readonly string[];
  readonly json: Buffer;
  readonly html: Buffer;
  /** Head + JSON body for a raw socket; 429's head is built per answer (Retry-After). */
  readonly rawHead: string;
}

function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function prepare(reason: Reason): Prepared {
  const [status, message] = REASONS[reason];
  const code = CODE_OF[status]!;
  const title = `${status} ${STATUS_CODES[status] ?? 'Error'}`;
  const json = Buffer.from(JSON.stringify({ error: code.toLowerCase(), message, reason }));
  const html = Buffer.from(
    `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head>` +
      `<body><h1>${title}</h1><p>${escapeHtml(message)}.</p></body></html>\n`,
  );
  const extra: string[] = ['Cache-Control', 'no-store', 'X-Content-Type-Options', 'nosniff'];
  if (status === 401) extra.push('WWW-Authenticate', reason === 'no_token' ? 'Bearer realm="edgeway"' : 'Bearer realm="edgeway", error="invalid_token"');
  if (status === 403) extra.push('WWW-Authenticate', 'Bearer realm="edgeway", error="insufficient_scope"');
  const head = (type: string, body: Buffer): string[] => ['Content-Type', type, 'Content-Length', String(body.length), ...extra];
  let rawHead = `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${json.length}\r\n`;
  for (let i = 0; i < extra.length; i += 2) rawHead += `${extra[i]}: ${extra[i + 1]}\r\n`;
  return {
    status,
    code,
    json,
    html,
    jsonHeaders: head('application/json', json),
    htmlHeaders: head('text/html; charset=utf-8', html),
    rawHead: rawHead + 'Connection: close\r\n',
  };
}

const PREPARED = new Map<Reason, Prepared>();
for (const r of Object.keys(REASONS) as Reason[]) PREPARED.set(r, prepare(r));
const RAW = new Map<Reason, Buffer>();
for (const [r, p] of PREPARED) RAW.set(r, Buffer.concat([Buffer.from(p.rawHead + '\r\n', 'latin1'), p.json]));

/** "Names text/html explicitly" (DESIGN.md): `*\/*` alone is an API client. */
const WANTS_HTML = /text\/html/i;

export function wantsHtml(req: IncomingMessage): boolean {
  const accept = req.headers.accept;
  return accept !== undefined && WANTS_HTML.test(accept);
}

/** Answers a refusal on an HTTP response; `retryAfterS` for 429. */
export function refuse(req: IncomingMessage, res: ServerResponse, reason: Reason, retryAfterS = 0): void {
  const p = PREPARED.get(reason)!;
  (res as RequestMarks)[kErrorCode] = p.code;
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const html = wantsHtml(req);
  let headers = html ? p.htmlHeaders : p.jsonHeaders;
  if (retryAfterS > 0) headers = [...headers, 'Retry-After', String(retryAfterS)];
  res.writeHead(p.status, headers as string[]);
  res.end(req.method === 'HEAD' ? undefined : html ? p.html : p.json);
}

/** Refuses an upgrade on its raw socket (never upgraded, never redirected). */
export function refuseRaw(socket: Duplex, reason: Reason, retryAfterS = 0): void {
  const p = PREPARED.get(reason)!;
  (socket as RequestMarks)[kErrorCode] = p.code;
  if (socket.destroyed) return;
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  if (retryAfterS > 0) socket.end(Buffer.concat([Buffer.from(`${p.rawHead}Retry-After: ${retryAfterS}\r\n\r\n`, 'latin1'), p.json]));
  else socket.end(RAW.get(reason)!);
}
