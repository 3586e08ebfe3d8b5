// Node's own HTTP parser (llhttp, the one node:http and undici 5 use), for
// parsing upstream responses on the lean forwarding path (lean-forwarder.ts).
// Issue 4 weighed a parser of our own: llhttp is strict by default (it refuses
// duplicate Content-Length, CL with TE, bare LF, obs-fold, bad tokens and
// oversized heads: the list the issue names), fuzzed upstream, and costs no
// JavaScript per byte, so we reuse it rather than write and defend a second
// one. Node exposes it only as the internal module `_http_common`; everything
// that touches it is in this file, so a Node upgrade that moves it breaks here
// and only here (the undici forwarder remains as the fallback: proxy.forwarder).

import { createRequire } from 'node:module';

export interface ResponseParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  /** Bytes consumed, or the parse error (HPE_* code, reason). */
  execute(data: Buffer): number | Error;
  /** End of input: completes a close-delimited body, or returns an error. */
  finish(): undefined | Error;
  close(): void;
  free(): void;
  remove(): void;
  [key: number]: unknown;
}

interface ParserModule {
  readonly HTTPParser: {
    new (): ResponseParser;
    readonly REQUEST: number;
    readonly RESPONSE: number;
    readonly kOnHeaders: number;
    readonly kOnHeadersComplete: number;
    readonly kOnBody: number;
    readonly kOnMessageComplete: number;
    readonly kOnExecute: number;
    readonly kLenientNone: number;
  };
}

const { HTTPParser, methods } = createRequire(import.meta.url)('_http_common') as ParserModule & { readonly methods: readonly string[] };

/** llhttp's method names, indexed by the number kOnHeadersComplete reports. */
export const METHODS = methods;

export const RESPONSE = HTTPParser.RESPONSE;
export const kOnHeaders = HTTPParser.kOnHeaders;
export const kOnHeadersComplete = HTTPParser.kOnHeadersComplete;
export const kOnBody = HTTPParser.kOnBody;
export const kOnMessageComplete = HTTPParser.kOnMessageComplete;
export const kOnExecute = HTTPParser.kOnExecute;
export const STRICT = HTTPParser.kLenientNone;

/** Heads larger than this are refused (HPE_HEADER_OVERFLOW), like undici's default. */
export const MAX_RESPONSE_HEAD = 64 * 1024;

/**
 * A request parser for one client connection of the fast lane
 * (src/server/fast-lane.ts): the same llhttp, with the same strict settings,
 * that node:http's server uses, so both paths accept exactly the same bytes.
 */
export function newRequestParser(maxHeaderSize: number): ResponseParser {
  const p = new HTTPParser();
  p.initialize(HTTPParser.REQUEST, {}, maxHeaderSize, STRICT);
  return p;
}

/** A response parser for one upstream connection; it parses every response that connection carries. */
export function newResponseParser(): ResponseParser {
  const p = new HTTPParser();
  // The async resource must be a fresh, extensible object: async_hooks stores
  // the AsyncLocalStorage context on it (a frozen or shared one throws or leaks
  // one connection's context into another). One per connection, not per request.
  p.initialize(RESPONSE, {}, MAX_RESPONSE_HEAD, STRICT);
  return p;
}
