// Access control at the edge (DESIGN.md "How a browser gets in", issue 3
// point 6): whether a routed request or upgrade may reach its upstream,
// decided before any byte goes there.
//
// Credentials, first valid one wins: edgeway's session cookie; then
// `Authorization: Bearer` when it verifies as a *user* token (anything else
// in that header is the app's and passes untouched); then, on upgrades only,
// the `edgeway_token` query parameter as is (an upgrade cannot follow a
// redirect). A `edgeway_token` parameter on a plain request is a login
// handoff (handoff.ts) and needs the matching state.
//
// Answers: no valid credential → 302 to the login for a request whose Accept
// names text/html, else 401 JSON; valid without the right → 403; upgrades get
// HTTP 401/403 and are never upgraded. An address with too many refused
// credentials gets 429 (fail-limiter.ts).
//
// Cost with a known credential: a cookie scan, a cache hit (session cache, or
// the verifier's sha256-keyed cache for a Bearer), one WeakMap lookup for the
// location's compiled policy and an array `includes`.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Config } from '../config/types.js';
import type { RequestView } from '../http1/request-view.js';
import { normalizeHost } from '../hosts/hostname.js';
import { kUser, type RequestMarks } from '../observe/types.js';
import { clientAddress } from '../services/client-address.js';
import { OWN_TOKEN, cookieValues, type OwnQuery } from '../proxy/headers.js';
import type { RouteMatch } from '../routes/types.js';
import type { FailLimiter } from './fail-limiter.js';
import { Handoff } from './handoff.js';
import type { TokenVerifier, UserClaims } from './jwt.js';
import { REASONS, refuse, refuseRaw, wantsHtml, type Reason } from './refusal.js';
import { fillRoom, policyOf, scopeFor, type Policy } from './scope-template.js';
import type { Grant, SessionCookies } from './session-cookie.js';

export type { Grant } from './session-cookie.js';

/** What a public location grants: nothing to strip, nothing expires. */
export const PUBLIC_GRANT: Grant = Object.freeze({ sub: '', scope: Object.freeze([]), expMs: Infinity, viaAuthorization: false });

/**
 * Refusals that count towards the fail limiter: a credential was presented and
 * is not one (a guess, a forgery, a replay elsewhere). Not counted: no
 * credential at all (a browser before login), an expired one (a genuine
 * credential that aged) and 403 (the user is known).
 */
const GUESSES: ReadonlySet<Reason> = new Set<Reason>([
  'malformed', 'signature', 'algorithm', 'issuer', 'audience', 'no_exp', 'claims', 'invalid', 'not_user',
  'session_invalid', 'session_host', 'handoff_state', 'handoff_ttl',
]);

const BEARER = 'bearer ';

export class AccessGate {
  /** Every refusal's reason, for metrics (the data plane wires it to RequestObserver.authFailure). */
  onFailure: ((reason: Reason) => void) | undefined;
  readonly #verifier: TokenVerifier;
  readonly #sessions: SessionCookies;
  readonly #limiter: FailLimiter;
  readonly #handoff: Handoff;
  readonly #now: () => number;
  /** One Grant per verified claims object: the verifier's cache hands back the same claims, so a hit allocates nothing. */
  readonly #bearerGrants = new WeakMap<UserClaims, Grant>();
  readonly #queryGrants = new WeakMap<UserClaims, Grant>();
  /** Set by #judge when it answers 'banned' and read right after by its caller (same tick), for Retry-After. */
  #bannedForS = 0;

  constructor(cfg: Config, verifier: TokenVerifier, sessions: SessionCookies, limiter: FailLimiter, now: () => number = Date.now) {
    this.#verifier = verifier;
    this.#sessions = sessions;
    this.#limiter = limiter;
    this.#handoff = new Handoff(cfg.auth);
    this.#now = now;
  }

  /** An HTTP request: the grant when it may pass; otherwise it has been answered here. */
  request(req: IncomingMessage, res: ServerResponse, m: RouteMatch, own: OwnQuery | undefined): Grant | undefined {
    const policy = policyOf(m.host, m.location);
    if (policy.kind === 'public') return PUBLIC_GRANT;
    const now = this.#now();
    const address = clientAddress(req);
    const host = normalizeHost(req.headers.host) as string; // routing already refused a bad Host
    if (own?.token !== undefined && this.#limiter.bannedFor(address, now) === 0) {
      this.#acceptHandoff(req, res, m, own, host, address, now);
      return undefined;
    }
    const d = this.#counted(this.#judge(req, policy, host, address, now, undefined, undefined), req, address, now);
    if (typeof d !== 'string') return d;
    // No valid credential: a browser goes to the login; a ban (429) or a missing right (403) is answered.
    if (REASONS[d][0] === 401 && wantsHtml(req)) this.#handoff.redirectToLogin(req, res, own?.url ?? (req.url as string));
    else refuse(req, res, d, d === 'banned' ? this.#bannedForS : 0);
    return undefined;
  }

  /**
   * The fast lane's question (src/server/fast-lane.ts): the grant when the
   * request passes as it is, else undefined with nothing counted or answered:
   * the fast lane then hands the request to node:http, whose request() above
   * decides again and answers (refusal, login redirect, handoff), so every
   * refusal is counted once, there.
   */
  grantAsIs(req: RequestView, m: RouteMatch): Grant | undefined {
    const policy = policyOf(m.host, m.location);
    if (policy.kind === 'public') return PUBLIC_GRANT;
    const d = this.#judge(req, policy, normalizeHost(req.headers.host) as string, clientAddress(req), this.#now(), undefined, undefined);
    if (typeof d === 'string') return undefined;
    (req as RequestMarks)[kUser] = d.sub;
    return d;
  }

  /** A websocket upgrade: the grant (its expMs closes the socket later), or undefined when refused on the raw socket. */
  upgrade(req: IncomingMessage, socket: Duplex, m: RouteMatch, own: OwnQuery | undefined): Grant | undefined {
    const d = this.#decide(req, m, own?.token, undefined);
    if (typeof d !== 'string') return d;
    refuseRaw(socket, d, d === 'banned' ? this.#bannedForS : 0);
    return undefined;
  }

  /**
   * For a service that refuses after completing the upgrade (the collab relay
   * closes with 4401/4403, which y-websocket treats as final): the grant, or
   * which refusal, answered by nobody here. `room` fills the scope template's
   * `{room}`. Counted and rate-limited like upgrade().
   */
  check(req: IncomingMessage, m: RouteMatch, room: string, queryToken: string | undefined): Grant | 'unauthorized' | 'forbidden' {
    const d = this.#decide(req, m, queryToken, room);
    if (typeof d !== 'string') return d;
    return REASONS[d][0] === 403 ? 'forbidden' : 'unauthorized';
  }

  /** What upgrade() and check() decide alike: the grant, or the reason to refuse, counted. */
  #decide(req: IncomingMessage, m: RouteMatch, queryToken: string | undefined, room: string | undefined): Grant | Reason {
    const policy = policyOf(m.host, m.location);
    if (policy.kind === 'public') return PUBLIC_GRANT;
    const now = this.#now();
    const address = clientAddress(req);
    return this.#counted(this.#judge(req, policy, normalizeHost(req.headers.host) as string, address, now, queryToken, room), req, address, now);
  }

  /**
   * The one judgement every entry point shares, counting nothing: a ban, then
   * the first valid credential, then the policy's right. A ban leaves its
   * seconds in #bannedForS for the caller that answers with Retry-After.
   */
  #judge(req: RequestView, policy: Policy, host: string, address: string, now: number, queryToken: string | undefined, room: string | undefined): Grant | Reason {
    const ban = this.#limiter.bannedFor(address, now);
    if (ban > 0) {
      this.#bannedForS = ban;
      return 'banned';
    }
    const a = this.#authenticate(req, host, queryToken);
    if (typeof a === 'string') return a;
    return this.#denied(policy, a, host, room) ?? a;
  }

  /** A judgement acted on: a refusal counted (metrics, and the fail limiter for guesses), a grant's user marked for the access log. */
  #counted(d: Grant | Reason, req: RequestView, address: string, now: number): Grant | Reason {
    if (typeof d === 'string') this.#failed(d, address, now);
    else (req as RequestMarks)[kUser] = d.sub;
    return d;
  }

  /** The first valid credential, or why there is none (the first refused one's reason, else no_token). */
  #authenticate(req: RequestView, host: string, queryToken: string | undefined): Grant | Reason {
    let first: Reason | undefined;
    const cookies = cookieValues(req.headers.cookie, OWN_TOKEN);
    if (cookies !== undefined) {
      for (const value of cookies) {
        const s = this.#sessions.verify(value, host);
        if (typeof s !== 'string') return s;
        first ??= s;
      }
    }
    const auth = req.headers.authorization;
    if (auth !== undefined && auth.length > BEARER.length && auth.slice(0, BEARER.length).toLowerCase() === BEARER) {
      const r = this.#verifier.check(auth.slice(BEARER.length).trim());
      if (r.ok && r.claims.type === 'user') return grantFor(this.#bearerGrants, r.claims, true);
      // Not a user token: the app's header. Only a JWT-shaped failure is worth naming.
      if (!r.ok && r.reason !== 'malformed') first ??= r.reason;
    }
    if (queryToken !== undefined) {
      const r = this.#verifier.check(queryToken);
      if (r.ok && r.claims.type === 'user') return grantFor(this.#queryGrants, r.claims, false);
      first ??= r.ok ? 'not_user' : r.reason;
    }
    return first ?? 'no_token';
  }

  /** Step 3 of the login round trip: the answer is always given here (302 with the session, or a refusal). */
  #acceptHandoff(req: IncomingMessage, res: ServerResponse, m: RouteMatch, own: OwnQuery, host: string, address: string, now: number): void {
    // Refusals here never redirect to the login: a browser that drops cookies would loop.
    if (!this.#handoff.stateMatches(req, own.state)) return this.#refuseHandoff(req, res, 'handoff_state', address, now);
    const r = this.#verifier.check(own.token as string);
    if (!r.ok) return this.#refuseHandoff(req, res, r.reason, address, now);
    if (r.claims.type !== 'user') return this.#refuseHandoff(req, res, 'not_user', address, now);
    if (!this.#handoff.shortLived(r.claims.exp, now)) return this.#refuseHandoff(req, res, 'handoff_ttl', address, now);
    const { orgId, ucId } = m.host.info;
    const hints = [host];
    if (orgId !== undefined) hints.push(orgId);
    if (ucId !== undefined) hints.push(ucId);
    const cookie = this.#sessions.mint(host, r.claims.sub, r.claims.scope, hints);
    if (cookie === undefined) return this.#refuseHandoff(req, res, 'session_too_large', address, now);
    // Authorization (403) is the next request's business: the session may open other locations of the host.
    (req as RequestMarks)[kUser] = r.claims.sub;
    this.#handoff.complete(res, own.url, cookie);
  }

  #refuseHandoff(req: IncomingMessage, res: ServerResponse, reason: Reason, address: string, now: number): void {
    this.#failed(reason, address, now);
    refuse(req, res, reason);
  }

  #failed(reason: Reason, address: string, now: number): void {
    this.onFailure?.(reason);
    if (GUESSES.has(reason)) this.#limiter.fail(address, now);
  }

  /** Undefined when the grant satisfies the policy, else the 403 reason. */
  #denied(policy: Policy, g: Grant, host: string, room?: string): Reason | undefined {
    switch (policy.kind) {
      case 'public':
      case 'user':
        return undefined;
      case 'scope':
        // `{room}` is only filled in by the collab relay (check()): anywhere else it grants nothing.
        if (policy.room) return room !== undefined && g.scope.includes(fillRoom(scopeFor(policy, host), room)) ? undefined : 'scope';
        return g.scope.includes(scopeFor(policy, host)) ? undefined : 'scope';
      case 'users':
        return policy.users.has(g.sub) ? undefined : 'users';
      case 'never':
        return 'scope';
    }
  }
}

function grantFor(map: WeakMap<UserClaims, Grant>, claims: UserClaims, viaAuthorization: boolean): Grant {
  let g = map.get(claims);
  if (g === undefined) {
    g = Object.freeze({ sub: claims.sub, scope: claims.scope, expMs: (claims.exp ?? 0) * 1000, viaAuthorization });
    map.set(claims, g);
  }
  return g;
}
