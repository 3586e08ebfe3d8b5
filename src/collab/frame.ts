// A message the relay fans out, framed once for every peer (issue 6 Speed).
//
// `ws.send` frames per call: per peer it wraps the Uint8Array in a new
// Buffer, allocates a header, and writes header and payload as two chunks
// (cork, two writes, uncork: a writev, which TLS then copies into one
// buffer). A server frame is not masked, so its bytes are the same for every
// peer: built once here, it is one `socket.write` per peer. This relies on
// two internals of ws 8 (pinned in package.json): `_socket`, and the
// sender's `_queue`, which holds frames only while the sender is busy with
// compression or a Blob — neither of which the relay uses — so that a frame
// written past it can never overtake one it holds. If it ever holds one, the
// frame goes through `ws.send` like any other message.

import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import { MSG_SYNC, SYNC_UPDATE } from './protocol.js';

const FIN_BINARY = 0x82;

/** A frame of `n` payload bytes with its header written; the payload starts at `n` from the end. */
function frameOf(n: number): Buffer {
  const head = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(head + n);
  frame[0] = FIN_BINARY;
  if (n < 126) frame[1] = n;
  else if (n < 65536) {
    frame[1] = 126;
    frame.writeUInt16BE(n, 2);
  } else {
    frame[1] = 127;
    frame.writeUInt32BE(Math.floor(n / 2 ** 32), 2);
    frame.writeUInt32BE(n >>> 0, 6);
  }
  return frame;
}

/** One FIN binary frame (server to client: no mask) carrying `msg`. */
export function binaryFrame(msg: Uint8Array): Buffer {
  const frame = frameOf(msg.byteLength);
  frame.set(msg, frame.length - msg.byteLength);
  return frame;
}

/** The frame of a y-websocket sync update message ([sync, update, varuint length, update]) in one allocation. */
export function syncUpdateFrame(update: Uint8Array): Buffer {
  let lenBytes = 1;
  for (let n = update.byteLength; n > 0x7f; n = Math.floor(n / 128)) lenBytes++;
  const frame = frameOf(2 + lenBytes + update.byteLength);
  let at = frame.length - update.byteLength - lenBytes - 2;
  frame[at++] = MSG_SYNC;
  frame[at++] = SYNC_UPDATE;
  let n = update.byteLength;
  for (; n > 0x7f; n = Math.floor(n / 128)) frame[at++] = 0x80 | (n & 0x7f);
  frame[at++] = n;
  frame.set(update, at);
  return frame;
}

interface WsInternals {
  readonly _socket: Duplex | null;
  readonly _sender: { readonly _queue: readonly unknown[] } | null;
}

/** Writes a frame from binaryFrame to an OPEN socket. */
export function writeFrame(ws: WebSocket, frame: Buffer): void {
  const w = ws as unknown as WsInternals;
  if (w._socket !== null && w._sender !== null && w._sender._queue.length === 0) {
    w._socket.write(frame);
    return;
  }
  const head = frame[1] === 127 ? 10 : frame[1] === 126 ? 4 : 2;
  ws.send(frame.subarray(head));
}
