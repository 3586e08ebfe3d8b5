// A validated HostEntry → the frozen CompiledHost the data plane reads per
// request. Everything derivable from the entry alone is derived here, once:
// upstream URLs parsed, locations sorted longest path first, effective access
// resolved. Matching a path is then a short loop over precomputed prefixes.

import { classifyHost } from '../hosts/hostname.js';
import type {
  Access,
  CompiledHost,
  CompiledLocation,
  HostEntry,
  HostInfo,
  LocationKind,
  LocationSpec,
  UpstreamTarget,
} from './types.js';

const SLASH = 0x2f;
const QUESTION = 0x3f;

// Defaults by host kind (DESIGN.md "access"). The scope stays a template: the
// access check substitutes {org_id} and {uc_id} from the host, as it does for
// any scope an entry sets itself. Shared, frozen: no copy per host.
const ORG_DEFAULT: Access = Object.freeze({ scope: 'org:{org_id}:member' });
const UC_DEFAULT: Access = Object.freeze({ scope: 'uc:{uc_id}:access' });

function defaultAccess(info: HostInfo): Access {
  switch (info.kind) {
    case 'org':
    case 'org-wildcard':
      return ORG_DEFAULT;
    case 'uc':
      return UC_DEFAULT;
    default:
      return 'public';
  }
}

/** Parses a validated upstream URL. IPv6 hostnames lose their brackets (what net.connect wants). */
export function parseUpstream(raw: string): UpstreamTarget {
  const url = new URL(raw);
  const protocol = url.protocol === 'https:' ? 'https:' : 'http:';
  const port = url.port === '' ? (protocol === 'https:' ? 443 : 80) : Number(url.port);
  const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const basePath = url.pathname.endsWith('/') ? url.pathname.slice(0, -1) : url.pathname;
  return Object.freeze({ origin: url.origin, protocol, hostname, port, basePath });
}

// Ids only need to be unique within the process; they key metrics and
// websocket bookkeeping, which outlive any one compile of a host.
let nextLocationId = 1;

const NO_UPSTREAMS: readonly UpstreamTarget[] = Object.freeze([]);

/**
 * Frozen, except `runtime`: the slot the data plane fills lazily. It lives in
 * a private field (writable on a frozen object) behind an accessor, because
 * making every other property read-only one by one costs ~10 µs per location.
 * Being an accessor, it stays out of JSON and t.same() views of the location.
 */
class Location implements CompiledLocation {
  readonly id: number;
  readonly path: string;
  readonly kind: LocationKind;
  readonly spec: LocationSpec;
  readonly upstreams: readonly UpstreamTarget[];
  readonly service: CompiledLocation['service'];
  readonly static: CompiledLocation['static'];
  readonly stripPrefix: boolean;
  readonly timeoutMs: number | undefined;
  readonly access: Access;
  #runtime: unknown = undefined;

  constructor(spec: LocationSpec, hostAccess: Access) {
    let kind: LocationKind = 'proxy';
    let upstreams = NO_UPSTREAMS;
    if (spec.upstream !== undefined) upstreams = Object.freeze([parseUpstream(spec.upstream)]);
    else if (spec.upstreams !== undefined) upstreams = Object.freeze(spec.upstreams.map(parseUpstream));
    else if (spec.service !== undefined) kind = 'service';
    else kind = 'static';

    this.id = nextLocationId++;
    this.path = spec.path;
    this.kind = kind;
    this.spec = spec;
    this.upstreams = upstreams;
    this.service = spec.service;
    this.static = spec.static;
    this.stripPrefix = spec.strip_prefix === true;
    this.timeoutMs = spec.timeout_ms;
    this.access = spec.access ?? hostAccess;
    Object.freeze(this);
  }

  get runtime(): unknown {
    return this.#runtime;
  }

  set runtime(value: unknown) {
    this.#runtime = value;
  }
}

/** Compiles a validated entry; `domain` (normalized) decides the host kind and default access. */
export function compileEntry(entry: HostEntry, domain: string): CompiledHost {
  const info = classifyHost(entry.host, domain);
  const hostAccess = entry.access ?? defaultAccess(info);
  // Longest first, so the first match is the longest prefix. Paths are unique,
  // and two prefixes of equal length can never both match one path.
  const locations = entry.locations
    .map((spec) => new Location(spec, hostAccess))
    .sort((a, b) => b.path.length - a.path.length);
  return Object.freeze({ host: entry.host, info, entry, locations: Object.freeze(locations) });
}

/**
 * Whether location `prefix` covers `path` (a query string may follow): equal,
 * or followed by '/' or '?'. Location paths never contain '?', so a prefix can
 * never reach into the query. '/' covers everything.
 */
export function prefixMatches(prefix: string, path: string): boolean {
  const n = prefix.length;
  if (n === 1) return true;
  if (!path.startsWith(prefix)) return false;
  if (path.length === n) return true;
  const next = path.charCodeAt(n);
  return next === SLASH || next === QUESTION;
}

/** Index into host.locations of the longest location covering `path`, or -1. */
export function matchLocationIndex(host: CompiledHost, path: string): number {
  const locations = host.locations;
  for (let i = 0; i < locations.length; i++) {
    if (prefixMatches(locations[i]!.path, path)) return i;
  }
  return -1;
}

export function matchLocation(host: CompiledHost, path: string): CompiledLocation | undefined {
  const i = matchLocationIndex(host, path);
  return i < 0 ? undefined : host.locations[i];
}

/** The path (and query) the upstream sees when the location strips its prefix: '/foo/x?q' → '/x?q'. */
export function stripLocationPrefix(loc: CompiledLocation, pathWithQuery: string): string {
  const n = loc.path.length;
  if (n === 1) return pathWithQuery;
  if (pathWithQuery.length === n) return '/';
  if (pathWithQuery.charCodeAt(n) === QUESTION) return '/' + pathWithQuery.slice(n);
  return pathWithQuery.slice(n);
}
