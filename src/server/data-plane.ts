// The data plane's request path: Host → route table → location → forwarder,
// static files or a service. Everything a route needs is compiled when it is
// stored; per-location runtime objects (upstream group, static handler) are
// built on first use and kept on the location, so a request does lookups and
// one small object allocation, not set-up work.
//
// Access is decided between routing and the first byte to the upstream (or
// the first file byte): the gate answers a refusal itself. Then edgeway's own
// query parameters leave the target, and its cookies (and the Authorization
// header it accepted) leave the headers (src/proxy/headers.ts), on every
// location, public ones included. Service locations (collab, oauth) apply
// access themselves.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { Config } from '../config/types.js';
import type { AccessGate, Grant } from '../auth/access-gate.js';
import type { ErrorCode } from '../errors.js';
import type { RequestView } from '../http1/request-view.js';
import { normalizeHost } from '../hosts/hostname.js';
import { sendError, sendRawError } from '../proxy/failure.js';
import type { Forwarder, ForwardRequest } from '../proxy/forwarder.js';
import { UpstreamGroup } from '../proxy/upstream-group.js';
import type { WebSocketProxy } from '../proxy/websocket.js';
import { ownQuery } from '../proxy/headers.js';
import type { RequestObserver } from '../observe/types.js';
import { canonicalTarget } from '../routes/canonical-path.js';
import { stripLocationPrefix } from '../routes/compile.js';
import type { CompiledLocation, RouteMatch } from '../routes/types.js';
import type { ServiceCall, ServiceSet } from '../services/types.js';
import { StaticHandler } from '../static/serve.js';
import type { DataState } from './data-state.js';


export class DataPlane {
  /** Set on SIGTERM: responses close their connection instead of keeping it alive. */
  draining = false;
  /** Metrics, access log and activity (src/observe); set by whoever wires them. */
  observer: RequestObserver | undefined;
  /** collab and oauth: the control plane's own objects in one process, remote-service.ts in a worker. */
  services: ServiceSet = {};
  private readonly proxyCfg: Config['proxy'];

  constructor(
    private readonly state: DataState,
    private readonly forwarder: Forwarder,
    private readonly ws: WebSocketProxy,
    cfg: Config,
    private readonly gate: AccessGate,
  ) {
    this.proxyCfg = cfg.proxy;
    this.onRequest = this.onRequest.bind(this);
    this.onUpgrade = this.onUpgrade.bind(this);
    state.onRetired = (ids) => ws.closeLocations(ids, 1001);
    state.onMoved = (from, to) => ws.moveLocation(from, to);
    gate.onFailure = (reason) => this.observer?.authFailure(reason);
  }

  onRequest(req: IncomingMessage, res: ServerResponse): void {
    if (this.draining) res.shouldKeepAlive = false;
    const r = this.route(req);
    if (typeof r === 'string') {
      this.observer?.request(req, res, undefined, undefined);
      return sendError(req, res, r);
    }
    const loc = r.location;
    this.observer?.request(req, res, r.host, loc);
    if (loc.kind === 'service') {
      // Services apply the location's access themselves (types.ts).
      const svc = this.services[loc.service!];
      if (svc === undefined) return sendError(req, res, 'SERVICE_UNAVAILABLE');
      return svc.request(req, res, serviceCall(req, r));
    }
    const own = ownQuery(req.url as string);
    const grant = this.gate.request(req, res, r, own);
    if (grant === undefined) return;
    if (own !== undefined) req.url = own.url;
    switch (loc.kind) {
      case 'proxy':
        return this.forwarder.forward(req, res, this.forwardRequest(req, loc, grant, r.host.entry.source === 'static'));
      case 'static': {
        const url = req.url as string;
        const q = url.indexOf('?');
        const path = q === -1 ? url : url.slice(0, q);
        const handler = (loc.runtime ??= new StaticHandler({ root: loc.static!.root, spa: loc.static!.spa === true })) as StaticHandler;
        return handler.serve(req, res, loc.path === '/' ? path : stripLocationPrefix(loc, path));
      }
    }
  }

  onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const r = this.route(req);
    if (typeof r === 'string') {
      this.observer?.upgrade(req, socket, undefined, undefined);
      return sendRawError(socket, r);
    }
    if (r.location.kind === 'service' && !this.draining) {
      const svc = this.services[r.location.service!];
      this.observer?.upgrade(req, socket, r.host, svc === undefined ? undefined : r.location);
      if (svc === undefined) return sendRawError(socket, 'SERVICE_UNAVAILABLE');
      return svc.upgrade(req, socket, head, serviceCall(req, r));
    }
    if (r.location.kind !== 'proxy' || this.draining) {
      this.observer?.upgrade(req, socket, r.host, undefined);
      return sendRawError(socket, this.draining ? 'SHUTTING_DOWN' : 'SERVICE_UNAVAILABLE');
    }
    const own = ownQuery(req.url as string);
    const grant = this.gate.upgrade(req, socket, r, own);
    if (grant === undefined) {
      this.observer?.upgrade(req, socket, r.host, undefined);
      return;
    }
    if (own !== undefined) req.url = own.url;
    this.observer?.upgrade(req, socket, r.host, r.location);
    this.ws.upgrade(req, socket, head, this.forwardRequest(req, r.location, grant, r.host.entry.source === 'static'), r.location.id, grant.expMs);
  }

  /**
   * The fast lane's question (src/server/fast-lane.ts, issue 4): what to
   * forward when this request can be proxied as it is (a proxy location on a
   * plain-HTTP upstream, access granted without an answer of edgeway's own,
   * nothing of edgeway's in the query), else undefined, and node:http serves
   * it through onRequest with every answer and count. Decided by the same
   * route() and forwardRequest() as onRequest, never a copy of them.
   */
  plainForward(req: RequestView): { readonly match: RouteMatch; readonly fr: ForwardRequest } | undefined {
    if (this.draining) return undefined;
    const r = this.route(req);
    if (typeof r === 'string' || r.location.kind !== 'proxy' || ownQuery(req.url as string) !== undefined) return undefined;
    // An https upstream goes to node:http before the access check, not after it (which would judge it twice).
    if (!this.groupOf(r.location).plain) return undefined;
    const grant = this.gate.grantAsIs(req, r);
    if (grant === undefined) return undefined;
    return { match: r, fr: this.forwardRequest(req, r.location, grant, r.host.entry.source === 'static') };
  }

  /** The route for a request, or the error code that answers it. */
  private route(req: RequestView): RouteMatch | ErrorCode {
    const raw = req.url;
    // Only origin-form targets (RFC 9112 §3.2.1): an absolute-form target would
    // let the request line disagree with Host about where it goes.
    if (raw === undefined || raw.charCodeAt(0) !== 47 /* '/' */) return 'BAD_REQUEST';
    // Match and forward the canonical path, so no spelling of a path reaches a
    // location its meaning does not name. A path that climbs above the root or
    // holds a broken escape names nothing: 404.
    const url = canonicalTarget(raw);
    if (url === undefined) return 'NOT_FOUND';
    if (url !== raw) req.url = url;
    const host = normalizeHost(req.headers.host);
    if (host === undefined) return 'BAD_HOST';
    const m = this.state.table.match(host, url);
    if (m === undefined) return this.state.table.lookupHost(host) ? 'NOT_FOUND' : 'HOST_NOT_FOUND';
    // 421 only when the TLS name is routed to a different entry than the Host
    // (RFC 9110 §15.5.20); unrouted or absent SNI got the fallback and Host decides.
    const sni = req.socket.servername;
    if (typeof sni === 'string' && sni !== host) {
      const s = this.state.table.lookupHost(sni.toLowerCase());
      if (s !== undefined && s.host !== m.host) return 'MISDIRECTED';
    }
    return m;
  }

  /** The location's upstream group, built at its first request and kept on the compiled location. */
  private groupOf(loc: CompiledLocation): UpstreamGroup {
    return (loc.runtime ??= new UpstreamGroup(loc.upstreams, this.proxyCfg)) as UpstreamGroup;
  }

  /** `trusted`: a routes/ entry, whose upstream names skip the connect-time SSRF guard. */
  private forwardRequest(req: RequestView, loc: CompiledLocation, grant: Grant, trusted: boolean): ForwardRequest {
    const group = this.groupOf(loc);
    const url = req.url as string;
    let path = loc.stripPrefix ? stripLocationPrefix(loc, url) : url;
    // An upstream URL with a path (`http://10.0.0.5:8080/app`) is a prefix for
    // every forwarded path; validation gives all upstreams of a location one base.
    const base = loc.upstreams[0]!.basePath;
    if (base !== '') path = base + path;
    return {
      group,
      path,
      timeoutMs: loc.timeoutMs ?? this.proxyCfg.timeout_ms,
      clientIp: req.socket.remoteAddress ?? '',
      proto: req.socket.encrypted === true ? 'https' : 'http',
      host: req.headers.host as string,
      dropAuthorization: grant.viaAuthorization,
      trusted,
    };
  }
}

/** What a service is handed: the route, the target after the location's prefix, who asks. */
export function serviceCall(req: IncomingMessage, m: RouteMatch, clientIp = req.socket.remoteAddress ?? ''): ServiceCall {
  const url = req.url as string;
  return { match: m, subpath: stripLocationPrefix(m.location, url), clientIp, host: req.headers.host as string };
}
