// Accepted TLS sockets read into one shared buffer (issue 4); the fast lane
// switches a connection over once it has served its first request
// (fast-lane.ts), so connections node:http takes at once keep Node's reads.
//
// By default every read of a TLS socket allocates a fresh ArrayBuffer for
// the decrypted bytes (a malloc'd backing store, freed again when the young
// generation is swept) and pushes it through the socket's Readable machinery
// (a 'data' event and a nextTick per read). Under (a) that is one backing
// store per request, and the scavenger's sweep of dead array buffers showed
// up in its pauses (`--trace-gc-nvp`: sweep_array_buffers up to 0.35 ms of
// a 1 ms scavenge). Node's own answer is `onread` (net.Socket reads into a
// caller's buffer and hands it to a callback), which tls.connect passes on
// but tls.Server's accepted sockets cannot take. The stream handle underneath
// supports it all the same (`useUserBuffer`, the call `onread` makes); this
// file makes that call and sets the three fields net.Socket's read callback
// consults, found once by their symbols' descriptions.
//
// The bytes handed to `onRead` are valid only until it returns: the next read
// of any socket overwrites them. Whoever keeps bytes must copy them.
// When this Node lacks the fields, `readInto` says so and the caller keeps
// its 'data' listener.

import { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';

/** Called with the bytes of one read; returning false stops reading (Node's backpressure). */
export type ReadCallback = (this: TLSSocket, nread: number, buf: Buffer) => boolean;

type Fields = { kBuffer: symbol; kBufferCb: symbol; kBufferGen: symbol };
type Handle = { useUserBuffer?: (buf: Buffer) => void };

function findFields(): Fields | undefined {
  const probe = new Socket();
  const found = new Map(Object.getOwnPropertySymbols(probe).map((s) => [s.description, s]));
  probe.destroy();
  const kBuffer = found.get('kBuffer');
  const kBufferCb = found.get('kBufferCb');
  const kBufferGen = found.get('kBufferGen');
  return kBuffer && kBufferCb && kBufferGen ? { kBuffer, kBufferCb, kBufferGen } : undefined;
}

const FIELDS = findFields();

/**
 * 64 KiB, as lean-pool.ts's upstream read buffer: TLS delivers at most one
 * record (16 KiB) per read, so one read never needs more.
 */
const SHARED = Buffer.allocUnsafe(64 * 1024);

/** True when `buf` is (a view of) the shared read buffer: bytes that must be copied to be kept. */
export function isShared(buf: Buffer): boolean {
  return buf.buffer === SHARED.buffer;
}

/**
 * From now on `socket`'s reads land in the shared buffer and go to `onRead`
 * instead of 'data' events. False (nothing changed) when this Node does not
 * offer it or the socket has no stream handle.
 */
export function readInto(socket: TLSSocket, onRead: ReadCallback): boolean {
  const handle = (socket as unknown as { _handle: Handle | null })._handle;
  if (FIELDS === undefined || handle === null || typeof handle.useUserBuffer !== 'function') return false;
  const s = socket as unknown as Record<symbol, unknown>;
  s[FIELDS.kBuffer] = SHARED;
  s[FIELDS.kBufferCb] = onRead;
  s[FIELDS.kBufferGen] = null;
  handle.useUserBuffer(SHARED);
  return true;
}

/**
 * For a socket whose reads `readInto` redirected and that is no longer the
 * caller's: each read is copied and pushed as net.Socket would have pushed it,
 * so 'data' listeners (node:http when it does not consume the handle, a
 * websocket after its upgrade) see the bytes as before.
 */
export function pushCopy(this: TLSSocket, nread: number, buf: Buffer): boolean {
  return this.push(copyOut(buf, nread));
}

/**
 * The first `n` bytes of `buf` in memory of their own, as a default read
 * would have allocated them: not a slice of Buffer's shared 8 KiB pool, which
 * a kept slice (a websocket's last frame, an upgrade's head) would pin whole.
 * A precaution for issue 4 (e): idle websockets grew from 34.5 to 35.1 KB
 * when every connection read into the shared buffer with pooled copies; this
 * and switching only lane-served connections (fast-lane.ts) came in one
 * change (34.4 KB after), so their shares are not measured apart.
 */
export function copyOut(buf: Buffer, n: number): Buffer {
  const copy = Buffer.allocUnsafeSlow(n);
  buf.copy(copy, 0, 0, n);
  return copy;
}
