// Untrusted JSON (admin API) or YAML (routes/) → a frozen, normalized HostEntry,
// or an INVALID_FIELD error naming the exact field (DESIGN.md "Host entries").
// Everything the data plane relies on is checked here once, so compiling and
// matching never meet a malformed entry.

import { invalidField } from '../errors.js';
import { isValidEntryHost } from '../hosts/hostname.js';
import type { Access, EntrySource, HostEntry, LocationSpec, ServiceName, StaticSpec } from './types.js';

const ENTRY_KEYS = new Set(['host', 'access', 'locations', 'lease_ttl_s', 'source']);
const LOCATION_KEYS = new Set(['path', 'upstream', 'upstreams', 'service', 'static', 'strip_prefix', 'timeout_ms', 'access']);
const TARGET_KEYS = ['upstream', 'upstreams', 'service', 'static'] as const;
const STATIC_KEYS = new Set(['root', 'spa']);
const ACCESS_KEYS = new Set(['scope', 'users']);
const SERVICES: ReadonlySet<string> = new Set<ServiceName>(['collab', 'oauth']);

const MAX_LOCATIONS = 64;
const MAX_UPSTREAMS = 32;
const MAX_PATH = 1024;
const MAX_URL = 2048;
const MAX_TIMEOUT_MS = 3_600_000;
const MAX_LEASE_S = 86_400;

// The URL parser forgives a lot ('http:host', backslashes, stray whitespace);
// an upstream must be written out plainly, so the raw text is checked first.
const PLAIN_URL = /^https?:\/\/[^\s\\?#@]+$/i;

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkKeys(obj: Obj, allowed: ReadonlySet<string>, prefix: string): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.has(key)) throw invalidField(prefix + key, 'unknown key');
  }
}

function integer(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw invalidField(field, `expected an integer from ${min} to ${max}`);
  }
  return v;
}

/** Lower-case and one trailing dot stripped, as Host headers are normalized. */
function normalizeEntryHost(v: unknown, field: string): string {
  if (typeof v !== 'string') throw invalidField(field, 'expected a host name');
  const host = (v.endsWith('.') ? v.slice(0, -1) : v).toLowerCase();
  if (!isValidEntryHost(host)) throw invalidField(field, 'expected a DNS name, or *. followed by one');
  return host;
}

export function validateAccess(v: unknown, field: string): Access {
  if (v === 'public' || v === 'user') return v;
  if (!isObject(v)) throw invalidField(field, "expected 'public', 'user', {scope} or {users}");
  checkKeys(v, ACCESS_KEYS, `${field}.`);
  if ((v.scope === undefined) === (v.users === undefined)) throw invalidField(field, 'expected exactly one of scope, users');
  if (v.scope !== undefined) {
    if (typeof v.scope !== 'string' || v.scope.length === 0) throw invalidField(`${field}.scope`, 'expected a non-empty string');
    return Object.freeze({ scope: v.scope });
  }
  const users = v.users;
  if (!Array.isArray(users) || users.length === 0) throw invalidField(`${field}.users`, 'expected a non-empty list of user ids');
  users.forEach((u, i) => {
    if (typeof u !== 'string' || u.length === 0) throw invalidField(`${field}.users[${i}]`, 'expected a non-empty string');
  });
  return Object.freeze({ users: Object.freeze([...(users as string[])]) });
}

/** http(s) URL with a host, optional port and path prefix; no credentials, query or fragment. */
function validateUpstream(v: unknown, field: string): string {
  const expected = 'expected an http or https URL without credentials, query or fragment';
  if (typeof v !== 'string' || v.length > MAX_URL || !PLAIN_URL.test(v)) throw invalidField(field, expected);
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    throw invalidField(field, expected);
  }
  if (url.hostname === '') throw invalidField(field, expected);
  return v;
}

/** Starts with '/'; no '?', '#', '%', whitespace or control chars, no '.', '..' or empty segments. */
function normalizePath(v: unknown, field: string): string {
  const expected = "expected a path starting with '/' without '?', '#', '%', whitespace, '.', '..' or '//' segments";
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_PATH || v.charCodeAt(0) !== 0x2f) throw invalidField(field, expected);
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f || c === 0x3f || c === 0x23 || c === 0x25) throw invalidField(field, expected);
  }
  if (v.includes('//')) throw invalidField(field, expected);
  const path = v.length > 1 && v.endsWith('/') ? v.slice(0, -1) : v;
  if (path !== '/') {
    for (const segment of path.slice(1).split('/')) {
      if (segment === '' || segment === '.' || segment === '..') throw invalidField(field, expected);
    }
  }
  return path;
}

function validateStatic(v: unknown, field: string): StaticSpec {
  if (!isObject(v)) throw invalidField(field, 'expected {root, spa?}');
  checkKeys(v, STATIC_KEYS, `${field}.`);
  if (typeof v.root !== 'string' || v.root.length === 0) throw invalidField(`${field}.root`, 'expected a non-empty string');
  if (v.spa !== undefined && typeof v.spa !== 'boolean') throw invalidField(`${field}.spa`, 'expected true or false');
  return Object.freeze(v.spa === undefined ? { root: v.root } : { root: v.root, spa: v.spa });
}

function validateLocation(v: unknown, field: string, source: EntrySource): LocationSpec {
  if (!isObject(v)) throw invalidField(field, 'expected an object');
  checkKeys(v, LOCATION_KEYS, `${field}.`);
  const out: { -readonly [K in keyof LocationSpec]: LocationSpec[K] } = { path: normalizePath(v.path, `${field}.path`) };

  let targets = 0;
  for (const key of TARGET_KEYS) if (v[key] !== undefined) targets++;
  if (targets !== 1) throw invalidField(field, 'expected exactly one of upstream, upstreams, service, static');

  if (v.upstream !== undefined) {
    out.upstream = validateUpstream(v.upstream, `${field}.upstream`);
  } else if (v.upstreams !== undefined) {
    const list = v.upstreams;
    if (!Array.isArray(list) || list.length === 0 || list.length > MAX_UPSTREAMS) {
      throw invalidField(`${field}.upstreams`, `expected a list of 1 to ${MAX_UPSTREAMS} URLs`);
    }
    out.upstreams = Object.freeze(list.map((u, j) => validateUpstream(u, `${field}.upstreams[${j}]`)));
    // One path prefix for the whole group: the data plane builds the forwarded
    // path once per request, before round-robin picks a target.
    const base = basePathOf(out.upstreams[0]!);
    for (let j = 1; j < out.upstreams.length; j++) {
      if (basePathOf(out.upstreams[j]!) !== base) {
        throw invalidField(`${field}.upstreams[${j}]`, `expected the same path as upstreams[0] (${base || '/'})`);
      }
    }
  } else if (v.service !== undefined) {
    if (typeof v.service !== 'string' || !SERVICES.has(v.service)) throw invalidField(`${field}.service`, "expected 'collab' or 'oauth'");
    out.service = v.service as ServiceName;
  } else {
    if (source !== 'static') throw invalidField(`${field}.static`, 'only allowed in routes/ files');
    out.static = validateStatic(v.static, `${field}.static`);
  }

  if (v.strip_prefix !== undefined) {
    if (typeof v.strip_prefix !== 'boolean') throw invalidField(`${field}.strip_prefix`, 'expected true or false');
    out.strip_prefix = v.strip_prefix;
  }
  if (v.timeout_ms !== undefined) out.timeout_ms = integer(v.timeout_ms, `${field}.timeout_ms`, 1, MAX_TIMEOUT_MS);
  if (v.access !== undefined) out.access = validateAccess(v.access, `${field}.access`);
  return Object.freeze(out);
}

/**
 * Validates and normalizes one host entry. `pathHost` is the host named in the
 * admin API path; the body may omit `host` then, and must agree with it if not.
 * A `source` in the input is ignored: where the entry came from decides.
 */
export function validateEntry(raw: unknown, opts: { source: EntrySource; pathHost?: string }): HostEntry {
  if (!isObject(raw)) throw invalidField('entry', 'expected an object');
  checkKeys(raw, ENTRY_KEYS, '');

  let host: string;
  if (raw.host !== undefined) {
    host = normalizeEntryHost(raw.host, 'host');
    if (opts.pathHost !== undefined && normalizeEntryHost(opts.pathHost, 'host') !== host) {
      throw invalidField('host', 'must equal the host in the request path');
    }
  } else if (opts.pathHost !== undefined) {
    host = normalizeEntryHost(opts.pathHost, 'host');
  } else {
    throw invalidField('host', 'required');
  }

  const access = raw.access === undefined ? undefined : validateAccess(raw.access, 'access');

  const list = raw.locations;
  if (!Array.isArray(list) || list.length === 0 || list.length > MAX_LOCATIONS) {
    throw invalidField('locations', `expected a list of 1 to ${MAX_LOCATIONS} locations`);
  }
  const seen = new Set<string>();
  const locations = list.map((loc, i) => {
    const spec = validateLocation(loc, `locations[${i}]`, opts.source);
    if (seen.has(spec.path)) throw invalidField(`locations[${i}].path`, `duplicate path '${spec.path}'`);
    seen.add(spec.path);
    return spec;
  });

  let lease: number | undefined;
  if (raw.lease_ttl_s !== undefined) {
    if (opts.source === 'static') throw invalidField('lease_ttl_s', 'not allowed in routes/ files');
    lease = integer(raw.lease_ttl_s, 'lease_ttl_s', 1, MAX_LEASE_S);
  }

  // Key order as in the contract's example, so stored entries read naturally.
  return Object.freeze({
    host,
    ...(access === undefined ? {} : { access }),
    locations: Object.freeze(locations),
    ...(lease === undefined ? {} : { lease_ttl_s: lease }),
    source: opts.source,
  });
}

/** An upstream URL's path without its trailing '/' ('' for none), as compile.ts's parseUpstream computes basePath. */
function basePathOf(url: string): string {
  const p = new URL(url).pathname;
  return p.endsWith('/') ? p.slice(0, -1) : p;
}
