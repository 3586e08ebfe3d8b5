// The one seam the data plane's hot path forwards through. The undici
// implementation is first; a leaner one (raw sockets, own parser) can replace
// it later without the caller noticing.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { UpstreamGroup } from './upstream-group.js';

export interface ForwardRequest {
  readonly group: UpstreamGroup;
  /**
   * Path + query exactly as sent upstream: strip_prefix and the upstream URL's
   * basePath are applied by the caller (every target of a location shares one base).
   */
  readonly path: string;
  /** Wait for the response head, and the longest silence between body chunks. */
  readonly timeoutMs: number;
  /** Client address, for X-Forwarded-For. */
  readonly clientIp: string;
  /** Scheme the client used, for X-Forwarded-Proto. */
  readonly proto: 'http' | 'https';
  /** Host header value as received (with port), for X-Forwarded-Host. */
  readonly host: string;
  /**
   * The location comes from routes/ (trusted operator config): its upstream
   * names skip the connect-time SSRF guard (src/proxy/guarded-lookup.ts).
   * Absent means guarded.
   */
  readonly trusted?: boolean;
  /** The Authorization header carried the user token edgeway accepted: it is edgeway's, not forwarded. */
  readonly dropAuthorization?: boolean;
  /**
   * Forward edgeway's own cookies and query parameters untouched: only for
   * the control plane's service socket, whose services authenticate the
   * request themselves (src/services/remote-service.ts).
   */
  readonly keepCredentials?: boolean;
}

export interface Forwarder {
  /** Never throws: failures are answered on `res` through failure.ts. */
  forward(req: IncomingMessage, res: ServerResponse, fr: ForwardRequest): void;
  /** Refuses new requests (503) and closes every upstream connection once in-flight requests finish. */
  close(): Promise<void>;
}

/** TLS settings for https upstreams, shared by the HTTP and websocket paths. */
export interface UpstreamTlsOptions {
  /** Extra trusted CA certificates (PEM); the system store is used otherwise. */
  readonly ca?: string | Buffer | readonly (string | Buffer)[];
  /** Default true. Only for development against self-signed upstreams. */
  readonly rejectUnauthorized?: boolean;
}
