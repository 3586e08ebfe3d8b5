// Header rewriting between client and upstream, both ways, on flat raw
// [name, value, name, value…] arrays so duplicates (Cookie, Set-Cookie) and
// the client's casing survive untouched.
//
// RFC 9110 §7.6.1: a proxy MUST remove Connection and every field it names,
// and SHOULD remove the well-known hop-by-hop fields even when not named
// (Proxy-Connection, Keep-Alive, TE, Transfer-Encoding, Upgrade; Trailer
// announces fields of a chunked body that we re-frame anyway).
//
// What is edgeway's own never reaches an upstream (DESIGN.md "How a browser
// gets in"): the `edgeway_token` and `edgeway_state` cookies and query
// parameters always, the Authorization header when it carried the token
// edgeway accepted. The app's other cookies and its own Authorization pass.

import type { IncomingMessage } from 'node:http';
import type { RequestView } from '../http1/request-view.js';
import { EdgewayError } from '../errors.js';
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

/** Edgeway's cookies and query parameters (the session and the login state). */
export const OWN_TOKEN = 'edgeway_token';
export const OWN_STATE = 'edgeway_state';
/** Common prefix: one indexOf decides whether a Cookie value or a query needs a closer look. */
const OWN_PREFIX = 'edgeway_';

/** What a request target carries of edgeway's own, and the target without it. */
export interface OwnQuery {
  /** First `edgeway_token` parameter (decoded), if any. */
  readonly token: string | undefined;
  /** First `edgeway_state` parameter (decoded), if any. */
  readonly state: string | undefined;
  /** The target without any `edgeway_token`/`edgeway_state` parameter. */
  readonly url: string;
}

function decodeOr(s: string): string {
  if (s.indexOf('%') === -1) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/**
 * Undefined (no allocation) unless the query holds `edgeway` at all; then the
 * parameters are split on '&'. Names are compared after percent-decoding, so
 * `edgeway%5Ftoken`, which an app would decode to the same name, goes too.
 */
export function ownQuery(url: string): OwnQuery | undefined {
  const q = url.indexOf('?');
  if (q === -1 || url.indexOf('edgeway', q) === -1) return undefined;
  let token: string | undefined;
  let state: string | undefined;
  let kept = '';
  let dropped = false;
  let start = q + 1;
  while (start <= url.length) {
    let end = url.indexOf('&', start);
    if (end === -1) end = url.length;
    const eq = url.indexOf('=', start);
    const nameEnd = eq === -1 || eq > end ? end : eq;
    const name = decodeOr(url.slice(start, nameEnd));
    if (name === OWN_TOKEN || name === OWN_STATE) {
      dropped = true;
      const value = nameEnd === end ? '' : decodeOr(url.slice(nameEnd + 1, end));
      if (name === OWN_TOKEN) token ??= value;
      else state ??= value;
    } else if (end > start) {
      kept += (kept === '' ? '' : '&') + url.slice(start, end);
    }
    start = end + 1;
  }
  if (!dropped) return undefined;
  return { token, state, url: kept === '' ? url.slice(0, q) : `${url.slice(0, q)}?${kept}` };
}

/** A Cookie value without edgeway's own cookies: the same string when it has none, '' when nothing else is left. */
export function withoutOwnCookies(value: string): string {
  if (value.indexOf(OWN_PREFIX) === -1) return value;
  let out = '';
  let start = 0;
  while (start < value.length) {
    let end = value.indexOf(';', start);
    if (end === -1) end = value.length;
    const pair = value.slice(start, end).trim();
    const eq = pair.indexOf('=');
    const name = eq === -1 ? pair : pair.slice(0, eq).trim();
    if (pair !== '' && name !== OWN_TOKEN && name !== OWN_STATE) out += (out === '' ? '' : '; ') + pair;
    start = end + 1;
  }
  return out;
}

/** The values of every cookie named `name` in a Cookie header value (RFC 6265 §4.2.1: `a=b; c=d`). */
export function cookieValues(header: string | undefined, name: string): string[] | undefined {
  if (header === undefined) return undefined;
  let at = header.indexOf(name);
  let found: string[] | undefined;
  while (at !== -1) {
    const before = at === 0 ? 0x3b : header.charCodeAt(at - 1);
    const after = at + name.length;
    if ((before === 0x3b || before === 0x20) && header.charCodeAt(after) === 0x3d /* = */) {
      let end = header.indexOf(';', after);
      if (end === -1) end = header.length;
      (found ??= []).push(header.slice(after + 1, end).trim());
    }
    at = header.indexOf(name, after);
  }
  return found;
}

/** What of edgeway's own a request's header filter removes. */
const Own = { None: 0, Cookies: 1, CookiesAndAuthorization: 2 } as const;
type Own = (typeof Own)[keyof typeof Own];

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
 * What a filter() pass drops, and the name lengths worth lower-casing for:
 * those of the dropped names and of `extra` (fields it treats specially).
 * Most fields (Server, Date, Content-Type, User-Agent…) have none of these
 * lengths and are kept without allocating a lower-case copy of their name
 * (issue 4: a copy per field per request was a measurable share of the
 * young-generation garbage).
 */
interface FieldRule {
  readonly drop: ReadonlySet<string>;
  readonly lengths: Uint8Array;
}
function rule(drop: ReadonlySet<string>, extra: readonly string[]): FieldRule {
  const lengths = new Uint8Array(64);
  for (const n of [...drop, ...extra]) lengths[n.length] = 1;
  return { drop, lengths };
}
const REQUEST_RULE = rule(REQUEST_DROP, ['host', 'cookie', 'authorization']);
const RESPONSE_RULE = rule(HOP_BY_HOP, []);

/**
 * One pass: writes the pairs of `raw` whose names `r` does not drop to `out`
 * (which may be `raw` itself: pairs only ever move towards the front),
 * noting what Connection names on the way. Only when it named a custom field
 * (rare: browsers send `keep-alive` or `Upgrade`) does a second pass compact.
 */
function filter(raw: readonly (string | Buffer)[], r: FieldRule, out: string[], own: Own): string[] {
  let named: Set<string> | null = null;
  let w = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i] as string | Buffer;
    const name = typeof n === 'string' ? n : n.toString('latin1');
    const v = raw[i + 1] as string | Buffer;
    let value = typeof v === 'string' ? v : v.toString('latin1');
    if (name.length < 64 && r.lengths[name.length] === 1) {
      const lower = name.toLowerCase();
      if (lower === 'host') hostFields++;
      if (r.drop.has(lower)) {
        if (lower === 'connection') named = addConnectionTokens(value, named);
        continue;
      }
      if (own !== Own.None) {
        if (lower === 'cookie') {
          value = withoutOwnCookies(value);
          if (value === '') continue;
        } else if (own === Own.CookiesAndAuthorization && lower === 'authorization') {
          continue;
        }
      }
    }
    out[w++] = name;
    out[w++] = value;
  }
  out.length = w;
  if (named === null) return out;
  w = 0;
  for (let i = 0; i < out.length; i += 2) {
    const name = out[i] as string;
    if (named.has(name.toLowerCase())) continue;
    out[w++] = name;
    out[w++] = out[i + 1] as string;
  }
  out.length = w;
  return out;
}

/** Host fields seen by the last filter() pass (read by upstreamHeaders right after it). */
let hostFields = 0;

const BAD_FRAMING = new EdgewayError('BAD_REQUEST');

/**
 * The header list to send upstream, as a flat array. Host passes through
 * unchanged: code-server and Jupyter compare Origin with Host, and the
 * upstream's links must name the public host.
 *
 * Throws BAD_REQUEST (the forwarders answer it through failure.ts) for request
 * framing that must never reach an upstream. node:http emits 'request' before
 * llhttp has judged the body, so these are refused here, in the one pass over
 * the fields the request needs anyway:
 * - Transfer-Encoding other than exactly `chunked` (RFC 9112 §6.1: a request
 *   whose final coding is not chunked gets 400; we accept no other codings, as
 *   nginx does; two TE fields arrive joined, `chunked, identity`);
 * - more than one Host field (RFC 9112 §3.2: 400).
 */
export function upstreamHeaders(req: RequestView, fr: ForwardRequest): string[] {
  const te = req.headers['transfer-encoding'];
  if (te !== undefined && te !== 'chunked' && te.toLowerCase() !== 'chunked') throw BAD_FRAMING;
  const own = fr.keepCredentials === true ? Own.None : fr.dropAuthorization === true ? Own.CookiesAndAuthorization : Own.Cookies;
  hostFields = 0;
  const out = filter(req.rawHeaders, REQUEST_RULE, [], own);
  if (hostFields > 1) throw BAD_FRAMING;
  out.push('x-forwarded-for', fr.clientIp, 'x-forwarded-proto', fr.proto, 'x-forwarded-host', fr.host);
  return out;
}

/**
 * The upstream response's headers for the client, as a flat string array
 * (undici hands raw names and values as latin1 Buffers). Set-Cookie and every
 * other repeated field stay separate entries.
 */
export function responseHeaders(raw: readonly (Buffer | string)[]): string[] {
  return filter(raw, RESPONSE_RULE, [], Own.None);
}

/** responseHeaders() in place, for a field list nobody else reads (llhttp's, on the lean paths). */
export function responseHeadersInPlace(fields: string[]): string[] {
  return filter(fields, RESPONSE_RULE, fields, Own.None);
}

/**
 * `name` equals `lower` (lower-case letters and '-') ignoring ASCII case,
 * without allocating a lower-case copy. Exact for such targets: setting bit
 * 0x20 maps only A-Z onto a-z there, and '\r' (0x0D) onto '-' (0x2D), which
 * llhttp never lets into a field name.
 */
export function isNamed(name: string, lower: string): boolean {
  const n = lower.length;
  if (name.length !== n) return false;
  for (let i = 0; i < n; i++) if ((name.charCodeAt(i) | 0x20) !== lower.charCodeAt(i)) return false;
  return true;
}

/**
 * Websocket upgrades (http-proxy works on the merged `req.headers` object):
 * strips the same fields (and edgeway's own) in place, then restores the two hop-by-hop fields the
 * upgrade itself needs (RFC 6455 §4.1) and sets X-Forwarded-*.
 */
export function upgradeHeadersInPlace(req: IncomingMessage, fr: ForwardRequest): void {
  const h = req.headers;
  const named = connectionTokens(req.rawHeaders);
  for (const name of REQUEST_DROP) delete h[name];
  if (named !== null) for (const name of named) delete h[name];
  if (h.cookie !== undefined && fr.keepCredentials !== true) {
    const cookie = withoutOwnCookies(h.cookie);
    if (cookie === '') delete h.cookie;
    else h.cookie = cookie;
  }
  if (fr.dropAuthorization === true) delete h.authorization;
  h.connection = 'Upgrade';
  h.upgrade = 'websocket';
  h['x-forwarded-for'] = fr.clientIp;
  h['x-forwarded-proto'] = fr.proto;
  h['x-forwarded-host'] = fr.host;
}
