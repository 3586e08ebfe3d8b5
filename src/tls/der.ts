// The small part of DER (X.690) that building X.509 certificates needs: an
// encoder for the few types a certificate uses and a reader that walks the
// TLVs of a certificate to copy fields out of it verbatim. Lengths up to
// 2^32-1; no indefinite lengths (DER forbids them); tags of one byte only.

/** Universal and context tags as single bytes. */
export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** [n] EXPLICIT (constructed) context tag. */
export const explicitTag = (n: number): number => 0xa0 | n;
/** [n] IMPLICIT tag of a primitive type. */
export const implicitTag = (n: number): number => 0x80 | n;

/** One TLV with `tag` around the concatenation of `content`. */
export function tlv(tag: number, ...content: Uint8Array[]): Buffer {
  let n = 0;
  for (const c of content) n += c.length;
  let head: number[];
  if (n < 0x80) head = [tag, n];
  else if (n < 0x100) head = [tag, 0x81, n];
  else if (n < 0x10000) head = [tag, 0x82, n >>> 8, n & 0xff];
  else if (n < 0x1000000) head = [tag, 0x83, n >>> 16, (n >>> 8) & 0xff, n & 0xff];
  else head = [tag, 0x84, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
  return Buffer.concat([Buffer.from(head), ...content], head.length + n);
}

export const seq = (...content: Uint8Array[]): Buffer => tlv(TAG.SEQUENCE, ...content);
export const set = (...content: Uint8Array[]): Buffer => tlv(TAG.SET, ...content);
export const octetString = (bytes: Uint8Array): Buffer => tlv(TAG.OCTET_STRING, bytes);
/** BIT STRING of whole bytes (no unused bits). */
export const bitString = (bytes: Uint8Array): Buffer => tlv(TAG.BIT_STRING, Uint8Array.of(0), bytes);
export const TRUE = Buffer.from([TAG.BOOLEAN, 1, 0xff]);

/** Non-negative INTEGER from big-endian magnitude bytes, minimally encoded. */
export function uint(magnitude: Uint8Array): Buffer {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const m = magnitude.subarray(i);
  if (m.length === 0) return Buffer.from([TAG.INTEGER, 1, 0]);
  return (m[0] ?? 0) & 0x80 ? tlv(TAG.INTEGER, Uint8Array.of(0), m) : tlv(TAG.INTEGER, m);
}

/** INTEGER 0..127 (versions, pathLenConstraint). */
export function smallInt(n: number): Buffer {
  if (!Number.isInteger(n) || n < 0 || n > 127) throw new RangeError(`DER: smallInt ${n}`);
  return Buffer.from([TAG.INTEGER, 1, n]);
}

/** OBJECT IDENTIFIER from dotted form, e.g. '2.5.29.17'. */
export function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  const [a = 0, b = 0, ...rest] = arcs;
  const out: number[] = [];
  for (const arc of [a * 40 + b, ...rest]) {
    const groups = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) groups.unshift((v & 0x7f) | 0x80);
    out.push(...groups);
  }
  return tlv(TAG.OID, Buffer.from(out));
}

const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

/** PrintableString when every character allows it, else UTF8String (what X.509 generators usually pick). */
export function directoryString(s: string): Buffer {
  return PRINTABLE.test(s) ? tlv(TAG.PRINTABLE_STRING, Buffer.from(s, 'latin1')) : tlv(TAG.UTF8_STRING, Buffer.from(s, 'utf8'));
}

export const ia5 = (s: string, tag: number = TAG.IA5_STRING): Buffer => tlv(tag, Buffer.from(s, 'latin1'));

/**
 * RFC 5280 §4.1.2.5 Time: UTCTime through 2049, GeneralizedTime from 2050,
 * both in whole seconds, UTC (fractions of a second are truncated).
 */
export function time(ms: number): Buffer {
  const d = new Date(ms);
  const y = d.getUTCFullYear();
  const two = (n: number): string => String(n).padStart(2, '0');
  const rest = two(d.getUTCMonth() + 1) + two(d.getUTCDate()) + two(d.getUTCHours()) + two(d.getUTCMinutes()) + two(d.getUTCSeconds()) + 'Z';
  return y >= 1950 && y < 2050
    ? tlv(TAG.UTC_TIME, Buffer.from(two(y % 100) + rest, 'latin1'))
    : tlv(TAG.GENERALIZED_TIME, Buffer.from(String(y).padStart(4, '0') + rest, 'latin1'));
}

/** A TLV found in a buffer: `start` is where its tag is, `content`..`end` its value. */
export interface Node {
  readonly tag: number;
  readonly start: number;
  readonly content: number;
  readonly end: number;
}

/** The TLV at `at`; throws on anything truncated or not DER-shaped. */
export function read(buf: Uint8Array, at: number, limit: number = buf.length): Node {
  const tag = buf[at];
  const first = buf[at + 1];
  if (tag === undefined || first === undefined || (tag & 0x1f) === 0x1f) throw new Error('DER: truncated or multi-byte tag');
  let len = first;
  let content = at + 2;
  if (first & 0x80) {
    const n = first & 0x7f;
    if (n === 0 || n > 4) throw new Error('DER: unsupported length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[content + i] ?? NaN);
    content += n;
  }
  const end = content + len;
  if (!Number.isFinite(end) || end > limit) throw new Error('DER: length past the end');
  return { tag, start: at, content, end };
}

/** The TLVs directly inside a constructed one. */
export function children(buf: Uint8Array, parent: Node): Node[] {
  const out: Node[] = [];
  for (let at = parent.content; at < parent.end; ) {
    const n = read(buf, at, parent.end);
    out.push(n);
    at = n.end;
  }
  return out;
}

export const bytesOf = (buf: Uint8Array, n: Node): Uint8Array => buf.subarray(n.start, n.end);
export const contentOf = (buf: Uint8Array, n: Node): Uint8Array => buf.subarray(n.content, n.end);

/** PEM armour with 64-column base64 lines, ending in a newline. */
export function pem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64');
  let body = '';
  for (let i = 0; i < b64.length; i += 64) body += b64.slice(i, i + 64) + '\n';
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}
