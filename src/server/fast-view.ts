// The fast lane's request object (src/server/fast-lane.ts): the fields the
// shared request logic reads (src/http1/request-view.ts), taken from llhttp's
// raw field list in one pass. A request whose fields node:http would merge or
// judge (two Host, Cookie, Authorization or Accept fields, a body's framing,
// Expect, Upgrade) gets undefined: node:http serves it, so the fast lane
// never has to reproduce how node:http joins or refuses fields.

import type { TLSSocket } from 'node:tls';
import type { RequestHeadersView, RequestView } from '../http1/request-view.js';
import { isNamed } from '../proxy/headers.js';

class Headers implements RequestHeadersView {
  host: string | undefined = undefined;
  cookie: string | undefined = undefined;
  authorization: string | undefined = undefined;
  accept: string | undefined = undefined;
}

class View implements RequestView {
  constructor(
    readonly method: string,
    public url: string,
    readonly headers: Headers,
    readonly rawHeaders: readonly string[],
    readonly socket: TLSSocket,
  ) {}
}

export function requestView(method: string, url: string, fields: readonly string[], socket: TLSSocket): RequestView | undefined {
  const h = new Headers();
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i] as string;
    const value = fields[i + 1] as string;
    // Lengths first: most fields are none of these and cost one comparison; no lower-case copies.
    switch (name.length) {
      case 4:
        if (!isNamed(name, 'host')) break;
        if (h.host !== undefined) return undefined;
        h.host = value;
        break;
      case 6:
        if (isNamed(name, 'cookie')) {
          if (h.cookie !== undefined) return undefined;
          h.cookie = value;
        } else if (isNamed(name, 'accept')) {
          if (h.accept !== undefined) return undefined;
          h.accept = value;
        } else if (isNamed(name, 'expect')) return undefined;
        break;
      case 7:
        if (isNamed(name, 'upgrade')) return undefined;
        break;
      case 13:
        if (!isNamed(name, 'authorization')) break;
        if (h.authorization !== undefined) return undefined;
        h.authorization = value;
        break;
      case 14:
        if (isNamed(name, 'content-length')) return undefined;
        break;
      case 17:
        if (isNamed(name, 'transfer-encoding')) return undefined;
        break;
    }
  }
  // node:http answers a missing Host with 400 (requireHostHeader).
  if (h.host === undefined) return undefined;
  return new View(method, url, h, fields, socket);
}
