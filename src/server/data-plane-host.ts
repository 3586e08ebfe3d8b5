// Everything one data-plane process runs: the forwarder, the websocket proxy,
// the request handler and the two public listeners. Used as is by the
// single-process appliance and by each cluster worker.
//
// Each data plane verifies tokens itself (its own TokenVerifier and caches),
// with the JWT key the control plane loaded (or created) before it, and signs
// sessions with `data_dir/session.key`, created atomically by whichever
// process comes first, so every worker shares one key across restarts.

import type http from 'node:http';
import { AccessGate } from '../auth/access-gate.js';
import { FailLimiter } from '../auth/fail-limiter.js';
import { TokenVerifier } from '../auth/jwt.js';
import { loadJwtKeys } from '../auth/keys.js';
import { SessionCookies, loadSessionKey } from '../auth/session-cookie.js';
import type { Config } from '../config/types.js';
import type { Logger } from '../log.js';
import type { Forwarder } from '../proxy/forwarder.js';
import { LeanForwarder } from '../proxy/lean-forwarder.js';
import { UndiciForwarder } from '../proxy/undici-forwarder.js';
import { AddressPolicy } from '../proxy/address-policy.js';
import { guardedLookup } from '../proxy/guarded-lookup.js';
import { WebSocketProxy } from '../proxy/websocket.js';
import { DataPlane } from './data-plane.js';
import type { DataState } from './data-state.js';
import { drainServers } from './drain.js';
import { FastLane } from './fast-lane.js';
import { createHttpsServer, createRedirectServer, listen, serverLimits } from './listeners.js';
import { refreshDefaultContext } from '../tls/server-options.js';

export interface DataPlaneHost {
  readonly plane: DataPlane;
  readonly forwarder: Forwarder;
  readonly ws: WebSocketProxy;
  readonly gate: AccessGate;
  readonly servers: readonly http.Server[];
  /** Bound addresses, e.g. `{ https: '127.0.0.1:8443', http: '127.0.0.1:8080' }`. */
  readonly addresses: { readonly https: string; readonly http: string };
  /** Stops accepting, drains within the configured deadline, closes upstream pools. */
  drain(): Promise<boolean>;
  /** Applies the reloadable limits of a new configuration to the running listeners. */
  applyLimits(cfg: Config): void;
}

export async function startDataPlane(cfg: Config, state: DataState, ticketKeys: Buffer, log: Logger): Promise<DataPlaneHost> {
  const verifier = new TokenVerifier(await loadJwtKeys(cfg), cfg.auth.jwt);
  const sessions = new SessionCookies(await loadSessionKey(cfg.data_dir), cfg.auth.session_ttl_s);
  const gate = new AccessGate(cfg, verifier, sessions, new FailLimiter(cfg.auth.fail_limit));
  // Upstream names of API entries are resolved through the SSRF guard at every connect.
  // One connect-time SSRF guard for HTTP and websockets alike (issue 3 point 3).
  const lookup = guardedLookup(new AddressPolicy(cfg.admin.allowed_upstreams));
  const forwarder: Forwarder = cfg.proxy.forwarder === 'undici' ? new UndiciForwarder(cfg.proxy, {}, lookup) : new LeanForwarder(cfg.proxy, {}, lookup);
  const ws = new WebSocketProxy(cfg.proxy, {}, lookup);
  const plane = new DataPlane(state, forwarder, ws, cfg, gate);
  const httpsServer = createHttpsServer(cfg, plane, state.certs, ticketKeys);
  const lane = forwarder instanceof LeanForwarder && cfg.proxy.fast_lane ? new FastLane(httpsServer, plane, forwarder, cfg) : undefined;

  state.onFallback = () => refreshDefaultContext(httpsServer, state.certs, ticketKeys);
  httpsServer.on('tlsClientError', (err) => log.debug({ err: err.message }, 'TLS handshake failed'));
  const httpsAddress = await listen(httpsServer, cfg.listen.https);
  const redirect = createRedirectServer(cfg, Number(httpsAddress.slice(httpsAddress.lastIndexOf(':') + 1)));
  const servers = [httpsServer, redirect];
  const addresses = { https: httpsAddress, http: await listen(redirect, cfg.listen.http) };
  let draining: Promise<boolean> | undefined;
  return {
    plane,
    forwarder,
    ws,
    gate,
    servers,
    addresses,
    drain(): Promise<boolean> {
      draining ??= (async () => {
        plane.draining = true;
        ws.closeLocations('all', 1001);
        const clean = await drainServers(servers, cfg.limits.drain_timeout_ms, lane);
        ws.close();
        await forwarder.close();
        return clean;
      })();
      return draining;
    },
    applyLimits(next: Config): void {
      // The same derivation as at start (headersTimeout capped by requestTimeout, as Node requires).
      const l = serverLimits(next);
      for (const s of servers) {
        s.headersTimeout = l.headersTimeout!;
        s.requestTimeout = l.requestTimeout!;
        s.keepAliveTimeout = l.keepAliveTimeout!;
        s.timeout = next.limits.idle_timeout_ms;
      }
    },
  };
}
