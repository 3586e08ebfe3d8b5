// The OAuth protocol errors of the public endpoints, in one table (issue 7
// "every error response is one of the RFC's codes"). These are not edgeway's
// admin errors (src/errors.ts): clients match on the RFCs' own codes, so the
// codes and their statuses are the RFCs', and every answer carries
// `Cache-Control: no-store` (RFC 6749 §5.1, §5.2) since some of them answer
// requests that carried secrets.
//
// Descriptions are fixed strings chosen by the caller: never a parameter's
// value (a code, token, secret or `state` must not be echoed into a page a
// proxy or browser may keep, nor into a log).

import type { ServerResponse } from 'node:http';
import { TooBusy } from './secrets.js';

export const OAUTH_ERRORS = {
  // RFC 6749 §5.2 (token endpoint) and §4.1.2.1 (authorization response)
  invalid_request: 400,
  invalid_client: 401,
  invalid_grant: 400,
  unauthorized_client: 400,
  unsupported_grant_type: 400,
  invalid_scope: 400,
  unsupported_response_type: 400,
  access_denied: 403,
  server_error: 500,
  temporarily_unavailable: 503,
  // RFC 7009 §2.2.1
  unsupported_token_type: 400,
  // RFC 6750 §3.1 (bearer tokens at `authenticate`)
  invalid_token: 401,
  insufficient_scope: 403,
} as const;

export type OAuthErrorCode = keyof typeof OAUTH_ERRORS;

/** An OAuth error on its way to the client; `status` overrides the table (405, 404, 413). */
export class OAuthError extends Error {
  constructor(
    readonly code: OAuthErrorCode,
    readonly description: string,
    readonly status: number = OAUTH_ERRORS[code],
    /** `WWW-Authenticate` to send (RFC 6749 §5.2 for Basic, RFC 6750 §3 for Bearer). */
    readonly challenge?: string,
  ) {
    super(description);
    this.name = 'OAuthError';
  }
}

export const NO_STORE: Readonly<Record<string, string>> = Object.freeze({ 'cache-control': 'no-store', pragma: 'no-cache' });

/** A JSON answer with the headers every OAuth response carries. */
export function sendJson(res: ServerResponse, status: number, body: unknown, extra?: Record<string, string>): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...NO_STORE,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    ...extra,
  });
  res.end(text);
}

/** The RFC 6749 §5.2 error body (RFC 6750 and 7009 reuse its shape). */
export function sendOAuthError(res: ServerResponse, err: OAuthError, extra?: Record<string, string>): void {
  const headers: Record<string, string> = { ...extra };
  if (err.challenge !== undefined) headers['www-authenticate'] = err.challenge;
  sendJson(res, err.status, { error: err.code, error_description: err.description }, headers);
}

/** Any thrown value as an OAuth answer: an OAuthError as itself, anything else as server_error (logged by the caller). */
export function asOAuthError(e: unknown): OAuthError {
  if (e instanceof OAuthError) return e;
  if (e instanceof TooBusy) return new OAuthError('temporarily_unavailable', 'too many requests; retry shortly');
  return new OAuthError('server_error', 'the request could not be completed');
}

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/**
 * The page for an authorization request that must not redirect (RFC 6749
 * §4.1.2.1: unknown client, or a redirect_uri that is not registered): the
 * user sees why, and nothing goes to a URI nobody vouched for.
 */
export function sendErrorPage(res: ServerResponse, err: OAuthError): void {
  const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]!);
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>Authorization error</title></head>` +
    `<body><h1>Authorization error</h1><p><code>${esc(err.code)}</code>: ${esc(err.description)}</p></body></html>\n`;
  res.writeHead(err.status === 401 ? 400 : err.status, {
    ...NO_STORE,
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(html),
    'x-content-type-options': 'nosniff',
    'content-security-policy': "default-src 'none'",
  });
  res.end(html);
}
