// The in-memory route table (DESIGN.md "Hostnames": exact host, then `*.` +
// parent, else 404). Hash maps make a lookup O(1) in the number of hosts, and
// every object a lookup returns is built when the entry is stored, so the
// request path allocates nothing here. No I/O: the control plane feeds it.
//
// With many hosts a lookup is bound by cache misses, not by work: each pointer
// followed is a likely miss once the table outgrows the CPU caches. So what a
// request reads is one flat array per host, built in one go (adjacent in
// memory): [hit, prefix0, match0, prefix1, match1, …], longest prefix first.

import { compileEntry, prefixMatches } from './compile.js';
import type { CompiledHost, HostEntry, RouteMatch } from './types.js';

export interface HostHit {
  readonly host: CompiledHost;
  readonly wildcard: boolean;
}

const OAUTH_METADATA = '/.well-known/oauth-authorization-server';

function isOAuthMetadata(path: string): boolean {
  return path.startsWith(OAUTH_METADATA) && (path.length === OAUTH_METADATA.length || path.charCodeAt(OAUTH_METADATA.length) === 0x3f /* '?' */);
}

/** [HostHit, then (prefix: string, match: RouteMatch) pairs]; see the file comment. */
type Lookup = readonly unknown[];

/**
 * A host not yet compiled: entries handed over in bulk (restart, SIGHUP,
 * worker start) are compiled at their first lookup, so a table of 100,000
 * restored hosts is ready in milliseconds (issue 3: first request within 1 s
 * of start) and only hosts that see traffic pay the compile.
 */
type Slot = Lookup | HostEntry;

interface Maps {
  /** Every entry by its own host, wildcards included: what put/get/delete see. */
  readonly byHost: Map<string, CompiledHost | HostEntry>;
  /** Non-wildcard entries by host. */
  readonly exact: Map<string, Slot>;
  /** `*.parent` entries by parent, so a fallback needs no string concatenation. */
  readonly wild: Map<string, Slot>;
}

const WILDCARD_PREFIX = '*.';

function emptyMaps(): Maps {
  return { byHost: new Map(), exact: new Map(), wild: new Map() };
}

function isCompiled(x: CompiledHost | HostEntry): x is CompiledHost {
  return (x as CompiledHost).info !== undefined;
}

function buildLookup(compiled: CompiledHost, wildcard: boolean): Lookup {
  // A wildcard entry is only ever reached through the fallback and an exact one
  // only directly, so one precomputed answer per location covers both.
  const locations = compiled.locations;
  const lookup = new Array<unknown>(1 + 2 * locations.length);
  lookup[0] = Object.freeze({ host: compiled, wildcard });
  for (let i = 0; i < locations.length; i++) {
    const location = locations[i]!;
    lookup[1 + 2 * i] = location.path;
    lookup[2 + 2 * i] = Object.freeze({ host: compiled, location, wildcard });
  }
  return lookup;
}

function remove(maps: Maps, host: string): CompiledHost | HostEntry | undefined {
  const stored = maps.byHost.get(host);
  if (stored === undefined) return undefined;
  maps.byHost.delete(host);
  if (host.startsWith(WILDCARD_PREFIX)) maps.wild.delete(host.slice(WILDCARD_PREFIX.length));
  else maps.exact.delete(host);
  return stored;
}

function insert(maps: Maps, compiled: CompiledHost): Lookup {
  const host = compiled.host;
  maps.byHost.set(host, compiled);
  const wildcard = host.startsWith(WILDCARD_PREFIX);
  const lookup = buildLookup(compiled, wildcard);
  if (wildcard) maps.wild.set(host.slice(WILDCARD_PREFIX.length), lookup);
  else maps.exact.set(host, lookup);
  return lookup;
}

function insertRaw(maps: Maps, entry: HostEntry): void {
  const host = entry.host;
  maps.byHost.set(host, entry);
  if (host.startsWith(WILDCARD_PREFIX)) maps.wild.set(host.slice(WILDCARD_PREFIX.length), entry);
  else maps.exact.set(host, entry);
}

export class RouteTable {
  readonly domain: string;
  #maps: Maps = emptyMaps();
  #version = 0;

  /** `domain` as configured; normalized here (lower-case, no trailing dot) like every host. */
  constructor(domain: string) {
    const d = domain.toLowerCase();
    this.domain = d.endsWith('.') ? d.slice(0, -1) : d;
  }

  get size(): number {
    return this.#maps.byHost.size;
  }

  /** Increments on every change. */
  get version(): number {
    return this.#version;
  }

  /** Compiles and stores (replacing any entry of that host). Returns the compiled host. */
  put(entry: HostEntry): CompiledHost {
    const compiled = compileEntry(entry, this.domain);
    remove(this.#maps, compiled.host);
    insert(this.#maps, compiled);
    this.#version++;
    return compiled;
  }

  /** Returns what was removed (compiled, so its locations can be retired); the version only moves when something was. */
  delete(host: string): CompiledHost | undefined {
    const stored = remove(this.#maps, host);
    if (stored === undefined) return undefined;
    this.#version++;
    return isCompiled(stored) ? stored : this.#compile(stored);
  }

  /** The entry stored under exactly this host ('*.x' names the wildcard entry itself). */
  get(host: string): CompiledHost | undefined {
    const stored = this.#maps.byHost.get(host);
    if (stored === undefined || isCompiled(stored)) return stored;
    const compiled = this.#compile(stored);
    // Same slot, compiled: byHost and the lookup maps now hold the result.
    if (compiled !== undefined) insert(this.#maps, compiled);
    return compiled;
  }

  /** Whether this host has an entry, without compiling it. */
  has(host: string): boolean {
    return this.#maps.byHost.has(host);
  }

  #lookup(host: string): Lookup | undefined {
    const maps = this.#maps;
    let found = maps.exact.get(host);
    if (found === undefined) {
      // A wildcard covers exactly one label: 'a.b.org-x.d' looks for '*.b.org-x.d' only.
      const dot = host.indexOf('.');
      if (dot < 0) return undefined;
      found = maps.wild.get(host.slice(dot + 1));
      if (found === undefined) return undefined;
    }
    if (Array.isArray(found)) return found;
    // First lookup of a host handed over in bulk: compile it now, once.
    const compiled = this.#compile(found as HostEntry);
    return compiled === undefined ? undefined : insert(maps, compiled);
  }

  /** Exact host, then the `*.parent` wildcard entry (one label), else undefined. host is already normalized. O(1). */
  lookupHost(host: string): HostHit | undefined {
    return this.#lookup(host)?.[0] as HostHit | undefined;
  }

  /** The host entry and its longest matching location for a normalized host and a path (query allowed). */
  match(host: string, path: string): RouteMatch | undefined {
    const lookup = this.#lookup(host);
    if (lookup === undefined) return undefined;
    // RFC 8414 metadata lives at the root of a host, outside its oauth
    // location (DESIGN.md "OAuth2"): on a host that has one, that exact path
    // goes there. One character test keeps other paths off this branch.
    if (path.charCodeAt(1) === 0x2e /* '.' */ && isOAuthMetadata(path)) {
      for (let i = 2; i < lookup.length; i += 2) {
        const m = lookup[i] as RouteMatch;
        if (m.location.service === 'oauth') return m;
      }
    }
    for (let i = 1; i < lookup.length; i += 2) {
      if (prefixMatches(lookup[i] as string, path)) return lookup[i + 1] as RouteMatch;
    }
    return undefined;
  }

  /**
   * Swaps in these entries at once (SIGHUP, restart, worker snapshots); a later
   * entry for the same host replaces an earlier one. They are compiled at their
   * first lookup: every entry here was validated when it was first accepted
   * (admin API or routes/), so compiling cannot fail for a well-formed one.
   */
  replaceAll(entries: Iterable<HostEntry>): void {
    const maps = emptyMaps();
    for (const entry of entries) {
      remove(maps, entry.host);
      insertRaw(maps, entry);
    }
    this.#maps = maps;
    this.#version++;
  }

  /** Every entry, compiled (compiles those not yet compiled). */
  *entries(): IterableIterator<CompiledHost> {
    for (const host of [...this.#maps.byHost.keys()]) {
      const c = this.get(host);
      if (c !== undefined) yield c;
    }
  }

  /** Entries compiled so far: the only ones that can have served traffic. */
  *compiledEntries(): IterableIterator<CompiledHost> {
    for (const stored of this.#maps.byHost.values()) if (isCompiled(stored)) yield stored;
  }

  /** Every host name, without compiling anything. */
  hosts(): IterableIterator<string> {
    return this.#maps.byHost.keys();
  }

  #compile(entry: HostEntry): CompiledHost | undefined {
    try {
      return compileEntry(entry, this.domain);
    } catch {
      // Unreachable for a validated entry; a broken one routes nowhere rather
      // than throwing on the request path.
      return undefined;
    }
  }
}
