// The validated, frozen configuration (DESIGN.md "Configuration (contract)").
// Every key here is documented in config.example.yaml; src/config/validate.ts
// turns the parsed YAML into this shape or fails naming the key.

export type ListenAddress =
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number }
  | { readonly kind: 'unix'; readonly path: string };

export type TlsMode = 'self-signed' | 'acme' | 'files';

export interface AcmeConfig {
  readonly directory_url: string;
  readonly email: string | undefined;
  /** Extra CA bundle to trust for the ACME server (absolute path), e.g. Pebble's. */
  readonly ca_file: string | undefined;
  readonly dns01: {
    readonly provider: 'webhook' | 'exec';
    readonly url: string | undefined;
    readonly command: string | undefined;
    readonly propagation_wait_s: number;
  };
  /** Share of a certificate's lifetime after which renewal starts (0..1). */
  readonly renew_at: number;
  readonly max_names: number;
  // Issue 5: release, batching, retries and order budgets.
  /** An org's wildcard is released this long after its last host is gone. */
  readonly release_after_s: number;
  /** With max_names > 1, orgs registered within this many ms share one order. */
  readonly batch_wait_ms: number;
  /** Failed orders retry after retry_min_s, doubling up to retry_max_s. */
  readonly retry_min_s: number;
  readonly retry_max_s: number;
  /** Budgets kept in data_dir/acme/ledger.json (Let's Encrypt: 50 certs per registered domain per week, 300 new orders per account per 3 h). */
  readonly budget: { readonly certificates_per_week: number; readonly orders_per_3h: number };
}

export interface JwtConfig {
  readonly algorithms: readonly string[];
  readonly secret: string | undefined;
  /** Absolute path. */
  readonly secret_file: string | undefined;
  /** Absolute path. */
  readonly public_key_file: string | undefined;
  readonly issuer: string | undefined;
  readonly audience: string | undefined;
}

/** Repeated authentication failures from one address get 429 (fail2ban-like). */
export interface FailLimitConfig {
  /** Refused credentials within window_s that start a ban; 0 turns the limiter off. */
  readonly max_failures: number;
  readonly window_s: number;
  /** How long a banned address gets 429. */
  readonly ban_s: number;
}

export interface LimitsConfig {
  /** Whole request head must arrive within this (slowloris). */
  readonly header_timeout_ms: number;
  /** Whole request (head and body) must arrive within this; 0 = no limit (1 GiB uploads). */
  readonly request_timeout_ms: number;
  /** A socket with no traffic for this long is closed (slow body drip); 0 = never. */
  readonly idle_timeout_ms: number;
  /** Idle keep-alive connections are closed after this. */
  readonly keepalive_timeout_ms: number;
  /** Larger request heads get 431. */
  readonly max_header_bytes: number;
  /** SIGTERM waits at most this long for in-flight requests. */
  readonly drain_timeout_ms: number;
}

export interface ProxyConfig {
  /** Default upstream response timeout when a location sets no `timeout_ms`. */
  readonly timeout_ms: number;
  readonly connect_timeout_ms: number;
  /** Keep-alive connections per upstream origin. */
  readonly pool_connections: number;
  /** Consecutive failures before an upstream of a group is ejected. */
  readonly max_fails: number;
  /** How long an ejected upstream stays out of rotation. */
  readonly eject_ms: number;
  /** HTTP forwarding path for plain-HTTP upstreams (issue 4): `lean` (lean-forwarder.ts) or `undici`. */
  readonly forwarder: 'lean' | 'undici';
  /**
   * With the lean forwarder: plain GET/HEAD requests to plain-HTTP upstreams
   * are served without node:http (src/server/fast-lane.ts, issue 4).
   */
  readonly fast_lane: boolean;
}

/** The OAuth2 authorization server (DESIGN.md "OAuth2 (contract)", src/oauth/). */
export interface OAuthConfig {
  /** Authorization code lifetime; RFC 6749 §4.1.2 recommends at most 10 minutes, issue 7 caps it at 60 s. */
  readonly code_ttl_s: number;
  readonly access_token_ttl_s: number;
  /** Each rotation issues a refresh token valid this long. */
  readonly refresh_token_ttl_s: number;
  /** Longest value of any one OAuth parameter (state, redirect_uri, scope, …). */
  readonly max_param_bytes: number;
  /** Longest form body on token, introspect, revoke, authenticate. */
  readonly max_body_bytes: number;
  /** How often expired codes and tokens are swept from memory and the store compacted. */
  readonly sweep_interval_s: number;
}

/** The collab relay (DESIGN.md "Collab relay", issue 6). */
export interface CollabConfig {
  /** Larger websocket messages close the socket with 1009. */
  readonly max_payload_bytes: number;
  /** A client whose unsent data passes this is closed with 1013 instead of slowing its room. */
  readonly send_buffer_limit_bytes: number;
  /** Websocket ping period; a peer that has not answered the previous ping is dropped. */
  readonly ping_interval_ms: number;
  /** How long a room stays in memory after its last client left (then a final flush and unload). */
  readonly unload_grace_ms: number;
  /** Stored updates of a room after which its log is merged into one record (background). */
  readonly compact_after_updates: number;
}

export interface Config {
  /** Absolute path of the file this came from (for SIGHUP reloads). */
  readonly config_file: string;
  readonly domain: string;
  readonly listen: {
    readonly https: ListenAddress & { kind: 'tcp' };
    readonly http: ListenAddress & { kind: 'tcp' };
    readonly admin: ListenAddress;
  };
  /** Resolved: 'auto' becomes the number of cores. 1 = one process. */
  readonly workers: number;
  /** Absolute paths (relative ones resolve against the config file's directory). */
  readonly data_dir: string;
  readonly routes_dir: string;
  readonly public_port: number;
  readonly tls: {
    readonly mode: TlsMode;
    readonly certs_dir: string;
    /** Leaf lifetime in self-signed mode. */
    readonly leaf_days: number;
    readonly acme: AcmeConfig;
  };
  readonly auth: {
    readonly jwt: JwtConfig;
    readonly login_url: string;
    readonly handoff_max_ttl_s: number;
    readonly session_ttl_s: number;
    readonly fail_limit: FailLimitConfig;
  };
  readonly admin: {
    /** CIDR list. */
    readonly allowed_upstreams: readonly string[];
  };
  readonly limits: LimitsConfig;
  readonly proxy: ProxyConfig;
  readonly oauth: OAuthConfig;
  readonly collab: CollabConfig;
  readonly log: {
    readonly level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
    readonly access_log: boolean;
  };
}
