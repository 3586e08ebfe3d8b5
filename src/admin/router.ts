// The admin API's route table: method + path pattern → handler, compiled once
// when the server is created. Patterns are `/`-separated segments where `{name}`
// captures one percent-decoded segment. Later endpoints (oauth clients, collab
// rooms, …) slot in as more rows.

import type { IncomingMessage } from 'node:http';
import type { TokenClaims } from '../auth/jwt.js';

export interface RequestContext {
  readonly req: IncomingMessage;
  readonly params: Readonly<Record<string, string>>;
  /** Raw query string without '?' ('' when none). */
  readonly query: string;
  /** Verified claims; undefined only on routes with `auth: false`. */
  readonly claims: TokenClaims | undefined;
}

export interface HandlerResult {
  readonly status: number;
  /** JSON-serialized; omitted for 204. */
  readonly body?: unknown;
  /** Sent as is instead of `body` (Prometheus text); set its content-type in `headers`. */
  readonly text?: string;
  /** Sent as is instead of `body` (a binary Yjs update); set its content-type in `headers`. */
  readonly bytes?: Uint8Array;
  readonly headers?: Readonly<Record<string, string>>;
}

export type Handler = (ctx: RequestContext) => HandlerResult | Promise<HandlerResult>;

export interface RouteSpec {
  readonly method: string;
  /** e.g. `/v1/hosts/{host}`. */
  readonly path: string;
  /** Whether a bearer token is required (everything but health). */
  readonly auth: boolean;
  readonly handler: Handler;
}

interface Segment {
  readonly literal?: string;
  readonly param?: string;
}

interface CompiledPattern {
  readonly segments: readonly Segment[];
  readonly byMethod: Map<string, RouteSpec>;
  /** Precomputed `Allow` header for 405s. */
  allow: string;
}

export type RouteMatch =
  | { readonly kind: 'found'; readonly route: RouteSpec; readonly params: Record<string, string> }
  | { readonly kind: 'method'; readonly allow: string }
  | { readonly kind: 'none' };

const NONE: RouteMatch = Object.freeze({ kind: 'none' });

export class Router {
  /** Patterns grouped by segment count, so a request only tries those of its length. */
  readonly #bySize = new Map<number, CompiledPattern[]>();

  constructor(routes: readonly RouteSpec[]) {
    const byPath = new Map<string, CompiledPattern>();
    for (const r of routes) {
      let p = byPath.get(r.path);
      if (p === undefined) {
        p = { segments: compile(r.path), byMethod: new Map(), allow: '' };
        byPath.set(r.path, p);
        const list = this.#bySize.get(p.segments.length) ?? [];
        list.push(p);
        this.#bySize.set(p.segments.length, list);
      }
      if (p.byMethod.has(r.method)) throw new Error(`duplicate admin route ${r.method} ${r.path}`);
      p.byMethod.set(r.method, r);
      p.allow = [...p.byMethod.keys()].join(', ');
    }
  }

  /** `pathname` is the request path without the query. */
  match(method: string, pathname: string): RouteMatch {
    if (pathname.charCodeAt(0) !== 0x2f) return NONE;
    const parts = pathname.slice(1).split('/');
    const candidates = this.#bySize.get(parts.length);
    if (candidates === undefined) return NONE;
    for (const p of candidates) {
      const params = matchSegments(p.segments, parts);
      if (params === undefined) continue;
      const route = p.byMethod.get(method);
      if (route === undefined) return { kind: 'method', allow: p.allow };
      return { kind: 'found', route, params };
    }
    return NONE;
  }
}

function compile(path: string): Segment[] {
  return path.slice(1).split('/').map((s) =>
    s.startsWith('{') && s.endsWith('}') ? { param: s.slice(1, -1) } : { literal: s },
  );
}

function matchSegments(segments: readonly Segment[], parts: readonly string[]): Record<string, string> | undefined {
  let params: Record<string, string> | undefined;
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i]!;
    const part = parts[i]!;
    if (seg.literal !== undefined) {
      if (part !== seg.literal) return undefined;
      continue;
    }
    if (part.length === 0) return undefined;
    params ??= {};
    params[seg.param!] = decodeSegment(part);
  }
  return params ?? {};
}

/**
 * A malformed escape is kept as it is rather than refused here: the handler's
 * own check then refuses it (a raw '%' is in no valid host or id) after the
 * token is known, so an unauthenticated caller gets 401 and a caller without
 * the right 403, and neither learns from a 400 how the value was read.
 */
function decodeSegment(part: string): string {
  if (part.indexOf('%') === -1) return part;
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

/** Splits `req.url` (origin-form) into path and query without a URL parse per request. */
export function splitUrl(url: string | undefined): { pathname: string; query: string } {
  const u = url ?? '/';
  const q = u.indexOf('?');
  return q === -1 ? { pathname: u, query: '' } : { pathname: u.slice(0, q), query: u.slice(q + 1) };
}
