// Websocket upgrades, proxied by ONE http-proxy instance. http-proxy does the
// handshake and pipes the two sockets; this file adds what it lacks: header
// hygiene, an exact path, a handshake timeout, a 502/504 on the raw socket when
// the upstream fails, per-location tracking, and a clean close (a real close
// frame, RFC 6455 §5.5.1) when a route goes away or edgeway stops, and when
// the token that let it in expires (4401 to the client, as the collab relay
// says "bad token"; 1008 policy violation, RFC 6455 §7.4.1, to the upstream).
//
// Expiry needs no timer per socket: websockets wait in buckets keyed by the
// second they expire in, and the one sweep timer empties the buckets whose
// second has passed (so a socket closes at most ~1.5 s after its token's exp,
// never before). Leaving a bucket on close is one Set.delete.
//
// Per connection there is one WsConn; listeners are shared functions that find
// it through a symbol on the socket or request, so nothing closes over state.

import type { ClientRequest, IncomingMessage } from 'node:http';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { LookupFunction } from 'node:net';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import httpProxy from 'http-proxy';
import type { ProxyConfig } from '../config/types.js';
import type { UpstreamTarget } from '../routes/types.js';
import type { ForwardRequest, UpstreamTlsOptions } from './forwarder.js';
import { classifyUpstreamError, sendRawError } from './failure.js';
import { upgradeHeadersInPlace } from './headers.js';
import { FrameCursor, clientCloseFrame, maskedCloseFrame } from './ws-frames.js';

/** After one side has gone (or a close frame was sent), the other gets this long to finish before it is destroyed. */
const LINGER_MS = 5000;
const SWEEP_MS = 500;
/** Close codes for a websocket whose token expired. */
export const EXPIRED_CLIENT_CODE = 4401;
export const EXPIRED_UPSTREAM_CODE = 1008;

const kConn = Symbol('edgeway.wsconn');
type Tagged<T> = T & { [kConn]?: WsConn };

/** One shared options object per upstream origin (http-proxy copies it per call). */
type TargetOptions = httpProxy.ServerOptions;

/** What happens to the bytes of one direction. */
const Flow = {
  /** http-proxy's pipe carries them; we only follow frame boundaries. */
  Pipe: 0,
  /** We forward up to the end of the current frame, then send our close frame. */
  Drain: 1,
  /** Our close frame went out: everything after it is dropped. */
  Discard: 2,
} as const;
type Flow = (typeof Flow)[keyof typeof Flow];

class WsConn {
  locationId: number;
  readonly path: string;
  readonly timeoutMs: number;
  readonly client: Tagged<Duplex>;
  upstream: Tagged<Duplex> | null = null;
  proxyReq: ClientRequest | null = null;
  upgraded = false;
  /** The upstream answered without upgrading; http-proxy relays that response. */
  responded = false;
  tracked = true;
  clientClosed = false;
  upstreamClosed = false;
  lingerUntil = 0;
  readonly toUpstream = new FrameCursor();
  readonly toClient = new FrameCursor();
  upFlow: Flow = Flow.Pipe;
  downFlow: Flow = Flow.Pipe;
  closeCode = 1001;
  /** The code sent towards the upstream (differs from closeCode on token expiry). */
  upstreamCloseCode = 1001;
  /** Second (epoch s) whose expiry bucket holds this connection; 0 when none. */
  expiryBucket = 0;
  /** Answered on the raw socket already (error or refusal): later failures only destroy. */
  answered = false;
  /** Route back from the shared listeners. */
  readonly proxy: WebSocketProxy;

  constructor(proxy: WebSocketProxy, client: Duplex, fr: ForwardRequest, locationId: number) {
    this.proxy = proxy;
    this.client = client as Tagged<Duplex>;
    this.path = fr.path;
    this.timeoutMs = fr.timeoutMs;
    this.locationId = locationId;
  }
}

function timeoutError(): Error {
  return Object.assign(new Error('the upstream did not answer the upgrade in time'), { code: 'ETIMEDOUT' });
}

// ---- shared listeners (`this` is the emitter) ----
function onClientClose(this: Tagged<Duplex>): void {
  this[kConn]?.proxy.sideClosed(this[kConn], true);
}
function onUpstreamClose(this: Tagged<Duplex>): void {
  this[kConn]?.proxy.sideClosed(this[kConn], false);
}
function onClientData(this: Tagged<Duplex>, chunk: Buffer): void {
  const c = this[kConn];
  if (c !== undefined) c.proxy.relay(c, chunk, true);
}
function onUpstreamData(this: Tagged<Duplex>, chunk: Buffer): void {
  const c = this[kConn];
  if (c !== undefined) c.proxy.relay(c, chunk, false);
}
function onSocketError(this: Duplex): void {
  this.destroy();
}
function onHandshakeTimeout(this: ClientRequest): void {
  this.destroy(timeoutError());
}
function onProxyResponse(this: Tagged<ClientRequest>): void {
  const c = this[kConn];
  if (c !== undefined) c.responded = true;
}
function onProxyUpgrade(this: Tagged<ClientRequest>, _res: IncomingMessage, socket: Duplex): void {
  const c = this[kConn];
  if (c !== undefined) c.proxy.upgraded(c, socket);
}
function onProxyReqWs(proxyReq: ClientRequest, req: Tagged<IncomingMessage>): void {
  const c = req[kConn];
  if (c === undefined) return;
  c.proxyReq = proxyReq;
  // http-proxy collapses '//' in paths (urlJoin); the path goes out exactly as routed.
  proxyReq.path = c.path;
  (proxyReq as Tagged<ClientRequest>)[kConn] = c;
  // Registered before http-proxy's own listeners, so these run first.
  proxyReq.on('response', onProxyResponse);
  proxyReq.on('upgrade', onProxyUpgrade);
  proxyReq.setTimeout(c.timeoutMs);
  proxyReq.on('timeout', onHandshakeTimeout);
}
function onProxyError(err: Error, req: Tagged<IncomingMessage>): void {
  const c = req[kConn];
  if (c !== undefined) c.proxy.failed(c, err);
}
function followFrames(c: WsConn): void {
  if (c.upstream === null || c.upstream.destroyed) return;
  c.client.on('data', onClientData);
  c.upstream.on('data', onUpstreamData);
}
function sweep(p: WebSocketProxy): void {
  p.sweep(Date.now());
}

export class WebSocketProxy {
  private readonly proxy: httpProxy;
  private readonly tls: UpstreamTlsOptions;
  private readonly targets = new Map<string, TargetOptions>();
  private readonly byLocation = new Map<number, Set<WsConn>>();
  private readonly lingering = new Set<WsConn>();
  /** Expiry buckets: second (epoch s, rounded up from the token's exp) → connections. */
  private readonly expiring = new Map<number, Set<WsConn>>();
  /** The last second whose bucket was emptied. */
  private expirySecond = Math.floor(Date.now() / 1000);
  private count = 0;
  private closed = false;
  private readonly timer: NodeJS.Timeout;
  private readonly lookup: LookupFunction | undefined;
  /** Options per origin for guarded (admin API) upstreams; `targets` holds the trusted ones. */
  private readonly guardedTargets = new Map<string, TargetOptions>();

  /**
   * `lookup`: the connect-time SSRF guard (src/proxy/guarded-lookup.ts) used
   * for upstreams registered through the admin API; routes/ entries are the
   * operator's own configuration and connect without it (as the forwarder does).
   */
  constructor(_cfg: ProxyConfig, tls: UpstreamTlsOptions = {}, lookup?: LookupFunction) {
    this.tls = tls;
    this.lookup = lookup;
    // xfwd off: X-Forwarded-* are replaced, never appended (headers.ts).
    this.proxy = httpProxy.createProxyServer({ ws: true, xfwd: false, changeOrigin: false });
    this.proxy.on('proxyReqWs', onProxyReqWs);
    this.proxy.on('error', () => {}); // every call passes a callback; this only keeps EE3 from throwing
    this.timer = setInterval(sweep, SWEEP_MS, this);
    this.timer.unref();
  }

  /** Open proxied websockets, including upgrades still waiting for the upstream. */
  get size(): number {
    return this.count;
  }

  /** `expiresAt`: epoch ms when the credential that let this upgrade in ends (Infinity: never). */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, fr: ForwardRequest, locationId: number, expiresAt = Infinity): void {
    socket.on('error', onSocketError);
    if (socket.destroyed) return; // the client left while routing: 'close' already fired
    if (this.closed) return sendRawError(socket, 'SHUTTING_DOWN');
    const up = req.headers.upgrade;
    if (req.method !== 'GET' || up === undefined || up.toLowerCase() !== 'websocket') {
      return sendRawError(socket, 'BAD_REQUEST');
    }
    const c = new WsConn(this, socket, fr, locationId);
    c.client[kConn] = c;
    (req as Tagged<IncomingMessage>)[kConn] = c;
    socket.on('close', onClientClose);
    let set = this.byLocation.get(locationId);
    if (set === undefined) this.byLocation.set(locationId, (set = new Set()));
    set.add(c);
    this.count++;
    if (expiresAt !== Infinity) this.expireAt(c, expiresAt);
    upgradeHeadersInPlace(req, fr);
    const target = fr.group.pick(fr.group.size > 1 ? Date.now() : 0);
    try {
      this.proxy.ws(req, socket, head, this.optionsFor(target, fr.trusted === true), onProxyError);
    } catch (err) {
      this.failed(c, err);
    }
  }

  private optionsFor(t: UpstreamTarget, trusted: boolean): TargetOptions {
    const lookup = trusted ? undefined : this.lookup;
    const cache = lookup === undefined ? this.targets : this.guardedTargets;
    let o = cache.get(t.origin);
    if (o !== undefined) return o;
    // Node's http client wants IPv6 literals without brackets.
    const hostname = t.hostname.startsWith('[') ? t.hostname.slice(1, -1) : t.hostname;
    o = { target: { protocol: t.protocol, host: hostname, hostname, port: t.port, path: '', ...(t.socketPath !== undefined ? { socketPath: t.socketPath } : {}) } };
    if (t.protocol === 'https:') {
      // SNI and verification name the upstream, not the client's Host (which
      // Node would otherwise use); IP literals get no SNI (RFC 6066 §3).
      o.agent = new HttpsAgent({
        keepAlive: false,
        servername: isIP(hostname) === 0 ? hostname : '',
        rejectUnauthorized: this.tls.rejectUnauthorized ?? true,
        ...(this.tls.ca !== undefined ? { ca: this.tls.ca as string | Buffer | (string | Buffer)[] } : {}),
        ...(lookup !== undefined ? { lookup } : {}),
      });
      o.secure = this.tls.rejectUnauthorized ?? true;
    } else if (lookup !== undefined) {
      o.agent = new HttpAgent({ keepAlive: false, lookup });
    }
    cache.set(t.origin, o);
    return o;
  }

  /** @internal the upstream accepted: http-proxy writes the 101 and pipes right after this. */
  upgraded(c: WsConn, socket: Duplex): void {
    c.upgraded = true;
    c.upstream = socket as Tagged<Duplex>;
    c.upstream[kConn] = c;
    socket.on('close', onUpstreamClose);
    if (c.clientClosed || !c.tracked) {
      socket.destroy();
      return;
    }
    // Frame boundaries are followed both ways so a close frame can be injected
    // between frames, never inside one. Attached on the next tick: right after
    // this listener http-proxy unshifts the bytes the upstream sent with its
    // 101 and only then pipes; a 'data' listener already here made that
    // unshift emit synchronously to it alone, and those bytes never reached
    // the client (a server that speaks first: the collab relay's sync step 1,
    // or its close code right after the upgrade).
    process.nextTick(followFrames, c);
  }

  /** @internal the upstream refused, timed out or failed. */
  failed(c: WsConn, err: unknown): void {
    if (c.answered) return;
    c.answered = true;
    if (!c.upgraded && !c.responded && !c.clientClosed) {
      sendRawError(c.client, classifyUpstreamError(err));
      this.linger(c);
      return;
    }
    c.client.destroy();
    c.upstream?.destroy();
  }

  /** @internal bytes seen on one side; only after a close was requested do we forward them ourselves. */
  relay(c: WsConn, chunk: Buffer, fromClient: boolean): void {
    const cursor = fromClient ? c.toUpstream : c.toClient;
    const flow = fromClient ? c.upFlow : c.downFlow;
    if (flow === Flow.Pipe) {
      cursor.scan(chunk, false);
      return;
    }
    if (flow === Flow.Discard) return;
    const k = cursor.scan(chunk, true);
    const dst = fromClient ? c.upstream : c.client;
    if (dst === null || dst.destroyed) return;
    if (k > 0) dst.write(k === chunk.length ? chunk : chunk.subarray(0, k));
    if (cursor.atBoundary) this.sendClose(c, fromClient);
  }

  /** @internal one side closed: untrack, and let the other finish what it was sending. */
  sideClosed(c: WsConn, client: boolean): void {
    if (client) c.clientClosed = true;
    else c.upstreamClosed = true;
    this.untrack(c);
    if (client && !c.upgraded) c.proxyReq?.destroy();
    const other = client ? c.upstream : c.client;
    if (other === null || other.destroyed) {
      this.lingering.delete(c);
      return;
    }
    // end(), not destroy(): destroying with unread input sends RST, which can
    // drop the close frame we just relayed before the peer reads it.
    other.end();
    this.linger(c);
  }

  private expireAt(c: WsConn, expiresAt: number): void {
    // Rounded up: never before exp. A second already swept goes into the next one.
    const second = Math.max(Math.ceil(expiresAt / 1000), this.expirySecond + 1);
    let bucket = this.expiring.get(second);
    if (bucket === undefined) this.expiring.set(second, (bucket = new Set()));
    bucket.add(c);
    c.expiryBucket = second;
  }

  private untrack(c: WsConn): void {
    if (!c.tracked) return;
    c.tracked = false;
    this.count--;
    if (c.expiryBucket !== 0) {
      const bucket = this.expiring.get(c.expiryBucket);
      if (bucket !== undefined && bucket.delete(c) && bucket.size === 0) this.expiring.delete(c.expiryBucket);
      c.expiryBucket = 0;
    }
    const set = this.byLocation.get(c.locationId);
    if (set !== undefined && set.delete(c) && set.size === 0) this.byLocation.delete(c.locationId);
  }

  private linger(c: WsConn): void {
    if (c.lingerUntil === 0) c.lingerUntil = Date.now() + LINGER_MS;
    this.lingering.add(c);
  }

  /**
   * A location was compiled again unchanged (its host entry was replaced or
   * renewed): its websockets stay open and are tracked under the new id, so
   * a later change to that location still finds and closes them.
   */
  moveLocation(from: number, to: number): void {
    const set = this.byLocation.get(from);
    if (set === undefined || from === to) return;
    this.byLocation.delete(from);
    for (const c of set) c.locationId = to;
    const dest = this.byLocation.get(to);
    if (dest === undefined) this.byLocation.set(to, set);
    else for (const c of set) dest.add(c);
  }

  /** Sends our close frame in one direction once that direction is between frames. */
  private sendClose(c: WsConn, toUpstream: boolean): void {
    const dst = toUpstream ? c.upstream : c.client;
    if (toUpstream) c.upFlow = Flow.Discard;
    else c.downFlow = Flow.Discard;
    if (dst === null || dst.destroyed) return;
    dst.end(toUpstream ? maskedCloseFrame(c.upstreamCloseCode) : clientCloseFrame(c.closeCode));
  }

  closeLocations(ids: ReadonlySet<number> | 'all', code: number): void {
    const victims: WsConn[] = [];
    for (const [id, set] of this.byLocation) {
      if (ids === 'all' || ids.has(id)) for (const c of set) victims.push(c);
    }
    for (const c of victims) this.goAway(c, code);
  }

  private goAway(c: WsConn, code: number, upstreamCode = code): void {
    this.untrack(c);
    if (!c.upgraded || c.upstream === null) {
      // Still in the handshake: answer 503 (401 when the token ran out) unless http-proxy is already relaying a response.
      const wasAnswered = c.answered || c.responded;
      c.answered = true;
      if (wasAnswered) c.client.destroy();
      else sendRawError(c.client, code === EXPIRED_CLIENT_CODE ? 'UNAUTHORIZED' : 'SERVICE_UNAVAILABLE');
      c.proxyReq?.destroy();
      this.linger(c);
      return;
    }
    c.closeCode = code;
    c.upstreamCloseCode = upstreamCode;
    const { client, upstream } = c;
    // Take over from the pipes; bytes of a frame in flight are still forwarded
    // by relay() up to its end.
    upstream.unpipe(client);
    client.unpipe(upstream);
    c.downFlow = Flow.Drain;
    c.upFlow = Flow.Drain;
    if (c.toClient.atBoundary) this.sendClose(c, false);
    if (c.toUpstream.atBoundary) this.sendClose(c, true);
    // unpipe() paused them; keep reading so relay() sees the rest.
    upstream.resume();
    client.resume();
    this.linger(c);
  }

  /** @internal closes websockets whose token expired, and destroys whatever outlived its linger time. */
  sweep(now: number): void {
    const second = Math.floor(now / 1000);
    if (second > this.expirySecond && this.expiring.size > 0) this.expire(second);
    this.expirySecond = Math.max(this.expirySecond, second);
    for (const c of this.lingering) {
      if (c.client.destroyed && (c.upstream === null || c.upstream.destroyed)) {
        this.lingering.delete(c);
        continue;
      }
      if (c.lingerUntil > now) continue;
      this.lingering.delete(c);
      c.client.destroy();
      c.upstream?.destroy();
      c.proxyReq?.destroy();
    }
  }

  /** Empties the buckets of every second up to `second`. */
  private expire(second: number): void {
    const due: Set<WsConn>[] = [];
    if (second - this.expirySecond <= this.expiring.size) {
      for (let s = this.expirySecond + 1; s <= second; s++) {
        const b = this.expiring.get(s);
        if (b !== undefined) due.push(b);
      }
    } else {
      // A long gap (the loop was blocked, the clock jumped): walk the buckets instead of the seconds.
      for (const [s, b] of this.expiring) if (s <= second) due.push(b);
    }
    for (const b of due) for (const c of b) this.goAway(c, EXPIRED_CLIENT_CODE, EXPIRED_UPSTREAM_CODE);
  }

  /** Hard stop: destroys every websocket and upgrade in progress at once. */
  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    for (const set of this.byLocation.values()) {
      for (const c of set) {
        c.client.destroy();
        c.upstream?.destroy();
        c.proxyReq?.destroy();
      }
    }
    for (const c of this.lingering) {
      c.client.destroy();
      c.upstream?.destroy();
    }
    this.lingering.clear();
    this.proxy.close();
  }
}
