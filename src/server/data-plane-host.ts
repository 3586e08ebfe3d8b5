// Everything one data-plane process runs: the forwarder, the websocket proxy,
// the request handler and the two public listeners. Used as is by the
// single-process appliance and by each cluster worker.

import type http from 'node:http';
import type { Config } from '../config/types.js';
import type { Logger } from '../log.js';
import { UndiciForwarder } from '../proxy/undici-forwarder.js';
import { WebSocketProxy } from '../proxy/websocket.js';
import { DataPlane } from './data-plane.js';
import type { DataState } from './data-state.js';
import { drainServers } from './drain.js';
import { createHttpsServer, createRedirectServer, listen } from './listeners.js';
import { refreshDefaultContext } from '../tls/server-options.js';

export interface DataPlaneHost {
  readonly plane: DataPlane;
  readonly ws: WebSocketProxy;
  readonly servers: readonly http.Server[];
  /** Bound addresses, e.g. `{ https: '127.0.0.1:8443', http: '127.0.0.1:8080' }`. */
  readonly addresses: { readonly https: string; readonly http: string };
  /** Stops accepting, drains within the configured deadline, closes upstream pools. */
  drain(): Promise<boolean>;
  /** Applies the reloadable limits of a new configuration to the running listeners. */
  applyLimits(cfg: Config): void;
}

export async function startDataPlane(cfg: Config, state: DataState, ticketKeys: Buffer, log: Logger): Promise<DataPlaneHost> {
  const forwarder = new UndiciForwarder(cfg.proxy);
  const ws = new WebSocketProxy(cfg.proxy);
  const plane = new DataPlane(state, forwarder, ws, cfg);
  const httpsServer = createHttpsServer(cfg, plane, state.certs, ticketKeys);

  state.onFallback = () => refreshDefaultContext(httpsServer, state.certs, ticketKeys);
  httpsServer.on('tlsClientError', (err) => log.debug({ err: err.message }, 'TLS handshake failed'));
  const httpsAddress = await listen(httpsServer, cfg.listen.https);
  const redirect = createRedirectServer(cfg, Number(httpsAddress.slice(httpsAddress.lastIndexOf(':') + 1)));
  const servers = [httpsServer, redirect];
  const addresses = { https: httpsAddress, http: await listen(redirect, cfg.listen.http) };
  let draining: Promise<boolean> | undefined;
  return {
    plane,
    ws,
    servers,
    addresses,
    drain(): Promise<boolean> {
      draining ??= (async () => {
        plane.draining = true;
        ws.closeLocations('all', 1001);
        const clean = await drainServers(servers, cfg.limits.drain_timeout_ms);
        ws.close();
        await forwarder.close();
        return clean;
      })();
      return draining;
    },
    applyLimits(next: Config): void {
      for (const s of servers) {
        s.headersTimeout = next.limits.header_timeout_ms;
        s.requestTimeout = next.limits.request_timeout_ms;
        s.keepAliveTimeout = next.limits.keepalive_timeout_ms;
        s.timeout = next.limits.idle_timeout_ms;
      }
    },
  };
}
