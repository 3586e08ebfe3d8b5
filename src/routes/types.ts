// Host entries as the contract defines them (../shared/DESIGN.md, "Host entries"),
// and their compiled, frozen form that the data plane reads per request.

/** Who may pass (DESIGN.md "access"). */
export type Access =
  | 'public'
  | 'user'
  | { readonly scope: string }
  | { readonly users: readonly string[] };

export interface StaticSpec {
  readonly root: string;
  readonly spa?: boolean;
}

export type ServiceName = 'collab' | 'oauth';

/** A location as stored and returned by the admin API (validated, normalized). */
export interface LocationSpec {
  readonly path: string;
  readonly upstream?: string;
  readonly upstreams?: readonly string[];
  readonly service?: ServiceName;
  readonly static?: StaticSpec;
  readonly strip_prefix?: boolean;
  readonly timeout_ms?: number;
  readonly access?: Access;
}

export type EntrySource = 'static' | 'api';

/** A host entry as stored (the unit of the admin API, like an nginx server block). */
export interface HostEntry {
  readonly host: string;
  readonly access?: Access;
  readonly locations: readonly LocationSpec[];
  readonly lease_ttl_s?: number;
  readonly source: EntrySource;
}

/** What a host name is, by the contract's hostname table. */
export type HostKind = 'apex' | 'named' | 'org' | 'uc' | 'org-wildcard';

export interface HostInfo {
  readonly kind: HostKind;
  /** For org, uc and org-wildcard hosts. */
  readonly orgId?: string;
  /** For uc hosts. */
  readonly ucId?: string;
}

/** One upstream origin, parsed once when the entry is stored. */
export interface UpstreamTarget {
  /** `http://10.0.0.1:8888` (scheme, host, port; no path). */
  readonly origin: string;
  readonly protocol: 'http:' | 'https:';
  readonly hostname: string;
  readonly port: number;
  /** Path prefix from the upstream URL ('' when none), prepended to forwarded paths. */
  readonly basePath: string;
  /** Connect here instead of hostname:port: the control plane's service socket (src/services/remote-service.ts); never from an entry. */
  readonly socketPath?: string;
}

export type LocationKind = 'proxy' | 'service' | 'static';

/**
 * A compiled location. Everything the hot path needs is precomputed here once,
 * when the entry is stored. `runtime` is a slot the data plane fills on first use
 * (upstream group, static handler): the route table itself does no I/O.
 */
export interface CompiledLocation {
  /** Unique per compiled location; identifies it in metrics and websocket bookkeeping. */
  readonly id: number;
  /** Normalized prefix: starts with '/', no trailing '/' except the root '/'. */
  readonly path: string;
  readonly kind: LocationKind;
  readonly spec: LocationSpec;
  /** For kind 'proxy': one or more targets (round-robin). */
  readonly upstreams: readonly UpstreamTarget[];
  readonly service?: ServiceName;
  readonly static?: StaticSpec;
  readonly stripPrefix: boolean;
  /** Per-location timeout, or undefined for the configured default. */
  readonly timeoutMs: number | undefined;
  /** The effective access policy (location's, else host's, else the default for the host kind). */
  readonly access: Access;
  runtime?: unknown;
}

export interface CompiledHost {
  readonly host: string;
  readonly info: HostInfo;
  readonly entry: HostEntry;
  /** Sorted longest path first. */
  readonly locations: readonly CompiledLocation[];
}

export interface RouteMatch {
  readonly host: CompiledHost;
  readonly location: CompiledLocation;
  /** True when the host matched through its `*.parent` wildcard entry. */
  readonly wildcard: boolean;
}
