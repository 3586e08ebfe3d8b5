// Turns a request path (still percent-encoded, relative to a static location)
// into path segments that cannot name anything outside the location's root.
//
// The check works on decoded segments rather than on the joined filesystem path:
// refusing a segment is unambiguous, while "normalize, then check the prefix"
// depends on every layer agreeing on what normalization means (the classic
// source of traversal bugs). Symlinks are the one escape this cannot see; the
// caller checks the realpath of the final file against the root's realpath.

/** A decoded, safe path: segments to join under the root. */
export interface SafePath {
  /** Non-empty segments, none of them '.', '..', a dotfile, or containing '/', '\\', NUL or '%'. */
  readonly segments: readonly string[];
  /** The request path ended in '/': it names a directory (its index). */
  readonly trailingSlash: boolean;
}

/**
 * The one dot-segment allowed: RFC 8615 reserves `/.well-known/` for public
 * metadata (security.txt, assetlinks.json, …) that a static frontend may serve.
 * Every other dotfile (`.env`, `.git/`, `.htpasswd`) is private by convention.
 */
const WELL_KNOWN = '.well-known';

const CHAR_PERCENT = 0x25;
const CHAR_BACKSLASH = 0x5c;
const CHAR_NUL = 0x00;

/** True when `s` contains a character no decoded segment may hold. */
function hasForbiddenChar(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    // '%' left after one decode means double encoding (`%252e`): refusing it is
    // the only way to stay correct whatever decodes this path again later.
    // '\\' is a separator on Windows and for some URL parsers (WHATWG treats it
    // as '/' in special schemes), so it is never a filename character here.
    if (c === CHAR_PERCENT || c === CHAR_BACKSLASH || c === CHAR_NUL) return true;
  }
  return false;
}

/**
 * Decode and vet `rawPath` (starts with '/', no query). Returns null for any path
 * that is malformed or tries to leave the root: the caller answers 404 and must
 * not fall back to the SPA index for it.
 */
export function safePath(rawPath: string): SafePath | null {
  if (rawPath.length === 0 || rawPath.charCodeAt(0) !== 0x2f) return null;
  // Backslashes are refused before decoding too, so `\` and `%5c` fail alike.
  if (rawPath.includes('\\')) return null;

  let decoded: string;
  try {
    // RFC 3986 §2.1: one level of percent-decoding. Malformed escapes (`%zz`,
    // a lone `%`) and invalid UTF-8 (overlong `%c0%ae`) throw URIError.
    decoded = decodeURIComponent(rawPath);
  } catch {
    return null;
  }
  if (hasForbiddenChar(decoded)) return null;

  // Split after decoding so `%2f` acts as the separator it decodes to; the
  // segment checks below then see `%2e%2e%2f` as the `..` it is.
  const parts = decoded.split('/');
  const segments: string[] = [];
  for (const part of parts) {
    // Empty segments (`//`) are merged, as nginx's merge_slashes does.
    if (part.length === 0) continue;
    // RFC 3986 §5.2.4 dot-segments are refused rather than resolved: a client
    // that sends them on purpose is probing, and resolving `a/../b` would let
    // it reach names a plain request cannot.
    if (part.charCodeAt(0) === 0x2e /* '.' */ && part !== WELL_KNOWN) return null;
    segments.push(part);
  }
  return { segments, trailingSlash: decoded.endsWith('/') };
}

/**
 * True when `rel` (a path relative to the root, '/'-separated, as produced by
 * slicing a realpath) holds a dot-segment other than `.well-known`: a symlink
 * inside the root that points at `.env` is as private as `.env` itself.
 */
export function hasHiddenSegment(rel: string, sep: string): boolean {
  let start = 0;
  while (start <= rel.length) {
    let end = rel.indexOf(sep, start);
    if (end < 0) end = rel.length;
    if (rel.charCodeAt(start) === 0x2e && rel.slice(start, end) !== WELL_KNOWN) return true;
    start = end + 1;
  }
  return false;
}
