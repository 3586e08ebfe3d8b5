// Access policies compiled once per location (DESIGN.md "Host entries",
// `access`). A location's effective policy keeps its `{org_id}`, `{uc_id}`,
// `{host}` and `{room}` placeholders; this file substitutes what the host
// entry fixes the first time a location is checked and keeps the result in a
// WeakMap keyed by the compiled location, so a request does one lookup and a
// string compare, and a replaced entry's policy goes with its location.
//
// `{host}` on an exact entry is the entry's name; on a wildcard entry it is
// the request's host, substituted per request (the only case that allocates).
// `{room}` belongs to the collab relay, which substitutes it itself
// (fillRoom); on any other location a template naming it grants nothing.

import type { Access, CompiledHost, CompiledLocation } from '../routes/types.js';

export type Policy =
  | { readonly kind: 'public' }
  | { readonly kind: 'user' }
  /** `perHost`: the scope still holds `{host}` (wildcard entry); `room`: it holds `{room}`. */
  | { readonly kind: 'scope'; readonly scope: string; readonly perHost: boolean; readonly room: boolean }
  | { readonly kind: 'users'; readonly users: ReadonlySet<string> }
  /** A template naming something this host does not have (`{uc_id}` on an org host): nobody passes. */
  | { readonly kind: 'never'; readonly template: string };

const PUBLIC: Policy = Object.freeze({ kind: 'public' });
const USER: Policy = Object.freeze({ kind: 'user' });

const cache = new WeakMap<CompiledLocation, Policy>();

/** The location's policy with the host's placeholders filled in (computed once per location). */
export function policyOf(host: CompiledHost, loc: CompiledLocation): Policy {
  let p = cache.get(loc);
  if (p === undefined) {
    p = compilePolicy(loc.access, host);
    cache.set(loc, p);
  }
  return p;
}

export function compilePolicy(access: Access, host: CompiledHost): Policy {
  if (access === 'public') return PUBLIC;
  if (access === 'user') return USER;
  if ('users' in access) return Object.freeze({ kind: 'users', users: new Set(access.users) });
  let scope = access.scope;
  const { orgId, ucId } = host.info;
  if (scope.includes('{org_id}')) {
    if (orgId === undefined) return Object.freeze({ kind: 'never', template: access.scope });
    scope = scope.replaceAll('{org_id}', orgId);
  }
  if (scope.includes('{uc_id}')) {
    if (ucId === undefined) return Object.freeze({ kind: 'never', template: access.scope });
    scope = scope.replaceAll('{uc_id}', ucId);
  }
  const wildcard = host.host.startsWith('*.');
  if (!wildcard && scope.includes('{host}')) scope = scope.replaceAll('{host}', host.host);
  return Object.freeze({
    kind: 'scope',
    scope,
    perHost: wildcard && scope.includes('{host}'),
    room: scope.includes('{room}'),
  });
}

/** The scope a request needs: `{host}` of a wildcard entry is the (normalized) request host. */
export function scopeFor(p: Extract<Policy, { kind: 'scope' }>, requestHost: string): string {
  return p.perHost ? p.scope.replaceAll('{host}', requestHost) : p.scope;
}

/** For the collab relay: the scope with its room filled in. */
export function fillRoom(scope: string, room: string): string {
  return scope.replaceAll('{room}', room);
}
