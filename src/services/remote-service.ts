// `workers: N`: a worker reaches the services the control plane hosts "like
// any other upstream, over a local socket" (DESIGN.md "Process model"). The
// request goes through the same forwarder and websocket proxy as proxied
// traffic, to the control plane's unix socket, with its target and its
// credentials unchanged (the service authenticates it; keepCredentials) and
// the client's address in X-Forwarded-For, which the socket's side trusts.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { ProxyConfig } from '../config/types.js';
import type { Forwarder, ForwardRequest } from '../proxy/forwarder.js';
import { UpstreamGroup } from '../proxy/upstream-group.js';
import type { WebSocketProxy } from '../proxy/websocket.js';
import type { ServiceName } from '../routes/types.js';
import type { Service, ServiceCall, ServiceSet } from './types.js';

export class RemoteService implements Service {
  readonly #group: UpstreamGroup;

  constructor(
    socketPath: string,
    private readonly forwarder: Forwarder,
    private readonly ws: WebSocketProxy,
    private readonly cfg: ProxyConfig,
  ) {
    // The origin only names the pool; every connection goes to socketPath.
    const target = { origin: 'http://edgeway-services', protocol: 'http:' as const, hostname: 'edgeway-services', port: 80, basePath: '', socketPath };
    this.#group = new UpstreamGroup([target], cfg);
  }

  request(req: IncomingMessage, res: ServerResponse, call: ServiceCall): void {
    this.forwarder.forward(req, res, this.#forwardRequest(req, call));
  }

  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, call: ServiceCall): void {
    this.ws.upgrade(req, socket, head, this.#forwardRequest(req, call), call.match.location.id);
  }

  async close(): Promise<void> {}

  #forwardRequest(req: IncomingMessage, call: ServiceCall): ForwardRequest {
    return {
      group: this.#group,
      path: req.url as string,
      timeoutMs: call.match.location.timeoutMs ?? this.cfg.timeout_ms,
      clientIp: call.clientIp,
      proto: (req.socket as TLSSocket).encrypted ? 'https' : 'http',
      host: call.host,
      trusted: true,
      keepCredentials: true,
    };
  }
}

/** One RemoteService per service the control plane reported it hosts (they share the socket and its pool). */
export function remoteServices(names: readonly ServiceName[], socketPath: string, forwarder: Forwarder, ws: WebSocketProxy, cfg: ProxyConfig): ServiceSet {
  const set: ServiceSet = {};
  const remote = new RemoteService(socketPath, forwarder, ws, cfg);
  for (const n of names) set[n] = remote;
  return set;
}
