// The host-entry endpoints of the admin API (DESIGN.md "Admin API"): list, get,
// put, delete, heartbeat. Order of checks on a write: token, right to the host,
// body shape, upstream policy, then the store, so that a caller without the
// right learns nothing from validation errors and a refused body is never
// read. The store's own refusals come last: a routes/ entry is 409 for anyone
// who may manage that host, and 403 for anyone who may not (tenancy.ts).

import type { TokenClaims } from '../auth/jwt.js';
import type { HostStore, StoredEntry } from './host-store.js';
import { EdgewayError, invalidField } from '../errors.js';
import { normalizeHost, isValidEntryHost } from '../hosts/hostname.js';
import { validateEntry } from '../routes/validate-entry.js';
import type { HandlerResult, RequestContext, RouteSpec } from './router.js';
import { readJsonBody } from './body.js';
import type { UpstreamPolicy } from './upstream-policy.js';
import { forbidden, isPlatformAdmin, type Tenancy } from './tenancy.js';

const WILDCARD = '*.';

/** A path or body host → a normalized entry host, or 400 naming `field`. */
export function normalizePathHost(raw: string, field = 'host'): string {
  const wildcard = raw.startsWith(WILDCARD);
  const rest = wildcard ? raw.slice(WILDCARD.length) : raw;
  // normalizeHost would accept a port (it reads Host headers); a path host has none.
  const name = rest.includes(':') ? undefined : normalizeHost(rest);
  const host = name === undefined ? undefined : wildcard ? WILDCARD + name : name;
  if (host === undefined || !isValidEntryHost(host)) {
    throw invalidField(field, 'expected a DNS name, or *. followed by one');
  }
  return host;
}

/**
 * The host a token names (path segment, batch delete, …), checked against its
 * rights. A malformed name is a 400 only for platform tokens: for anyone else
 * it is simply not one of their hosts (403), so ports, unicode forms and broken
 * escapes tell them nothing about how names are read.
 */
export function authorizedHost(tenancy: Tenancy, claims: TokenClaims, raw: string, field = 'host'): string {
  let host: string;
  try {
    host = normalizePathHost(raw, field);
  } catch (e) {
    if (isPlatformAdmin(claims)) throw e;
    throw forbidden();
  }
  if (!tenancy.mayManage(claims, host)) throw forbidden();
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

export function byHost(a: StoredEntry, b: StoredEntry): number {
  return a.entry.host < b.entry.host ? -1 : a.entry.host > b.entry.host ? 1 : 0;
}

function notFound(host: string): EdgewayError {
  return new EdgewayError('NOT_FOUND', `no host entry for ${host}`);
}

export interface HostsApiDeps {
  readonly store: HostStore;
  readonly policy: UpstreamPolicy;
  readonly tenancy: Tenancy;
}

export function hostRoutes(deps: HostsApiDeps): RouteSpec[] {
  const { store, policy, tenancy } = deps;
  const target = (ctx: RequestContext): string => authorizedHost(tenancy, ctx.claims!, ctx.params.host ?? '');

  const list = (ctx: RequestContext): HandlerResult => {
    const claims = ctx.claims!;
    if (!tenancy.mayUseApi(claims)) throw forbidden();
    const all = store.list();
    const visible = isPlatformAdmin(claims) ? all : all.filter((s) => tenancy.mayManage(claims, s.entry.host));
    visible.sort(byHost);
    return { status: 200, body: visible.map(storedJson) };
  };

  const get = (ctx: RequestContext): HandlerResult => {
    const host = target(ctx);
    const stored = store.get(host);
    if (stored === undefined) throw notFound(host);
    return { status: 200, body: storedJson(stored) };
  };

  const put = async (ctx: RequestContext): Promise<HandlerResult> => {
    const host = target(ctx);
    const body = await readJsonBody(ctx.req);
    const entry = validateEntry(body, { source: 'api', pathHost: host });
    await policy.check(entry, { claim: tenancy.upstreamClaim(ctx.claims!) });
    const { created, stored } = await store.put(entry);
    // Issue 5: in ACME mode an org's wildcard may still be on order.
    const certificate = store.certState?.(host) ?? 'ready';
    return { status: created ? 201 : 200, body: { ...storedJson(stored), certificate } };
  };

  const remove = async (ctx: RequestContext): Promise<HandlerResult> => {
    const host = target(ctx);
    if (!(await store.delete(host))) throw notFound(host);
    return { status: 204 };
  };

  // Renews the lease for a full lease_ttl_s from now; the body, if any, is ignored.
  const heartbeat = async (ctx: RequestContext): Promise<HandlerResult> => {
    const host = target(ctx);
    const stored = await store.heartbeat(host);
    if (stored === undefined) throw notFound(host);
    return { status: 200, body: storedJson(stored) };
  };

  return [
    { method: 'GET', path: '/v1/hosts', auth: true, handler: list },
    { method: 'GET', path: '/v1/hosts/{host}', auth: true, handler: get },
    { method: 'PUT', path: '/v1/hosts/{host}', auth: true, handler: put },
    { method: 'DELETE', path: '/v1/hosts/{host}', auth: true, handler: remove },
    { method: 'POST', path: '/v1/hosts/{host}/heartbeat', auth: true, handler: heartbeat },
  ];
}
