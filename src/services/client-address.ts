// The client's address for limits and logs. A request that reached the
// control plane's service socket (service-socket.ts) comes from a worker, so
// its socket has no address; the worker's X-Forwarded-For is the client's and
// can be trusted there, because only this machine's workers reach that socket
// (a 0600 unix socket under data_dir). The socket layer tags the request once.

import type { IncomingMessage } from 'node:http';
import type { RequestView } from '../http1/request-view.js';

export const kClientAddress = Symbol('edgeway.clientAddress');

type Tagged = RequestView & { [kClientAddress]?: string };

export function clientAddress(req: RequestView): string {
  return (req as Tagged)[kClientAddress] ?? req.socket.remoteAddress ?? '';
}

export function tagClientAddress(req: IncomingMessage, address: string): void {
  (req as Tagged)[kClientAddress] = address;
}
