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

/** [HostHit, then (prefix: string, match: RouteMatch) pairs]; see the file comment. */
type Lookup = readonly unknown[];

interface Maps {
  /** Every entry by its own host, wildcards included: what put/get/delete see. */
  readonly byHost: Map<string, CompiledHost>;
  /** Non-wildcard entries by host. */
  readonly exact: Map<string, Lookup>;
  /** `*.parent` entries by parent, so a fallback needs no string concatenation. */
  readonly wild: Map<string, Lookup>;
}

const WILDCARD_PREFIX = '*.';

function emptyMaps(): Maps {
  return { byHost: new Map(), exact: new Map(), wild: new Map() };
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

function remove(maps: Maps, host: string): CompiledHost | undefined {
  const compiled = maps.byHost.get(host);
  if (compiled === undefined) return undefined;
  maps.byHost.delete(host);
  if (host.startsWith(WILDCARD_PREFIX)) maps.wild.delete(host.slice(WILDCARD_PREFIX.length));
  else maps.exact.delete(host);
  return compiled;
}

function insert(maps: Maps, compiled: CompiledHost): void {
  const host = compiled.host;
  remove(maps, host);
  maps.byHost.set(host, compiled);
  if (host.startsWith(WILDCARD_PREFIX)) maps.wild.set(host.slice(WILDCARD_PREFIX.length), buildLookup(compiled, true));
  else maps.exact.set(host, buildLookup(compiled, false));
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
    insert(this.#maps, compiled);
    this.#version++;
    return compiled;
  }

  /** Returns what was removed; the version only moves when something was. */
  delete(host: string): CompiledHost | undefined {
    const compiled = remove(this.#maps, host);
    if (compiled !== undefined) this.#version++;
    return compiled;
  }

  /** The entry stored under exactly this host ('*.x' names the wildcard entry itself). */
  get(host: string): CompiledHost | undefined {
    return this.#maps.byHost.get(host);
  }

  #lookup(host: string): Lookup | undefined {
    const maps = this.#maps;
    const found = maps.exact.get(host);
    if (found !== undefined) return found;
    // A wildcard covers exactly one label: 'a.b.org-x.d' looks for '*.b.org-x.d' only.
    const dot = host.indexOf('.');
    return dot < 0 ? undefined : maps.wild.get(host.slice(dot + 1));
  }

  /** Exact host, then the `*.parent` wildcard entry (one label), else undefined. host is already normalized. O(1). */
  lookupHost(host: string): HostHit | undefined {
    return this.#lookup(host)?.[0] as HostHit | undefined;
  }

  /** The host entry and its longest matching location for a normalized host and a path (query allowed). */
  match(host: string, path: string): RouteMatch | undefined {
    const lookup = this.#lookup(host);
    if (lookup === undefined) return undefined;
    for (let i = 1; i < lookup.length; i += 2) {
      if (prefixMatches(lookup[i] as string, path)) return lookup[i + 1] as RouteMatch;
    }
    return undefined;
  }

  /**
   * Builds fresh maps from these entries and swaps them in at once (SIGHUP,
   * worker snapshots). A later entry for the same host replaces an earlier one.
   * If any entry fails to compile, the table is left as it was.
   */
  replaceAll(entries: Iterable<HostEntry>): void {
    const maps = emptyMaps();
    for (const entry of entries) insert(maps, compileEntry(entry, this.domain));
    this.#maps = maps;
    this.#version++;
  }

  *entries(): IterableIterator<CompiledHost> {
    yield* this.#maps.byHost.values();
  }
}
