// `workers: N`: the control plane's end of the services' local socket. A
// worker has already routed, limited and forwarded the request
// (remote-service.ts); here it is routed again against the control plane's
// copy of the table (control/mirror-sink.ts), so a service sees the same
// RouteMatch in both process models. The socket is a unix socket under
// data_dir, mode 0600: only this machine's edgeway processes reach it, which
// is what lets X-Forwarded-For name the client (client-address.ts).

import { chmod, mkdir, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import type { Duplex } from 'node:stream';
import type { Config } from '../config/types.js';
import type { ErrorCode } from '../errors.js';
import { normalizeHost } from '../hosts/hostname.js';
import { sendError, sendRawError } from '../proxy/failure.js';
import { canonicalTarget } from '../routes/canonical-path.js';
import type { RouteTable } from '../routes/table.js';
import type { RouteMatch } from '../routes/types.js';
import { serviceCall } from '../server/data-plane.js';
import { tagClientAddress } from './client-address.js';
import type { Service, ServiceSet } from './types.js';

export function serviceSocketPath(cfg: Config): string {
  return join(cfg.data_dir, 'run', 'services.sock');
}

export interface ServiceSocket {
  readonly path: string;
  close(): Promise<void>;
}

function clientOf(req: IncomingMessage): string {
  const xff = req.headers['x-forwarded-for'];
  const ip = typeof xff === 'string' ? xff : '';
  tagClientAddress(req, ip);
  return ip;
}

function routeOf(req: IncomingMessage, table: RouteTable, services: ServiceSet): { m: RouteMatch; svc: Service } | ErrorCode {
  const url = req.url === undefined ? undefined : canonicalTarget(req.url);
  const host = normalizeHost(req.headers.host);
  if (url === undefined || host === undefined) return 'NOT_FOUND';
  const m = table.match(host, url);
  // The worker matched a service location a moment ago; a miss here means
  // the entry changed in between: answer as the worker would now.
  if (m === undefined) return 'HOST_NOT_FOUND';
  const svc = m.location.kind === 'service' ? services[m.location.service!] : undefined;
  if (svc === undefined) return 'SERVICE_UNAVAILABLE';
  if (url !== req.url) req.url = url;
  return { m, svc };
}

export async function listenServiceSocket(cfg: Config, table: RouteTable, services: ServiceSet): Promise<ServiceSocket> {
  const path = serviceSocketPath(cfg);
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await rm(path, { force: true });
  const server: Server = createServer({ keepAliveTimeout: cfg.limits.keepalive_timeout_ms });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const ip = clientOf(req);
    const r = routeOf(req, table, services);
    if (typeof r === 'string') return sendError(req, res, r);
    r.svc.request(req, res, serviceCall(req, r.m, ip));
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const ip = clientOf(req);
    const r = routeOf(req, table, services);
    if (typeof r === 'string') return sendRawError(socket, r);
    r.svc.upgrade(req, socket, head, serviceCall(req, r.m, ip));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  await chmod(path, 0o600);
  return {
    path,
    async close(): Promise<void> {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
      await rm(path, { force: true });
    },
  };
}
