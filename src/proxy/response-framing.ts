// What an upstream response head says about its body and its connection, for
// the lean pool (lean-pool.ts). Both read llhttp's field list, which llhttp
// has already judged: a Content-Length here is one field of digits only
// (llhttp refuses duplicates, lists, signs, overflow, and CL with TE before
// it reports the head, RFC 9112 §6.3), and its value arrives trimmed.

import { isNamed } from './headers.js';

/** Default idle lifetime when the upstream gives no Keep-Alive hint (undici's keepAliveTimeout). */
export const IDLE_MS = 4_000;
/** Subtracted from the upstream's hint, so we never send on a socket it is closing. */
const IDLE_THRESHOLD_MS = 1_000;
const IDLE_MAX_MS = 600_000;

const TIMEOUT_PARAM = /timeout=(\d+)/i;
/** The last Keep-Alive value parsed: an upstream sends the same one on every response. */
let lastHint = '';
let lastHintMs = IDLE_MS;

/** `Keep-Alive: timeout=N` (RFC 2068 §19.7.1.1, still sent by Node and others) → idle ms we may use. */
export function keepAliveHint(headers: readonly string[]): number {
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i] as string;
    if (!isNamed(name, 'keep-alive')) continue;
    const value = headers[i + 1] as string;
    if (value === lastHint) return lastHintMs;
    const m = TIMEOUT_PARAM.exec(value);
    const ms = m === null ? IDLE_MS : Math.min(IDLE_MAX_MS, Math.max(0, Number(m[1]) * 1000 - IDLE_THRESHOLD_MS));
    lastHint = value;
    lastHintMs = ms;
    return ms;
  }
  return IDLE_MS;
}

/**
 * The body length a final response's head fixes, or -1 when llhttp must frame
 * the body (chunked, close-delimited, or no body by status: 204 and 304,
 * RFC 9112 §6.3). -1 too for anything but 1-15 plain digits (so exact as a
 * JS number), so an oddity only ever takes the path llhttp guards.
 */
export function fixedBodyLength(status: number, headers: readonly string[]): number {
  if (status === 204 || status === 304) return -1;
  let length = -1;
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i] as string;
    if (isNamed(name, 'transfer-encoding')) return -1;
    if (!isNamed(name, 'content-length')) continue;
    if (length !== -1) return -1;
    length = digits(headers[i + 1] as string);
    if (length === -1) return -1;
  }
  return length;
}

function digits(value: string): number {
  if (value.length === 0 || value.length > 15) return -1;
  let n = 0;
  for (let i = 0; i < value.length; i++) {
    const d = value.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}
