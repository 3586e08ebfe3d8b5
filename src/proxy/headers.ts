// Header rewriting between client and upstream, both ways, on flat raw
// [name, value, name, value…] arrays so duplicates (Cookie, Set-Cookie) and
// the client's casing survive untouched.
//
// RFC 9110 §7.6.1: a proxy MUST remove Connection and every field it names,
// and SHOULD remove the well-known hop-by-hop fields even when not named
// (Proxy-Connection, Keep-Alive, TE, Transfer-Encoding, Upgrade; Trailer
// announces fields of a chunked body that we re-frame anyway).

import type { IncomingMessage } from 'node:http';
import type { ForwardRequest } from './forwarder.js';

const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'proxy-connection',
  'keep-alive',
  'te',
  'transfer-encoding',
  'upgrade',
  'trailer',
]);

/** Dropped from requests on top of hop-by-hop fields. */
const REQUEST_DROP: ReadonlySet<string> = new Set([
  ...HOP_BY_HOP,
  // Forwarding metadata is ours to set; whatever the client sent is a lie
  // until proven otherwise (there is no trusted proxy in front of edgeway).
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-real-ip',
  'forwarded',
  // RFC 9110 §10.1.1: the front server already answered 100-continue, so the
  // expectation is met at this hop; undici also refuses to send it.
  'expect',
]);

/**
 * Fields a Connection header may not strip: RFC 9110 §7.6.1 forbids naming
 * end-to-end fields, and honouring it for these would let a client remove the
 * Host our upstreams route on or re-frame its own body.
 */
const PROTECTED: ReadonlySet<string> = new Set(['host', 'content-length', 'content-type']);

/** Adds the field names a Connection value lists (minus options and protected fields) to `named`. */
function addConnectionTokens(value: string, named: Set<string> | null): Set<string> | null {
  let start = 0;
  while (start <= value.length) {
    let end = value.indexOf(',', start);
    if (end === -1) end = value.length;
    const token = value.slice(start, end).trim().toLowerCase();
    // close and keep-alive are connection options, not field names.
    if (token !== '' && token !== 'close' && token !== 'keep-alive' && !PROTECTED.has(token)) {
      (named ??= new Set()).add(token);
    }
    start = end + 1;
  }
  return named;
}

/** Tokens of every Connection field, lower-cased, minus the protected ones; null when none. */
function connectionTokens(raw: readonly string[]): Set<string> | null {
  let named: Set<string> | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === 10 && name.toLowerCase() === 'connection') named = addConnectionTokens(raw[i + 1] as string, named);
  }
  return named;
}

/**
 * One pass: copies the pairs of `raw` whose names are not in `drop` to `out`,
 * noting what Connection names on the way. Only when it named a custom field
 * (rare: browsers send `keep-alive` or `Upgrade`) does a second pass compact.
 */
function filter(raw: readonly (string | Buffer)[], drop: ReadonlySet<string>, out: string[]): string[] {
  let named: Set<string> | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i] as string | Buffer;
    const name = typeof n === 'string' ? n : n.toString('latin1');
    const v = raw[i + 1] as string | Buffer;
    const value = typeof v === 'string' ? v : v.toString('latin1');
    const lower = name.toLowerCase();
    if (drop.has(lower)) {
      if (lower === 'connection') named = addConnectionTokens(value, named);
      continue;
    }
    out.push(name, value);
  }
  if (named === null) return out;
  let w = 0;
  for (let i = 0; i < out.length; i += 2) {
    const name = out[i] as string;
    if (named.has(name.toLowerCase())) continue;
    out[w++] = name;
    out[w++] = out[i + 1] as string;
  }
  out.length = w;
  return out;
}

/**
 * The header list to send upstream, as a flat array. Host passes through
 * unchanged: code-server and Jupyter compare Origin with Host, and the
 * upstream's links must name the public host.
 */
export function upstreamHeaders(req: IncomingMessage, fr: ForwardRequest): string[] {
  const out = filter(req.rawHeaders, REQUEST_DROP, []);
  out.push('x-forwarded-for', fr.clientIp, 'x-forwarded-proto', fr.proto, 'x-forwarded-host', fr.host);
  return out;
}

/**
 * The upstream response's headers for the client, as a flat string array
 * (undici hands raw names and values as latin1 Buffers). Set-Cookie and every
 * other repeated field stay separate entries.
 */
export function responseHeaders(raw: readonly (Buffer | string)[]): string[] {
  return filter(raw, HOP_BY_HOP, []);
}

/**
 * Websocket upgrades (http-proxy works on the merged `req.headers` object):
 * strips the same fields in place, then restores the two hop-by-hop fields the
 * upgrade itself needs (RFC 6455 §4.1) and sets X-Forwarded-*.
 */
export function upgradeHeadersInPlace(req: IncomingMessage, fr: ForwardRequest): void {
  const h = req.headers;
  const named = connectionTokens(req.rawHeaders);
  for (const name of REQUEST_DROP) delete h[name];
  if (named !== null) for (const name of named) delete h[name];
  h.connection = 'Upgrade';
  h.upgrade = 'websocket';
  h['x-forwarded-for'] = fr.clientIp;
  h['x-forwarded-proto'] = fr.proto;
  h['x-forwarded-host'] = fr.host;
}
