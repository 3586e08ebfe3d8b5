// The login round trip of DESIGN.md "How a browser gets in":
//
// 1. A browser without a valid token gets 302 to auth.login_url, whose
//    {return_to} is the URL-encoded original URL plus `edgeway_state=<nonce>`;
//    the same nonce goes into a host-only `edgeway_state` cookie.
// 2. The platform's login sends the browser back to return_to with
//    `&edgeway_token=<user token>` appended.
// 3. The token is accepted from the query only when `edgeway_state` equals the
//    state cookie (so nobody can log a victim into their own account by
//    sending a link: login CSRF) and when it expires within
//    auth.handoff_max_ttl_s (a token in a URL leaks through history, logs and
//    Referer, so only a short-lived one may travel there). edgeway then sets
//    its own session cookie, clears the state and answers 302 to the original
//    URL without the two parameters.
//
// Cookies are host-only (no Domain attribute, RFC 6265 §5.3 step 6), Secure,
// HttpOnly, SameSite=Lax (sent on the top-level GET coming back from login).

import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { CLOCK_TOLERANCE_S } from './jwt.js';
import type { Config } from '../config/types.js';
import { OWN_STATE, cookieValues } from '../proxy/headers.js';

export const STATE_COOKIE = OWN_STATE;
/** Long enough to sign in, short enough that a stale state is soon useless. */
export const STATE_MAX_AGE_S = 600;
const COOKIE_ATTRIBUTES = '; Path=/; Secure; HttpOnly; SameSite=Lax';
const CLEAR_STATE = `${STATE_COOKIE}=; Max-Age=0${COOKIE_ATTRIBUTES}`;
const RETURN_TO = '{return_to}';

export class Handoff {
  /** auth.login_url split around {return_to}, so a redirect is one join. */
  readonly #login: readonly string[];
  /** Longest accepted remaining lifetime of a handoff token, with the clock tolerance used for exp. */
  readonly #maxRemainingMs: number;

  constructor(auth: Config['auth']) {
    this.#login = auth.login_url.split(RETURN_TO);
    this.#maxRemainingMs = (auth.handoff_max_ttl_s + CLOCK_TOLERANCE_S) * 1000;
  }

  /** 302 to the login page with a fresh state nonce, in return_to and in the state cookie. */
  redirectToLogin(req: IncomingMessage, res: ServerResponse, cleanUrl: string): void {
    const nonce = randomBytes(16).toString('base64url');
    // The Host header was validated by routing (DNS name, optional port): safe in a URL.
    const returnTo = `https://${req.headers.host}${cleanUrl}${cleanUrl.includes('?') ? '&' : '?'}${STATE_COOKIE}=${nonce}`;
    res.writeHead(302, [
      'Location', this.#login.join(encodeURIComponent(returnTo)),
      'Set-Cookie', `${STATE_COOKIE}=${nonce}; Max-Age=${STATE_MAX_AGE_S}${COOKIE_ATTRIBUTES}`,
      'Cache-Control', 'no-store',
      'Content-Length', '0',
    ]);
    res.end();
  }

  /** True when `state` equals one of the request's state cookies (constant-time compare). */
  stateMatches(req: IncomingMessage, state: string | undefined): boolean {
    if (state === undefined || state === '') return false;
    const cookies = cookieValues(req.headers.cookie, STATE_COOKIE);
    if (cookies === undefined) return false;
    const want = Buffer.from(state);
    let ok = false;
    for (const c of cookies) {
      const got = Buffer.from(c);
      // Lengths are not secret (every nonce has the same); contents are compared in constant time.
      if (got.length === want.length && timingSafeEqual(got, want)) ok = true;
    }
    return ok;
  }

  /** A token may be handed over in a URL only when it expires soon. */
  shortLived(expS: number | undefined, nowMs: number): boolean {
    return expS !== undefined && expS * 1000 - nowMs <= this.#maxRemainingMs;
  }

  /** The handoff succeeded: session cookie set, state cleared, 302 to the original URL without the parameters. */
  complete(res: ServerResponse, cleanUrl: string, sessionCookie: string): void {
    res.writeHead(302, [
      // A path-relative Location resolves against the request's own origin (RFC 9110 §10.2.2).
      'Location', cleanUrl,
      'Set-Cookie', sessionCookie,
      'Set-Cookie', CLEAR_STATE,
      'Cache-Control', 'no-store',
      // The URL that brought the token must not travel on as a Referer.
      'Referrer-Policy', 'no-referrer',
      'Content-Length', '0',
    ]);
    res.end();
  }
}
