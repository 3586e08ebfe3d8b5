// OAuth request parameters, parsed and checked once (RFC 6749 §3.1, §3.2):
// - `application/x-www-form-urlencoded` in the query (authorize) or the body
//   (token, introspect, revoke, authenticate); a POST body of any other type
//   is refused, since §3.2 names this one;
// - a parameter edgeway reads that appears twice is refused ("Request and
//   response parameters MUST NOT be included more than once", §3.1), so no
//   two components can read different values from one request;
// - a parameter sent without a value counts as omitted (§3.1);
// - parameters edgeway does not read are ignored (§3.1: "MUST ignore
//   unrecognized request parameters"), but still count towards the body limit;
// - every value read is at most `max_param_bytes`, the body at most
//   `max_body_bytes` (issue 7 point 6): refused with invalid_request, nothing
//   past the limit is buffered.

import type { IncomingMessage } from 'node:http';
import { OAuthError } from './protocol-errors.js';

export type Params = ReadonlyMap<string, string>;

export interface ParamLimits {
  readonly max_param_bytes: number;
  readonly max_body_bytes: number;
}

function decode(s: string): string {
  const plus = s.indexOf('+') === -1 ? s : s.replaceAll('+', ' ');
  if (plus.indexOf('%') === -1) return plus;
  try {
    return decodeURIComponent(plus);
  } catch {
    throw new OAuthError('invalid_request', 'a parameter is not valid form encoding');
  }
}

/** The parameters named in `known` from a form-encoded string ('' is none). */
export function parseForm(text: string, known: ReadonlySet<string>, limits: ParamLimits): Params {
  const out = new Map<string, string>();
  if (text === '') return out;
  for (const pair of text.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const name = decode(eq === -1 ? pair : pair.slice(0, eq));
    if (!known.has(name)) continue;
    const raw = eq === -1 ? '' : pair.slice(eq + 1);
    // Checked before decoding too: a huge escaped value is not decoded at all.
    if (raw.length > limits.max_param_bytes * 3) throw tooLong(name);
    const value = decode(raw);
    if (Buffer.byteLength(value) > limits.max_param_bytes) throw tooLong(name);
    if (out.has(name)) throw new OAuthError('invalid_request', `${name} is given more than once`);
    if (value !== '') out.set(name, value);
  }
  return out;
}

function tooLong(name: string): OAuthError {
  return new OAuthError('invalid_request', `${name} is longer than allowed`);
}

/** The query of an origin-form target ('' when none). */
export function queryOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? '' : url.slice(q + 1);
}

/** The path of an origin-form target. */
export function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

function isForm(header: string | undefined): boolean {
  if (header === undefined) return false;
  const semi = header.indexOf(';');
  return (semi === -1 ? header : header.slice(0, semi)).trim().toLowerCase() === 'application/x-www-form-urlencoded';
}

/**
 * Reads a form body. A request refused here has its connection closed after
 * the answer (the rest of the body is never read).
 */
export function readForm(req: IncomingMessage, known: ReadonlySet<string>, limits: ParamLimits): Promise<Params> {
  return new Promise((resolve, reject) => {
    const fail = (e: OAuthError): void => {
      req.resume();
      reject(e);
    };
    if (!isForm(req.headers['content-type'])) return fail(new OAuthError('invalid_request', 'the body must be application/x-www-form-urlencoded'));
    const enc = req.headers['content-encoding'];
    if (enc !== undefined && enc.trim().toLowerCase() !== 'identity') return fail(new OAuthError('invalid_request', 'compressed bodies are not accepted'));
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > limits.max_body_bytes) return fail(new OAuthError('invalid_request', 'the body is larger than allowed', 413));
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (c: Buffer) => {
      if (done) return;
      size += c.length;
      if (size > limits.max_body_bytes) {
        done = true;
        chunks.length = 0;
        return reject(new OAuthError('invalid_request', 'the body is larger than allowed', 413));
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (done) return;
      done = true;
      try {
        resolve(parseForm(Buffer.concat(chunks).toString('utf8'), known, limits));
      } catch (e) {
        reject(e);
      }
    });
    req.on('error', () => {
      if (done) return;
      done = true;
      reject(new OAuthError('invalid_request', 'the body could not be read'));
    });
  });
}
