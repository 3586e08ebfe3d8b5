// The collab relay as a Service (src/services/types.ts; DESIGN.md "Collab
// relay (contract)"). It always runs in the control plane's process: called
// directly with `workers: 1`, reached over the services socket with
// `workers: N` (the upgrade then arrives as plain HTTP, credentials intact).
//
// Admission happens AFTER the upgrade completed, so that every refusal is a
// close code the stock client treats as final (4400 bad room, 4401 no or bad
// token, 4403 no right or foreign Origin); y-websocket 3.x retries HTTP
// refusals and every other close code forever.
//
// One coarse interval runs everything periodic for every room and socket:
// expired credentials (4401), stale awareness states, and unloads after
// collab.unload_grace_ms. Pings (dead peers dropped after one silent
// interval) have their own finer timer: every socket is pinged once per
// collab.ping_interval_ms, but in slices of the sockets every PING_STEP_MS,
// never all at once (issue 6 Speed: pinging 10,000 TLS sockets in one tick
// stopped the event loop for ~400 ms and every update waited behind it).

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { join } from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import type { AccessGate } from '../auth/access-gate.js';
import type { CollabConfig } from '../config/types.js';
import { EdgewayError } from '../errors.js';
import type { Logger } from '../log.js';
import { sendError } from '../proxy/failure.js';
import { ownQuery } from '../proxy/headers.js';
import type { Service, ServiceCall, ServiceDeps } from '../services/types.js';
import type { Tenancy } from '../admin/tenancy.js';
import type { RouteSpec } from '../admin/router.js';
import { CLOSE, originAllowed, roomKey, roomOf } from './admission.js';
import { collabAdminRoutes } from './collab-admin.js';
import { CollabMetrics } from './collab-metrics.js';
import { writeFrame } from './frame.js';
import { Conn, Room, type RoomHost } from './room.js';
import { RoomStore } from './room-store.js';

const kConn = Symbol('edgeway.collabConn');
type ConnSocket = WebSocket & { [kConn]?: Conn };

/** How often the coarse timer runs when the ping interval is long (unloads and expiries need finer steps). */
const MAX_TICK_MS = 1000;
/** How often a slice of the sockets is pinged. */
const PING_STEP_MS = 100;

export class CollabService implements Service, RoomHost {
  readonly rooms = new Map<string, Room>();
  readonly store: RoomStore;
  readonly compactAfter: number;
  readonly #cfg: CollabConfig;
  readonly #domain: string;
  readonly #gate: AccessGate;
  readonly #log: Logger;
  readonly #metrics: CollabMetrics | undefined;
  readonly #wss: WebSocketServer;
  readonly #timer: NodeJS.Timeout;
  /** Sockets by ping slice; slice `#pingTurn` is pinged next. */
  readonly #pingSlices: Set<Conn>[];
  readonly #pingTimer: NodeJS.Timeout;
  #pingTurn = 0;
  #joined = 0;
  #closing = false;

  constructor(deps: ServiceDeps, metrics: CollabMetrics | undefined) {
    this.#cfg = deps.config.collab;
    this.#domain = deps.config.domain;
    this.#gate = deps.gate;
    this.#log = deps.log;
    this.#metrics = metrics;
    this.compactAfter = this.#cfg.compact_after_updates;
    this.store = new RoomStore(join(deps.config.data_dir, 'collab'));
    // No compression (a CPU cost per message and per peer for small binary
    // updates), no client tracking (the rooms hold the sockets).
    this.#wss = new WebSocketServer({ noServer: true, maxPayload: this.#cfg.max_payload_bytes, perMessageDeflate: false, clientTracking: false });
    this.#timer = setInterval(tick, Math.min(MAX_TICK_MS, this.#cfg.ping_interval_ms), this);
    this.#timer.unref();
    const slices = Math.max(1, Math.round(this.#cfg.ping_interval_ms / PING_STEP_MS));
    this.#pingSlices = Array.from({ length: slices }, () => new Set<Conn>());
    this.#pingTimer = setInterval(pingSlice, this.#cfg.ping_interval_ms / slices, this);
    this.#pingTimer.unref();
  }

  request(req: IncomingMessage, res: ServerResponse, _call: ServiceCall): void {
    sendError(req, res, 'COLLAB_UPGRADE_REQUIRED');
  }

  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, call: ServiceCall): void {
    if (this.#closing) {
      socket.destroy();
      return;
    }
    try {
      this.#wss.handleUpgrade(req, socket, head, (ws) => this.#admit(ws, req, call));
    } catch {
      socket.destroy();
    }
  }

  /** The upgrade is complete: decide, then join the room or close with a final code. */
  #admit(ws: WebSocket, req: IncomingMessage, call: ServiceCall): void {
    ws.on('error', onSocketError);
    const orgId = call.match.host.info.orgId;
    const room = roomOf(call.subpath);
    if (room === undefined || orgId === undefined) return this.#refuse(ws, CLOSE.BAD_ROOM, 'bad room name');
    if (!originAllowed(req.headers.origin, this.#domain, orgId, call.host)) return this.#refuse(ws, CLOSE.FORBIDDEN, 'origin not allowed');
    const grant = this.#gate.check(req, call.match, room, ownQuery(call.subpath)?.token);
    if (grant === 'unauthorized') return this.#refuse(ws, CLOSE.UNAUTHORIZED, 'unauthorized');
    if (grant === 'forbidden') return this.#refuse(ws, CLOSE.FORBIDDEN, 'forbidden');
    const r = this.roomFor(roomKey(orgId, room));
    const conn = new Conn(ws, r, grant.expMs);
    (ws as ConnSocket)[kConn] = conn;
    ws.on('message', onSocketMessage);
    ws.on('pong', onSocketPong);
    ws.on('close', onSocketClose);
    conn.pingSlice = this.#joined++ % this.#pingSlices.length;
    this.#pingSlices[conn.pingSlice]!.add(conn);
    this.#metrics?.connected();
    r.join(conn);
  }

  #refuse(ws: WebSocket, code: number, reason: string): void {
    this.#metrics?.closed(code);
    ws.close(code, reason);
  }

  /** The loaded room for a key, or a new one that starts loading (its messages wait for the load). */
  roomFor(key: string): Room {
    let r = this.rooms.get(key);
    if (r === undefined) {
      r = new Room(key, this);
      this.rooms.set(key, r);
    }
    return r;
  }

  send(conn: Conn, msg: Uint8Array): void {
    if (this.#writable(conn)) conn.ws.send(msg);
  }

  sendFrame(conn: Conn, frame: Buffer): void {
    if (this.#writable(conn)) writeFrame(conn.ws, frame);
  }

  #writable(conn: Conn): boolean {
    const ws = conn.ws;
    if (ws.readyState !== 1 /* OPEN */) return false;
    // A peer that does not read would make the room buffer for it without
    // bound; close it instead of slowing everyone (issue 6 point 4).
    if (ws.bufferedAmount > this.#cfg.send_buffer_limit_bytes) {
      this.drop(conn, CLOSE.TRY_AGAIN, 'too slow');
      return false;
    }
    return true;
  }

  drop(conn: Conn, code: number, reason: string): void {
    conn.room.leave(conn);
    this.#metrics?.closed(code);
    conn.ws.close(code, reason);
  }

  roomFailed(room: Room, err: unknown): void {
    if (this.rooms.get(room.key) === room) this.rooms.delete(room.key);
    this.#metrics?.storeFailed();
    this.#log.error({ room: room.key, err: err instanceof Error ? err.message : String(err) }, 'collab room store failed: room closed, its sockets closed with 1011');
    for (const c of [...room.conns]) this.drop(c, CLOSE.INTERNAL, 'store failed');
    room.unload();
  }

  updatePersisted(): void {
    this.#metrics?.persisted();
  }

  adminRoutes(tenancy: Tenancy): readonly RouteSpec[] {
    return collabAdminRoutes(this, tenancy);
  }

  /** One pass of the coarse timer. */
  tick(now: number): void {
    for (const room of this.rooms.values()) {
      for (const c of room.conns) if (now >= c.expMs) this.drop(c, CLOSE.UNAUTHORIZED, 'token expired');
      if (room.state === 'ready') room.expireAwareness(now);
      if (room.conns.size === 0 && room.state === 'ready' && now - room.emptySince >= this.#cfg.unload_grace_ms) this.#unload(room);
    }
  }

  /** Pings the next slice of sockets; one that did not answer the previous ping is gone (or never answers). */
  pingSlice(): void {
    const slice = this.#pingSlices[this.#pingTurn]!;
    this.#pingTurn = (this.#pingTurn + 1) % this.#pingSlices.length;
    for (const c of slice) {
      if (c.ws.readyState !== 1 /* OPEN */) continue;
      if (!c.alive) {
        c.room.leave(c);
        this.#metrics?.closed(1006);
        c.ws.terminate();
        continue;
      }
      c.alive = false;
      c.ws.ping();
    }
  }

  /** The socket closed (whoever closed it): out of its ping slice. */
  closed(conn: Conn): void {
    this.#pingSlices[conn.pingSlice]!.delete(conn);
    conn.room.leave(conn);
  }

  /** A final flush (compaction), then out of memory, only when nothing is in flight: never races a load or a write. */
  #unload(room: Room): void {
    if (!room.idle) return;
    if (room.needsCompaction) {
      room.compact();
      return;
    }
    this.rooms.delete(room.key);
    room.unload();
  }

  async close(): Promise<void> {
    this.#closing = true;
    clearInterval(this.#timer);
    clearInterval(this.#pingTimer);
    for (const room of [...this.rooms.values()]) {
      for (const c of [...room.conns]) this.drop(c, CLOSE.GOING_AWAY, 'shutting down');
      if (room.state === 'ready') {
        room.compact();
        await room.whenDurable().catch(() => undefined);
      }
      this.rooms.delete(room.key);
      room.unload();
    }
    this.#wss.close();
    await this.store.close();
  }
}

function tick(svc: CollabService): void {
  svc.tick(Date.now());
}

function pingSlice(svc: CollabService): void {
  svc.pingSlice();
}

// Socket listeners shared by every socket: `this` is the socket, its Conn hangs off it.

function onSocketMessage(this: ConnSocket, data: Buffer, isBinary: boolean): void {
  const conn = this[kConn]!;
  if (isBinary) conn.room.receive(conn, data);
  else conn.room.host.drop(conn, CLOSE.UNSUPPORTED, 'text frames are not part of the protocol');
}

function onSocketPong(this: ConnSocket): void {
  this[kConn]!.alive = true;
}

function onSocketClose(this: ConnSocket): void {
  const conn = this[kConn]!;
  conn.room.host.closed(conn);
}

function onSocketError(): void {
  // ws closes the socket itself (1002/1007/1009) and then emits 'close'.
}

/** Opens the relay (registry.ts): its store is opened first, so a bad data_dir stops the start. */
export async function openCollab(deps: ServiceDeps): Promise<CollabService> {
  let svc: CollabService | undefined;
  const metrics = deps.metrics === undefined ? undefined : new CollabMetrics(deps.metrics, {
    rooms: () => svc?.rooms.size ?? 0,
    connections: () => {
      let n = 0;
      for (const r of svc?.rooms.values() ?? []) n += r.conns.size;
      return n;
    },
  });
  svc = new CollabService(deps, metrics);
  try {
    await svc.store.open();
  } catch (err) {
    await svc.close().catch(() => undefined);
    throw new EdgewayError('STATE_INVALID', `collab rooms under ${deps.config.data_dir}/collab cannot be opened`, { cause: err });
  }
  return svc;
}
