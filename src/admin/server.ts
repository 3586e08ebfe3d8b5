// The admin API's HTTP server (DESIGN.md "Admin API"): JSON in and out, bearer
// tokens, errors as `{ error, message }`. It is created here and listened on by
// main (loopback TCP or a unix socket). Handlers throw EdgewayErrors; this file
// is the one place that turns them, and anything unexpected, into responses.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Config } from '../config/types.js';
import type { HostStore } from './host-store.js';
import type { TokenClaims, TokenVerifier } from '../auth/jwt.js';
import { EdgewayError, isEdgewayError } from '../errors.js';
import { Router, splitUrl, type HandlerResult, type RouteSpec } from './router.js';
import { hostRoutes } from './hosts-api.js';
import { batchRoute } from './batch-api.js';
import { resolveRoute } from './resolve-api.js';
import { observeRoutes } from './observe-api.js';
import { certsRoute, type CertReporter } from './certs-api.js';
import { Tenancy } from './tenancy.js';
import { UpstreamPolicy } from './upstream-policy.js';
import { mustClose } from './body.js';
import type { ActivitySource, MetricsSource } from '../observe/types.js';
import type { ServiceSet } from '../services/types.js';

export interface AdminDeps {
  readonly config: Config;
  readonly store: HostStore;
  readonly verifier: TokenVerifier;
  /** Epoch ms when the process started (for `uptime_s`). */
  readonly startedAt: number;
  /** GET /v1/activity; answered 503 while absent. */
  readonly activity?: ActivitySource;
  /** GET /metrics; answered 503 while absent. */
  readonly metrics?: MetricsSource;
  /** GET /v1/certs (the control plane); answered 404 while absent. */
  readonly certs?: CertReporter;
  /** Services whose admin rows (oauth clients, collab rooms) join the router. */
  readonly services?: ServiceSet;
}

/** Emitted on the server with the error when a handler fails unexpectedly (500), so main can log it. */
export const ADMIN_ERROR_EVENT = 'adminError';

const BEARER = 'bearer ';

/** The token of an `Authorization: Bearer …` header, or 401. */
function authenticate(req: IncomingMessage, verifier: TokenVerifier): TokenClaims {
  const header = req.headers.authorization;
  if (header === undefined || header.length <= BEARER.length || header.slice(0, BEARER.length).toLowerCase() !== BEARER) {
    throw new EdgewayError('UNAUTHORIZED');
  }
  const claims = verifier.verify(header.slice(BEARER.length).trim());
  if (claims === undefined) throw new EdgewayError('UNAUTHORIZED');
  return claims;
}

function healthRoute(deps: AdminDeps): RouteSpec {
  return {
    method: 'GET',
    path: '/v1/health',
    auth: false,
    handler: () => {
      const h = deps.store.health();
      return {
        status: h.ready ? 200 : 503,
        body: {
          status: h.ready ? 'ok' : 'starting',
          hosts: h.hosts,
          uptime_s: Math.max(0, Math.floor((Date.now() - deps.startedAt) / 1000)),
        },
      };
    },
  };
}

function errorResult(e: unknown, server: Server): HandlerResult {
  if (!isEdgewayError(e) || e.code === 'INTERNAL') {
    server.emit(ADMIN_ERROR_EVENT, e);
    return { status: 500, body: new EdgewayError('INTERNAL').toJSON() };
  }
  if (e.status >= 500) server.emit(ADMIN_ERROR_EVENT, e);
  // RFC 6750: a 401 names the scheme the client should use.
  const headers = e.status === 401 ? { 'www-authenticate': 'Bearer' } : undefined;
  return { status: e.status, body: e.toJSON(), ...(headers === undefined ? {} : { headers }) };
}

function send(req: IncomingMessage, res: ServerResponse, result: HandlerResult): void {
  if (res.headersSent || res.destroyed) return;
  const payload = result.bytes ?? result.text ?? (result.status === 204 || result.body === undefined ? '' : JSON.stringify(result.body));
  res.statusCode = result.status;
  res.setHeader('content-type', 'application/json');
  res.setHeader('cache-control', 'no-store');
  if (result.status !== 204) res.setHeader('content-length', Buffer.byteLength(payload));
  if (result.headers !== undefined) {
    for (const [k, v] of Object.entries(result.headers)) res.setHeader(k, v);
  }
  if (mustClose(req)) {
    // The rest of the body stays unread: answer, then drop the connection
    // rather than read (or buffer) what is left of it.
    res.setHeader('connection', 'close');
    res.once('finish', () => req.socket.destroySoon());
  }
  res.end(payload);
}

export function createAdminServer(deps: AdminDeps): Server {
  const policy = new UpstreamPolicy(deps.config.admin.allowed_upstreams);
  const tenancy = new Tenancy(deps.config.domain);
  const { store } = deps;
  const router = new Router([
    healthRoute(deps),
    ...hostRoutes({ store, policy, tenancy }),
    batchRoute({ store, policy, tenancy }),
    resolveRoute({ store, tenancy, config: deps.config }),
    ...observeRoutes({ tenancy, ...(deps.activity ? { activity: deps.activity } : {}), ...(deps.metrics ? { metrics: deps.metrics } : {}) }),
    ...(deps.certs ? [certsRoute(deps.certs, tenancy)] : []),
    ...Object.values(deps.services ?? {}).flatMap((s) => s.adminRoutes?.(tenancy) ?? []),
  ]);
  const { verifier } = deps;
  const limits = deps.config.limits;

  const server = createServer({
    headersTimeout: limits.header_timeout_ms,
    requestTimeout: limits.request_timeout_ms,
    keepAliveTimeout: limits.keepalive_timeout_ms,
    maxHeaderSize: limits.max_header_bytes,
  });

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let result: HandlerResult;
    try {
      const { pathname, query } = splitUrl(req.url);
      const m = router.match(req.method ?? '', pathname);
      if (m.kind === 'none') {
        throw new EdgewayError('NOT_FOUND');
      } else if (m.kind === 'method') {
        result = { ...errorResult(new EdgewayError('METHOD_NOT_ALLOWED'), server), headers: { allow: m.allow } };
      } else {
        const claims = m.route.auth ? authenticate(req, verifier) : undefined;
        result = await m.route.handler({ req, params: m.params, query, claims });
      }
    } catch (e) {
      result = errorResult(e, server);
    }
    send(req, res, result);
  };

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((e: unknown) => {
      server.emit(ADMIN_ERROR_EVENT, e);
      if (!res.headersSent) res.destroy();
    });
  });
  return server;
}
