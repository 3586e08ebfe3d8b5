// Static file serving for `static` locations (DESIGN.md "Host entries"), with the
// behaviour of nginx's `alias` + gzip_static/brotli_static and Caddy's
// file_server: conditional requests, single byte ranges, precompressed
// siblings, directory indexes and an optional SPA fallback.
//
// Path safety lives in safe-path.ts (lexical) and in #resolve (realpath against
// the root's realpath, for symlinks). Every refusal is a plain 404 that names
// nothing on disk.

import { constants as fsc, promises as fsp, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { pipeline } from 'node:stream';
import mime from 'mime-types';
import { ERRORS, type ErrorCode } from '../errors.js';
import { hasHiddenSegment, safePath } from './safe-path.js';

export interface StaticOptions {
  /** Absolute path of the directory to serve. */
  readonly root: string;
  /** Serve the root's index.html for missing extension-less paths (client-side routing). */
  readonly spa: boolean;
}

interface RealRoot {
  readonly real: string;
  /** `real` + separator: a file is inside when its realpath starts with this. */
  readonly prefix: string;
}

type Resolved =
  | { readonly kind: 'file'; readonly fh: FileHandle; readonly stats: Stats }
  | { readonly kind: 'dir' }
  | { readonly kind: 'missing' }
  | { readonly kind: 'forbidden' };

const MISSING: Resolved = { kind: 'missing' };
const FORBIDDEN: Resolved = { kind: 'forbidden' };
const DIR: Resolved = { kind: 'dir' };

const INDEX = 'index.html';
// O_NONBLOCK: opening a FIFO someone left in the root must not park a libuv
// thread forever; regular files ignore the flag.
const OPEN_FLAGS = fsc.O_RDONLY | fsc.O_NONBLOCK;
const LEADING_SLASHES = /^\/{2,}/;

interface TypeInfo {
  readonly contentType: string;
  readonly compressible: boolean;
}
// Text-like types worth precompressing; everything else (images, archives,
// fonts in woff2) is already compressed, so no Vary and no sibling lookups.
const COMPRESSIBLE = /^(?:text\/|image\/svg\+xml|application\/(?:javascript|json|xml|wasm|[\w.-]+\+(?:json|xml)))/;
const OCTET: TypeInfo = { contentType: 'application/octet-stream', compressible: false };
const typeCache = new Map<string, TypeInfo>();
const TYPE_CACHE_MAX = 1024;

/** Content-Type by extension, with `; charset=utf-8` for text types (mime-types adds it). */
function typeOf(file: string): TypeInfo {
  const ext = path.extname(file).toLowerCase();
  let info = typeCache.get(ext);
  if (info === undefined) {
    const ct = ext === '' ? false : mime.contentType(ext);
    info = ct === false ? OCTET : { contentType: ct, compressible: COMPRESSIBLE.test(ct) };
    if (typeCache.size < TYPE_CACHE_MAX) typeCache.set(ext, info);
  }
  return info;
}

function sendError(res: ServerResponse, code: ErrorCode, allow?: string): void {
  const body = ERRORS[code].message + '\n';
  res.statusCode = ERRORS[code].status;
  if (allow !== undefined) res.setHeader('Allow', allow);
  res.setHeader('Content-Type', 'text/plain; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.end(body);
}

/** Unexpected failure: a 500 if nothing was sent yet, else cut the response. */
function fail(res: ServerResponse): void {
  if (res.headersSent) res.destroy();
  else sendError(res, 'INTERNAL');
}

/** pipeline() has already destroyed both streams (closing the fd) on error. */
function streamDone(): void {}

function closeQuietly(fh: FileHandle): void {
  fh.close().catch(streamDone);
}

/** The path part of req.url (origin-form, or absolute-form per RFC 9112 §3.2.2). */
function urlPath(url: string): string {
  const q = url.indexOf('?');
  const p = q < 0 ? url : url.slice(0, q);
  if (p.charCodeAt(0) === 0x2f) return p;
  try {
    return new URL(p).pathname;
  } catch {
    return '/';
  }
}

export class StaticHandler {
  readonly #root: string;
  readonly #spa: boolean;
  #realRoot: Promise<RealRoot | null> | undefined;

  constructor(opts: StaticOptions) {
    this.#root = opts.root;
    this.#spa = opts.spa;
    // The routes validator guarantees an absolute root. Not throwing here: the
    // data plane builds handlers lazily on the request path. A relative root
    // would resolve against the process's cwd, so it serves nothing instead.
    if (!path.isAbsolute(opts.root)) this.#realRoot = Promise.resolve(null);
  }

  /** rawPath: relative to the location, still percent-encoded, starts with '/', no query. */
  serve(req: IncomingMessage, res: ServerResponse, rawPath: string): void {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendError(res, 'METHOD_NOT_ALLOWED', 'GET, HEAD');
      return;
    }
    this.#handle(req, res, rawPath).catch(() => fail(res));
  }

  /** The root's realpath, resolved once; a failure is not cached (the root may appear later). */
  #rootPath(): Promise<RealRoot | null> {
    this.#realRoot ??= fsp.realpath(this.#root).then(
      (real) => ({ real, prefix: real.endsWith(path.sep) ? real : real + path.sep }),
      () => {
        this.#realRoot = undefined;
        return null;
      },
    );
    return this.#realRoot;
  }

  async #handle(req: IncomingMessage, res: ServerResponse, rawPath: string): Promise<void> {
    const safe = safePath(rawPath);
    if (safe === null) return sendError(res, 'NOT_FOUND');
    const root = await this.#rootPath();
    if (root === null) return sendError(res, 'NOT_FOUND');

    let target = path.join(root.real, ...safe.segments);
    let r = await this.#resolve(root, target);
    if (r.kind === 'dir') {
      const url = req.url ?? '/';
      const p = urlPath(url);
      if (!p.endsWith('/')) {
        // RFC 9110 §15.4.9: 308 keeps the method. Relative links in the index
        // need the slash form. Collapse leading slashes: `//evil.test/dir/` in
        // Location would be a protocol-relative open redirect.
        const q = url.indexOf('?');
        res.statusCode = 308;
        res.setHeader('Location', p.replace(LEADING_SLASHES, '/') + '/' + (q < 0 ? '' : url.slice(q)));
        res.setHeader('Content-Length', 0);
        res.end();
        return;
      }
      target = path.join(target, INDEX);
      r = await this.#resolve(root, target);
      if (r.kind === 'dir') r = MISSING;
    } else if (r.kind === 'file' && safe.trailingSlash) {
      closeQuietly(r.fh); // `file.txt/` names nothing, as in nginx
      r = MISSING;
    }

    let spaFallback = false;
    if (r.kind === 'missing' && this.#spa && !lastHasExtension(safe.segments)) {
      // Only reached for lexically safe paths that are absent: a refused or
      // escaping path returned 404 above and never lands here.
      target = path.join(root.real, INDEX);
      r = await this.#resolve(root, target);
      spaFallback = true;
    }
    if (r.kind !== 'file') return sendError(res, 'NOT_FOUND');
    await this.#send(req, res, root, target, r.fh, r.stats, spaFallback);
  }

  /** Open `target` if its realpath stays inside the root and names no dotfile. */
  async #resolve(root: RealRoot, target: string): Promise<Resolved> {
    let real: string;
    try {
      real = await fsp.realpath(target);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return code === 'ENOENT' || code === 'ENOTDIR' ? MISSING : FORBIDDEN;
    }
    if (real !== root.real) {
      if (!real.startsWith(root.prefix)) return FORBIDDEN; // a symlink out of the root
      if (hasHiddenSegment(real.slice(root.prefix.length), path.sep)) return FORBIDDEN;
    }
    let fh: FileHandle;
    try {
      fh = await fsp.open(real, OPEN_FLAGS);
    } catch {
      return FORBIDDEN; // EACCES and the like: 404, nothing to say about it
    }
    // fstat on the open handle: size and mtime describe the bytes we will send.
    const stats = await fh.stat().catch(() => null);
    if (stats !== null && stats.isFile()) return { kind: 'file', fh, stats };
    closeQuietly(fh);
    return stats !== null && stats.isDirectory() ? DIR : FORBIDDEN;
  }

  async #send(
    req: IncomingMessage,
    res: ServerResponse,
    root: RealRoot,
    target: string,
    identity: FileHandle,
    identityStats: Stats,
    spaFallback: boolean,
  ): Promise<void> {
    const info = typeOf(target);
    let fh = identity;
    let stats = identityStats;
    let encoding: Encoding | undefined;
    const range = req.method === 'GET' ? req.headers.range : undefined;
    // Range requests always get the identity file: a range of a .br sibling
    // would be a range of a different representation with its own length,
    // which caches and resuming clients handle badly. Simplest correct choice.
    if (info.compressible && range === undefined) {
      for (const enc of acceptedEncodings(req.headers['accept-encoding'])) {
        const v = await this.#resolve(root, target + enc.suffix);
        if (v.kind === 'file') {
          closeQuietly(identity);
          fh = v.fh;
          stats = v.stats;
          encoding = enc;
          break;
        }
      }
    }
    if (res.destroyed) return closeQuietly(fh); // the client left while we looked

    const size = stats.size;
    // Strong validator (RFC 9110 §8.8.3): each variant has its own bytes, so its
    // own tag, and If-Range needs a strong one.
    const etag = `"${size.toString(16)}-${Math.floor(stats.mtimeMs).toString(16)}${encoding === undefined ? '' : '-' + encoding.token}"`;
    res.setHeader('Accept-Ranges', 'bytes');
    res.setHeader('ETag', etag);
    res.setHeader('Last-Modified', stats.mtime.toUTCString());
    // index.html is the entry point that names the (usually hashed) assets: it
    // must be revalidated every time. Others may be stored but revalidated
    // (max-age=0), which the ETag makes a cheap 304.
    const isIndex = spaFallback || path.basename(target) === INDEX;
    res.setHeader('Cache-Control', isIndex ? 'no-cache' : 'public, max-age=0');
    if (info.compressible) res.setHeader('Vary', 'Accept-Encoding');
    res.setHeader('X-Content-Type-Options', 'nosniff');

    const cond = checkConditions(req.headers, etag, stats.mtimeMs);
    if (cond !== 200) {
      res.statusCode = cond; // 304 or 412, no body (RFC 9110 §15.4.5, §15.5.13)
      res.end();
      return closeQuietly(fh);
    }
    res.setHeader('Content-Type', info.contentType);
    if (encoding !== undefined) res.setHeader('Content-Encoding', encoding.token);

    let start = 0;
    let end = size - 1;
    if (range !== undefined) {
      const ifRange = req.headers['if-range'];
      const parsed = parseRange(range, size, typeof ifRange === 'string' ? ifRange : undefined, etag, stats.mtimeMs);
      if (parsed === 'unsatisfiable') {
        res.statusCode = 416;
        res.setHeader('Content-Range', `bytes */${size}`);
        res.setHeader('Content-Length', 0);
        res.end();
        return closeQuietly(fh);
      }
      if (parsed !== null) {
        start = parsed.start;
        end = parsed.end;
        res.statusCode = 206;
        res.setHeader('Content-Range', `bytes ${start}-${end}/${size}`);
      }
    }
    res.setHeader('Content-Length', end - start + 1);
    if (req.method === 'HEAD' || size === 0) {
      res.end();
      return closeQuietly(fh);
    }
    // pipeline destroys the read stream when the client aborts, and the
    // stream's autoClose closes the handle: no fd outlives the response.
    pipeline(fh.createReadStream({ start, end }), res, streamDone);
  }
}

function lastHasExtension(segments: readonly string[]): boolean {
  const last = segments.length === 0 ? '' : segments[segments.length - 1]!;
  return last.includes('.');
}

// ---- Content negotiation, conditionals and ranges (RFC 9110 §12.5.3, §13, §14)

interface Encoding {
  /** Content-Encoding token. */
  readonly token: 'br' | 'gzip';
  /** Sibling file suffix. */
  readonly suffix: '.br' | '.gz';
}
const BR: Encoding = { token: 'br', suffix: '.br' };
const GZIP: Encoding = { token: 'gzip', suffix: '.gz' };
const BR_GZIP: readonly Encoding[] = [BR, GZIP];
const GZIP_BR: readonly Encoding[] = [GZIP, BR];
const ONLY_BR: readonly Encoding[] = [BR];
const ONLY_GZIP: readonly Encoding[] = [GZIP];
const NO_ENCODING: readonly Encoding[] = [];

/** A qvalue (RFC 9110 §12.4.2) from a member's parameters; malformed counts as 0 (not acceptable). */
function qvalue(member: string, semi: number): number {
  if (semi < 0) return 1;
  const params = member.slice(semi + 1).split(';');
  for (const param of params) {
    const eq = param.indexOf('=');
    if (eq < 0 || param.slice(0, eq).trim().toLowerCase() !== 'q') continue;
    const q = Number(param.slice(eq + 1).trim());
    return Number.isFinite(q) && q >= 0 && q <= 1 ? q : 0;
  }
  return 1;
}

/**
 * The precompressed encodings the client accepts, best first (RFC 9110 §12.5.3):
 * higher q wins, br on a tie (smaller); q=0 means "not acceptable", and `*`
 * stands for any coding not named.
 */
function acceptedEncodings(header: string | undefined): readonly Encoding[] {
  if (header === undefined || header.length === 0) return NO_ENCODING;
  let br = -1;
  let gzip = -1;
  let star = -1;
  for (const member of header.split(',')) {
    const semi = member.indexOf(';');
    const name = (semi < 0 ? member : member.slice(0, semi)).trim().toLowerCase();
    if (name === 'br') br = qvalue(member, semi);
    else if (name === 'gzip' || name === 'x-gzip') gzip = qvalue(member, semi); // §8.4.1.3
    else if (name === '*') star = qvalue(member, semi);
  }
  if (br < 0) br = star;
  if (gzip < 0) gzip = star;
  if (br > 0 && gzip > 0) return br >= gzip ? BR_GZIP : GZIP_BR;
  if (br > 0) return ONLY_BR;
  return gzip > 0 ? ONLY_GZIP : NO_ENCODING;
}

/** Does an entity-tag list (If-Match / If-None-Match) contain `etag`? `*` matches any. */
function etagListMatches(list: string, etag: string, weak: boolean): boolean {
  if (list.trim() === '*') return true;
  for (let tag of list.split(',')) {
    tag = tag.trim();
    if (tag.startsWith('W/')) {
      if (!weak) continue; // strong comparison never matches a weak tag (§8.8.3.2)
      tag = tag.slice(2);
    }
    if (tag === etag) return true;
  }
  return false;
}

/** HTTP-date → whole seconds, or NaN. Last-Modified has one-second resolution. */
function dateSeconds(value: string): number {
  return Math.floor(Date.parse(value) / 1000);
}

/**
 * RFC 9110 §13.2.2 evaluation order for GET/HEAD: If-Match, else
 * If-Unmodified-Since (412 when failing); then If-None-Match, else
 * If-Modified-Since (304 when the client's copy is current). 200 = proceed.
 */
function checkConditions(headers: IncomingMessage['headers'], etag: string, mtimeMs: number): 200 | 304 | 412 {
  const mtime = Math.floor(mtimeMs / 1000);
  const ifMatch = headers['if-match'];
  if (ifMatch !== undefined) {
    if (!etagListMatches(ifMatch, etag, false)) return 412;
  } else {
    const ius = headers['if-unmodified-since'];
    if (ius !== undefined && mtime > dateSeconds(ius)) return 412; // NaN: ignored (§13.1.4)
  }
  const inm = headers['if-none-match'];
  if (inm !== undefined) return etagListMatches(inm, etag, true) ? 304 : 200;
  const ims = headers['if-modified-since'];
  if (ims !== undefined && mtime <= dateSeconds(ims)) return 304;
  return 200;
}

const DIGITS = /^\d+$/;

/**
 * One `bytes=` range (RFC 9110 §14.1.2) → inclusive offsets. null means "ignore
 * the Range header and send 200": malformed, an If-Range that does not match
 * (§13.1.5), or several ranges (§14.2 lets a server serve the whole
 * representation instead of multipart/byteranges).
 */
function parseRange(
  header: string,
  size: number,
  ifRange: string | undefined,
  etag: string,
  mtimeMs: number,
): { start: number; end: number } | 'unsatisfiable' | null {
  if (ifRange !== undefined) {
    const v = ifRange.trim();
    // An entity-tag needs a strong match; a date must equal Last-Modified exactly.
    const current = v.startsWith('"') || v.startsWith('W/') ? v === etag : dateSeconds(v) === Math.floor(mtimeMs / 1000);
    if (!current) return null;
  }
  if (header.length < 6 || header.slice(0, 6).toLowerCase() !== 'bytes=') return null;
  const spec = header.slice(6).trim();
  if (spec.includes(',')) return null;
  const dash = spec.indexOf('-');
  if (dash < 0) return null;
  const first = spec.slice(0, dash).trim();
  const last = spec.slice(dash + 1).trim();
  if (first === '') {
    // suffix-range `-n`: the last n bytes; `-0` or an empty file cannot be satisfied
    if (!DIGITS.test(last)) return null;
    const n = Number(last);
    if (n === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  if (!DIGITS.test(first) || (last !== '' && !DIGITS.test(last))) return null;
  const start = Number(first);
  if (last !== '' && Number(last) < start) return null; // invalid range-spec (§14.1.1)
  if (start >= size) return 'unsatisfiable';
  return { start, end: last === '' ? size - 1 : Math.min(Number(last), size - 1) };
}
