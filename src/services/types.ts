// The seam between the data plane and the services edgeway serves itself
// (DESIGN.md "Collab relay", "OAuth2", "Process model"). A service is opened
// once by the control plane (it owns the state: y-leveldb rooms, the OAuth
// store) and reached by the data plane either through a plain function call
// (`workers: 1`) or, with `workers: N`, over the control plane's local socket
// (service-socket.ts), where the same `Service` methods run on a request the
// worker forwarded unchanged. A service sees the route the data plane matched
// and applies the location's `access` itself: collab answers with close codes
// after the upgrade (4401/4403), oauth only guards `authorize`.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Registry } from 'prom-client';
import type { AccessGate } from '../auth/access-gate.js';
import type { RouteSpec } from '../admin/router.js';
import type { Tenancy } from '../admin/tenancy.js';
import type { Config } from '../config/types.js';
import type { Logger } from '../log.js';
import type { CompiledHost, RouteMatch, ServiceName } from '../routes/types.js';

export interface ServiceCall {
  readonly match: RouteMatch;
  /** The request target after the location's prefix: `/room?x` for `/collab/yjs/room?x` on location `/collab/yjs`; '/' when nothing is left. */
  readonly subpath: string;
  /** The client's address (from the socket, or the worker's X-Forwarded-For over the private socket). */
  readonly clientIp: string;
  /** The Host header as received (with its port, if any). */
  readonly host: string;
}

export interface Service {
  /** Answers a plain request on a location of this service. Never throws. */
  request(req: IncomingMessage, res: ServerResponse, call: ServiceCall): void;
  /** Takes over an upgrade on a location of this service. Never throws. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, call: ServiceCall): void;
  /** Rows for the admin API (DESIGN.md "Admin API"), added to the router when it is built. */
  adminRoutes?(tenancy: Tenancy): readonly RouteSpec[];
  /** Flushes state and releases everything; called after the data plane drained. */
  close(): Promise<void>;
}

export type ServiceSet = Partial<Record<ServiceName, Service>>;

/** What a service is opened with (in the control plane's process). */
export interface ServiceDeps {
  readonly config: Config;
  readonly log: Logger;
  /** Identifies users exactly as the data plane does (session cookie, Bearer, upgrade query token). */
  readonly gate: AccessGate;
  /** The host entry currently stored for a name (exact, then its `*.parent`), for checks such as redirect_uri hosts. */
  readonly lookupHost: (host: string) => CompiledHost | undefined;
  /** The registry GET /metrics serves from this process (both process models), for a service's own figures. */
  readonly metrics?: Registry;
}
