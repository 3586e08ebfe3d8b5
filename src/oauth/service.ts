// The `oauth` service (DESIGN.md "OAuth2"): opened once by the control plane,
// which owns the store; reached by the data plane directly (`workers: 1`) or
// over the service socket (src/services). Dispatches the endpoints under the
// location and the RFC 8414 metadata path, turns every failure into an RFC
// error (protocol-errors.ts), and never logs a parameter: failures are
// logged by endpoint and code only.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { sendRawError } from '../proxy/failure.js';
import type { Service, ServiceCall, ServiceDeps } from '../services/types.js';
import { authenticate } from './authenticate.js';
import { authorize } from './authorize.js';
import { ClientAuthenticator } from './client-auth.js';
import { clientRoutes } from './clients-api.js';
import type { OAuthContext } from './context.js';
import { introspect, revoke } from './introspect.js';
import { issuerOf, type Issuer } from './issuer.js';
import { METADATA_PATH, sendMetadata } from './metadata.js';
import { pathOf } from './params.js';
import { OAuthError, asOAuthError, sendErrorPage, sendOAuthError } from './protocol-errors.js';
import { OAuthStore } from './store.js';
import { token } from './token.js';

type Endpoint = (ctx: OAuthContext, req: IncomingMessage, res: ServerResponse, iss: Issuer) => Promise<void> | void;

/** The form-body endpoints: POST only (RFC 6749 §3.2, RFC 7662 §2.1, RFC 7009 §2.1). */
const POSTS: Readonly<Record<string, Endpoint>> = { '/token': token, '/introspect': introspect, '/revoke': revoke };

/** The `Allow` header of a 405 (RFC 9110 §15.5.6); the form endpoints take POST. authorize sets its own. */
const ALLOW: Readonly<Record<string, string>> = { [METADATA_PATH]: 'GET, HEAD', '/authenticate': 'GET, HEAD, POST' };

export async function openOAuth(deps: ServiceDeps): Promise<Service> {
  const store = await OAuthStore.open(deps.config.data_dir, deps.config.oauth, deps.log);
  const ctx: OAuthContext = {
    cfg: deps.config,
    log: deps.log,
    store,
    clients: new ClientAuthenticator(store),
    gate: deps.gate,
    limits: deps.config.oauth,
  };

  const fail = (req: IncomingMessage, res: ServerResponse, endpoint: string, e: unknown, page: boolean): void => {
    const err = asOAuthError(e);
    if (err.code === 'server_error') deps.log.error({ err: e, endpoint }, 'oauth: request failed');
    if (res.headersSent) {
      res.destroy();
      return;
    }
    // A body left unread (refused early or too large) cannot leave a reusable connection.
    if (!req.complete) res.shouldKeepAlive = false;
    if (err.status === 405) res.setHeader('allow', ALLOW[endpoint] ?? 'POST');
    if (page) sendErrorPage(res, err);
    else sendOAuthError(res, err);
  };

  return {
    request(req: IncomingMessage, res: ServerResponse, call: ServiceCall): void {
      const iss = issuerOf(deps.config, call);
      const path = pathOf(req.url as string);
      const endpoint = path === METADATA_PATH ? path : pathOf(call.subpath);
      if (iss === undefined) {
        return fail(req, res, endpoint, new OAuthError('invalid_request', 'no authorization server on this host', 404), false);
      }
      if (endpoint === METADATA_PATH) {
        if (req.method !== 'GET' && req.method !== 'HEAD') return fail(req, res, endpoint, new OAuthError('invalid_request', 'metadata takes GET', 405), false);
        return sendMetadata(res, iss);
      }
      if (endpoint === '/authorize') {
        authorize(ctx, req, res, call, iss).catch((e: unknown) => fail(req, res, endpoint, e, true));
        return;
      }
      if (endpoint === '/authenticate') {
        try {
          return authenticate(ctx, req, res, iss);
        } catch (e) {
          return fail(req, res, endpoint, e, false);
        }
      }
      const post = POSTS[endpoint];
      if (post === undefined) return fail(req, res, endpoint, new OAuthError('invalid_request', 'no such OAuth endpoint', 404), false);
      if (req.method !== 'POST') return fail(req, res, endpoint, new OAuthError('invalid_request', 'this endpoint takes POST', 405), false);
      Promise.resolve(post(ctx, req, res, iss)).catch((e: unknown) => fail(req, res, endpoint, e, false));
    },

    upgrade(_req: IncomingMessage, socket: Duplex): void {
      sendRawError(socket, 'BAD_REQUEST');
    },

    adminRoutes: (tenancy) => clientRoutes(store, tenancy),

    close: () => store.close(),
  };
}
