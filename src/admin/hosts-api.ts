// The host-entry endpoints of the admin API (DESIGN.md "Admin API"): list, get,
// put, delete. Order of checks on a write: token, right to the host, body
// shape, upstream policy, then the store, so that a caller without the right
// learns nothing from validation errors and a refused body is never read.

import { ADMIN_SCOPE, type TokenClaims } from '../auth/jwt.js';
import type { HostStore, StoredEntry } from './host-store.js';
import { EdgewayError, invalidField } from '../errors.js';
import { normalizeHost, isValidEntryHost } from '../hosts/hostname.js';
import { validateEntry } from '../routes/validate-entry.js';
import type { HandlerResult, RequestContext, RouteSpec } from './router.js';
import { readJsonBody } from './body.js';
import type { UpstreamPolicy } from './upstream-policy.js';

const WILDCARD = '*.';

/**
 * The one place that decides whether a token may manage host entries:
 * `host` undefined asks about the collection (list), otherwise about one host.
 * For now only platform tokens with `edge:admin` may; organization tokens
 * (hosts equal to or under `org-<id>.<domain>`) are the next step and slot in here.
 */
export function authorize(claims: TokenClaims, host: string | undefined): boolean {
  void host;
  return claims.type === 'platform' && claims.scope.includes(ADMIN_SCOPE);
}

/** The `{host}` path segment (already percent-decoded) → a normalized entry host, or 400 naming `host`. */
export function normalizePathHost(raw: string): string {
  const wildcard = raw.startsWith(WILDCARD);
  const rest = wildcard ? raw.slice(WILDCARD.length) : raw;
  // normalizeHost would accept a port (it reads Host headers); a path host has none.
  const name = rest.includes(':') ? undefined : normalizeHost(rest);
  const host = name === undefined ? undefined : wildcard ? WILDCARD + name : name;
  if (host === undefined || !isValidEntryHost(host)) {
    throw invalidField('host', 'expected a DNS name, or *. followed by one');
  }
  return host;
}

/** A stored entry as the API returns it: the entry plus `version` and `expires_at`. */
export function storedJson(s: StoredEntry): Record<string, unknown> {
  return {
    ...s.entry,
    version: s.version,
    expires_at: s.expiresAt === null ? null : new Date(s.expiresAt).toISOString(),
  };
}

function forbidden(): EdgewayError {
  return new EdgewayError('FORBIDDEN');
}

function notFound(host: string): EdgewayError {
  return new EdgewayError('NOT_FOUND', `no host entry for ${host}`);
}

/** Resolves the path host and checks the token's right to it. */
function targetHost(ctx: RequestContext): string {
  const host = normalizePathHost(ctx.params.host ?? '');
  if (!authorize(ctx.claims!, host)) throw forbidden();
  return host;
}

export interface HostsApiDeps {
  readonly store: HostStore;
  readonly policy: UpstreamPolicy;
}

export function hostRoutes(deps: HostsApiDeps): RouteSpec[] {
  const { store, policy } = deps;

  const list = (ctx: RequestContext): HandlerResult => {
    const claims = ctx.claims!;
    if (!authorize(claims, undefined)) throw forbidden();
    const visible = store.list().filter((s) => authorize(claims, s.entry.host));
    visible.sort((a, b) => (a.entry.host < b.entry.host ? -1 : a.entry.host > b.entry.host ? 1 : 0));
    return { status: 200, body: visible.map(storedJson) };
  };

  const get = (ctx: RequestContext): HandlerResult => {
    const host = targetHost(ctx);
    const stored = store.get(host);
    if (stored === undefined) throw notFound(host);
    return { status: 200, body: storedJson(stored) };
  };

  const put = async (ctx: RequestContext): Promise<HandlerResult> => {
    const host = targetHost(ctx);
    const body = await readJsonBody(ctx.req);
    const entry = validateEntry(body, { source: 'api', pathHost: host });
    await policy.check(entry);
    const { created, stored } = await store.put(entry);
    return { status: created ? 201 : 200, body: storedJson(stored) };
  };

  const remove = async (ctx: RequestContext): Promise<HandlerResult> => {
    const host = targetHost(ctx);
    if (!(await store.delete(host))) throw notFound(host);
    return { status: 204 };
  };

  return [
    { method: 'GET', path: '/v1/hosts', auth: true, handler: list },
    { method: 'GET', path: '/v1/hosts/{host}', auth: true, handler: get },
    { method: 'PUT', path: '/v1/hosts/{host}', auth: true, handler: put },
    { method: 'DELETE', path: '/v1/hosts/{host}', auth: true, handler: remove },
  ];
}
