// The public listeners: HTTPS (the data plane) and plain HTTP (redirects).
// Limits that keep the listener alive under abuse are set here once:
// slowloris (head and handshake timeouts), oversized heads (431 from the
// parser), idle sockets, and strict parsing (Node's llhttp without the
// lenient flags rejects CL+TE, duplicate Content-Length and obs-fold).

import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Config, ListenAddress } from '../config/types.js';
import { normalizeHost } from '../hosts/hostname.js';
import { sendError, sendRawError } from '../proxy/failure.js';
import type { CertStore } from '../tls/cert-store.js';
import { tlsServerOptions } from '../tls/server-options.js';
import type { DataPlane } from './data-plane.js';

export function serverLimits(cfg: Config): http.ServerOptions {
  const l = cfg.limits;
  // Node requires headersTimeout <= requestTimeout when the latter is set.
  const headersTimeout = l.request_timeout_ms > 0 ? Math.min(l.header_timeout_ms, l.request_timeout_ms) : l.header_timeout_ms;
  return {
    headersTimeout,
    requestTimeout: l.request_timeout_ms,
    keepAliveTimeout: l.keepalive_timeout_ms,
    maxHeaderSize: l.max_header_bytes,
    requireHostHeader: true,
    insecureHTTPParser: false,
    noDelay: true,
    // Checks headersTimeout/requestTimeout for every connection from one timer.
    connectionsCheckingInterval: Math.min(1000, Math.max(100, Math.floor(headersTimeout / 4))),
  };
}

export function createHttpsServer(cfg: Config, plane: DataPlane, certs: CertStore, ticketKeys: Buffer): https.Server {
  const server = https.createServer(
    {
      ...tlsServerOptions(certs, ticketKeys),
      ...serverLimits(cfg),
      // A TLS handshake that dribbles is slowloris too.
      handshakeTimeout: cfg.limits.header_timeout_ms,
    },
    plane.onRequest,
  );
  server.on('upgrade', plane.onUpgrade);
  server.on('connect', refuseConnect);
  server.timeout = cfg.limits.idle_timeout_ms;
  return server;
}

/**
 * Plain HTTP answers 308 to the HTTPS origin (308 keeps the method and body,
 * RFC 9110 §15.4.9), except ACME HTTP-01 paths which must stay reachable over
 * HTTP (RFC 8555 §8.3); edgeway itself uses DNS-01, so those are 404 here.
 */
export function createRedirectServer(cfg: Config, httpsPort: number): http.Server {
  // public_port defaults to listen.https's port; when that is 0 (any free
  // port), the port actually bound is the one browsers must be sent to.
  const port = cfg.public_port === 0 ? httpsPort : cfg.public_port;
  const portSuffix = port === 443 ? '' : `:${port}`;
  const server = http.createServer(serverLimits(cfg), (req, res) => {
    const url = req.url ?? '/';
    const host = normalizeHost(req.headers.host);
    if (host === undefined || url.charCodeAt(0) !== 47) return sendError(req, res, 'BAD_HOST');
    if (url.startsWith('/.well-known/acme-challenge/')) return sendError(req, res, 'NOT_FOUND');
    res.writeHead(308, { location: `https://${host}${portSuffix}${url}`, 'content-length': '0' });
    res.end();
  });
  server.on('connect', refuseConnect);
  server.timeout = cfg.limits.idle_timeout_ms;
  return server;
}

/** CONNECT (authority-form) is not for a reverse proxy; without a listener Node resets the socket without a word. */
function refuseConnect(_req: http.IncomingMessage, socket: Duplex): void {
  sendRawError(socket, 'BAD_REQUEST');
}

/** Listens on a TCP `HOST:PORT` or a unix socket; resolves with the bound address for logs and tests. */
export function listen(server: http.Server, addr: ListenAddress): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => {
      server.off('error', reject);
      const a = server.address();
      if (typeof a === 'string') resolve(`unix:${a}`);
      else {
        const ai = a as AddressInfo;
        resolve(ai.family === 'IPv6' ? `[${ai.address}]:${ai.port}` : `${ai.address}:${ai.port}`);
      }
    };
    if (addr.kind === 'unix') server.listen(addr.path, done);
    else server.listen(addr.port, addr.host, done);
  });
}
