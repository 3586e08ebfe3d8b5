// bench:collab load generator, the bytes on the wire (issue 6 "Speed"). The
// first version gave every client a Y.Doc and built each update through it,
// which made the load generator (one process, 10,000 docs and sockets, GC)
// part of what it measured. Here a client is what the relay sees of it and
// nothing more:
//
// - Its update is built straight into one buffer, byte for byte what Yjs
//   emits for `doc.getMap('m').set(key, value)` by a client that made every
//   earlier set of that key (update V1: one Item with ContentAny, its left
//   origin the client's previous item, the previous item in the delete set).
//   `checkAgainstYjs` compares the two at start, so a Yjs change cannot make
//   the bench send something the servers would reject or store differently.
// - Its value carries the send time and the sender: a receiver finds them
//   with one `indexOf` and reads digits, without decoding the update (the
//   server re-encodes what it relays, so the offset is not fixed).

import * as Y from 'yjs';

export const MARK = Buffer.from('~bm');
const TIME_DIGITS = 13; // µs since the process started: 115 days
const SENDER_DIGITS = 7;
const VALUE_LEN = MARK.length + TIME_DIGITS + SENDER_DIGITS;
const CONTENT_ANY = 8;
const HAS_ORIGIN = 0x80;
const HAS_PARENT_SUB = 0x20;
const ANY_STRING = 119;

function varUint(buf: Buffer, at: number, n: number): number {
  while (n > 0x7f) {
    buf[at++] = 0x80 | (n & 0x7f);
    n = Math.floor(n / 128);
  }
  buf[at++] = n;
  return at;
}

function digits(buf: Buffer, at: number, n: number, width: number): number {
  for (let i = width - 1; i >= 0; i--) {
    buf[at + i] = 48 + (n % 10);
    n = Math.floor(n / 10);
  }
  return at + width;
}

/** One simulated client's map key and Yjs clock. */
export class UpdateWriter {
  #clock = 0;
  readonly #key: Buffer;

  constructor(
    readonly clientId: number,
    key: string,
    readonly sender: number,
  ) {
    this.#key = Buffer.from(key);
  }

  /** The y-websocket message (sync, update) setting this client's key to a value stamped `timeUs`. */
  next(timeUs: number): Buffer {
    const buf = Buffer.allocUnsafe(48 + this.#key.length + VALUE_LEN);
    const first = this.#clock === 0;
    // The update, written after a 2-byte gap for [sync, update] and a varuint
    // length that is one byte while the update stays under 128 bytes.
    let at = 3;
    at = varUint(buf, at, 1); // clients with structs
    at = varUint(buf, at, 1); // structs of this client
    at = varUint(buf, at, this.clientId);
    at = varUint(buf, at, this.#clock);
    if (first) {
      buf[at++] = CONTENT_ANY | HAS_PARENT_SUB;
      at = varUint(buf, at, 1); // parent is a root type, by name
      at = varUint(buf, at, 1);
      buf[at++] = 0x6d; // 'm'
      at = varUint(buf, at, this.#key.length);
      at += this.#key.copy(buf, at);
    } else {
      buf[at++] = CONTENT_ANY | HAS_ORIGIN | HAS_PARENT_SUB;
      at = varUint(buf, at, this.clientId);
      at = varUint(buf, at, this.#clock - 1);
    }
    at = varUint(buf, at, 1); // one value
    buf[at++] = ANY_STRING;
    at = varUint(buf, at, VALUE_LEN);
    at += MARK.copy(buf, at);
    at = digits(buf, at, Math.round(timeUs), TIME_DIGITS);
    at = digits(buf, at, this.sender, SENDER_DIGITS);
    if (first) at = varUint(buf, at, 0);
    else {
      at = varUint(buf, at, 1); // delete set: the value this one replaces
      at = varUint(buf, at, this.clientId);
      at = varUint(buf, at, 1);
      at = varUint(buf, at, this.#clock - 1);
      at = varUint(buf, at, 1);
    }
    this.#clock++;
    const len = at - 3;
    if (len > 0x7f) throw new Error('update longer than one varuint byte can say');
    buf[0] = 0;
    buf[1] = 2;
    buf[2] = len;
    return buf.subarray(0, at);
  }
}

/** Reads a stamped update message: its send time (µs) and sender, or undefined (not a bench update). */
export function readStamp(data: Buffer, out: { timeUs: number; sender: number }): boolean {
  if (data[0] !== 0 || data[1] !== 2) return false;
  const at = data.indexOf(MARK) + MARK.length;
  if (at < MARK.length || at + TIME_DIGITS + SENDER_DIGITS > data.length) return false;
  let t = 0;
  for (let i = 0; i < TIME_DIGITS; i++) t = t * 10 + data[at + i]! - 48;
  let s = 0;
  for (let i = 0; i < SENDER_DIGITS; i++) s = s * 10 + data[at + TIME_DIGITS + i]! - 48;
  out.timeUs = t;
  out.sender = s;
  return true;
}

/** Throws unless UpdateWriter emits exactly Yjs's own bytes for the same edits. */
export function checkAgainstYjs(): void {
  const doc = new Y.Doc();
  doc.clientID = 123456;
  const w = new UpdateWriter(123456, 'c42', 42);
  let got: Uint8Array | undefined;
  doc.on('update', (u: Uint8Array) => (got = u));
  const replica = new Y.Doc();
  for (let i = 0; i < 3; i++) {
    const msg = w.next(1000 * i + 7);
    const value = msg.toString('latin1', msg.indexOf(MARK), msg.indexOf(MARK) + VALUE_LEN);
    doc.getMap('m').set('c42', value);
    if (!Buffer.from(got!).equals(msg.subarray(3))) throw new Error(`bench update ${i} differs from Yjs's: ${msg.subarray(3).toString('hex')} vs ${Buffer.from(got!).toString('hex')}`);
    Y.applyUpdate(replica, msg.subarray(3));
    if (replica.getMap('m').get('c42') !== value) throw new Error('bench update does not apply as Yjs would');
    const stamp = { timeUs: 0, sender: 0 };
    if (!readStamp(msg, stamp) || stamp.timeUs !== 1000 * i + 7 || stamp.sender !== 42) throw new Error('stamp not read back');
  }
}
