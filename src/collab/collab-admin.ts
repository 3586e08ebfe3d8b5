// The relay's admin rows (DESIGN.md "Admin API", issue 6 point 5): the loaded
// rooms with their connection counts, and one room's state as a single
// binary Yjs update, read (backup) or merged in (restore). Org tokens see and
// touch only their own org's rooms; platform tokens everything.
//
// A state read answers only what is durable (it waits for the room's pending
// writes) and a merge answers once it is durable, so a backup never holds
// anything a restart could lose and a restore is never acknowledged early.

import * as Y from 'yjs';
import { readBytesBody } from '../admin/body.js';
import type { HandlerResult, RequestContext, RouteSpec } from '../admin/router.js';
import { forbidden, type Tenancy } from '../admin/tenancy.js';
import { EdgewayError, invalidField } from '../errors.js';
import { isRoomName, roomKey } from './admission.js';
import type { Room } from './room.js';
import { checkUpdate } from './update-check.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const BINARY = 'application/octet-stream';
/** Origin of a restore: broadcast to every socket of the room. */
const ADMIN = Symbol('admin');

export interface RoomSource {
  readonly rooms: ReadonlyMap<string, Room>;
  roomFor(key: string): Room;
}

async function readyRoom(src: RoomSource, key: string): Promise<Room> {
  const room = src.roomFor(key);
  await room.ready;
  if (room.state !== 'ready') throw new EdgewayError('COLLAB_STORE_FAILED');
  return room;
}

export function collabAdminRoutes(src: RoomSource, tenancy: Tenancy): RouteSpec[] {
  /** The room key of `{org_id}/{room}`, after the token's right and the names' shape. */
  const keyOf = (ctx: RequestContext): string => {
    const claims = ctx.claims!;
    if (!tenancy.mayUseApi(claims)) throw forbidden();
    const org = ctx.params['org_id']!;
    const room = ctx.params['room']!;
    if (!tenancy.maySeeOrg(claims, org)) throw forbidden('an organization token manages only its own rooms', 'org_id');
    if (!UUID.test(org)) throw invalidField('org_id', 'a lower-case UUID');
    if (!isRoomName(room)) throw invalidField('room', '1-200 characters of A-Z a-z 0-9 . _ ~ -');
    return roomKey(org, room);
  };

  const list = (ctx: RequestContext): HandlerResult => {
    const claims = ctx.claims!;
    if (!tenancy.mayUseApi(claims)) throw forbidden();
    const rooms = [];
    for (const [key, room] of src.rooms) {
      const slash = key.indexOf('/');
      const org = key.slice(0, slash);
      if (!tenancy.maySeeOrg(claims, org)) continue;
      rooms.push({ org_id: org, room: key.slice(slash + 1), connections: room.conns.size, state: room.state });
    }
    rooms.sort((a, b) => (a.org_id === b.org_id ? (a.room < b.room ? -1 : 1) : a.org_id < b.org_id ? -1 : 1));
    return { status: 200, body: { rooms } };
  };

  const getState = async (ctx: RequestContext): Promise<HandlerResult> => {
    const room = await readyRoom(src, keyOf(ctx));
    await durable(room);
    return { status: 200, bytes: Y.encodeStateAsUpdate(room.doc), headers: { 'content-type': BINARY } };
  };

  const putState = async (ctx: RequestContext): Promise<HandlerResult> => {
    const key = keyOf(ctx);
    const body = await readBytesBody(ctx.req, BINARY);
    try {
      checkUpdate(body);
    } catch {
      throw new EdgewayError('COLLAB_INVALID_UPDATE');
    }
    const room = await readyRoom(src, key);
    try {
      // What checkUpdate leaves to Yjs throws here: JSON content or a
      // subdocument's options while structs are read (nothing applied), a
      // struct that contradicts the document while integrating (what went
      // in before it is stored: Room.apply).
      room.apply(body, ADMIN);
    } catch {
      throw new EdgewayError('COLLAB_INVALID_UPDATE');
    }
    await durable(room);
    return { status: 204 };
  };

  return [
    { method: 'GET', path: '/v1/collab/rooms', auth: true, handler: list },
    { method: 'GET', path: '/v1/collab/rooms/{org_id}/{room}/state', auth: true, handler: getState },
    { method: 'PUT', path: '/v1/collab/rooms/{org_id}/{room}/state', auth: true, handler: putState },
  ];
}

async function durable(room: Room): Promise<void> {
  try {
    await room.whenDurable();
  } catch {
    throw new EdgewayError('COLLAB_STORE_FAILED');
  }
}
