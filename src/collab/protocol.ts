// The y-websocket wire protocol (y-protocols sync + awareness, as the stock
// WebsocketProvider speaks it): one message per binary frame, a varuint type
// first. A message the relay fans out is encoded once, as a whole frame, and
// the same bytes go to every peer (frame.ts; a sync update message, [sync,
// update, varuint length, update], is written there straight into its
// frame).

import * as encoding from 'lib0/encoding';
import * as awarenessProtocol from 'y-protocols/awareness';
import * as Y from 'yjs';

export const MSG_SYNC = 0;
export const MSG_AWARENESS = 1;
export const MSG_AUTH = 2;
export const MSG_QUERY_AWARENESS = 3;

export const SYNC_STEP1 = 0;
export const SYNC_STEP2 = 1;
export const SYNC_UPDATE = 2;

/** Our sync step 1: the room's state vector, so the client sends what we lack (its offline edits). */
export function step1Message(doc: Y.Doc): Uint8Array {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, MSG_SYNC);
  encoding.writeVarUint(e, SYNC_STEP1);
  encoding.writeVarUint8Array(e, Y.encodeStateVector(doc));
  return encoding.toUint8Array(e);
}

/** Sync step 2: what the client lacks, given its state vector (throws on a malformed vector). */
export function step2Message(doc: Y.Doc, clientSv: Uint8Array): Uint8Array {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, MSG_SYNC);
  encoding.writeVarUint(e, SYNC_STEP2);
  encoding.writeVarUint8Array(e, Y.encodeStateAsUpdate(doc, clientSv));
  return encoding.toUint8Array(e);
}

export function awarenessMessage(awareness: awarenessProtocol.Awareness, clients: readonly number[]): Uint8Array {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, MSG_AWARENESS);
  encoding.writeVarUint8Array(e, awarenessProtocol.encodeAwarenessUpdate(awareness, clients as number[]));
  return encoding.toUint8Array(e);
}

/** Thrown for a well-formed message of a kind the protocol does not have (closed with 1003, not 1007). */
export class UnsupportedMessage extends Error {}
