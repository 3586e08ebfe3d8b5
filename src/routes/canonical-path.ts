// Request paths are made canonical before location matching, so that no
// spelling of a path can reach a location other than the one its meaning
// names: `/%61dmin`, `//admin` and `/./x/../admin` all match `/admin`, and the
// upstream receives the same canonical path the decision was made on (what
// nginx does with merge_slashes and URI normalization). Only what RFC 3986
// calls equivalent is changed: percent-encoded unreserved characters are
// decoded (§6.2.2.2), dot segments removed (§5.2.4), and empty segments
// merged. Reserved escapes such as `%2F` stay encoded: Jupyter's contents API
// relies on them.
//
// The fast path (no '%', no "/.", no "//") returns the input unchanged and
// allocates nothing; that is nearly every request.

const HEX = new Int8Array(128).fill(-1);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX[65 + i] = 10 + i;
  HEX[97 + i] = 10 + i;
}

function isUnreserved(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e || c === 0x5f || c === 0x7e
  );
}

function needsWork(path: string, end: number): boolean {
  for (let i = 0; i < end; i++) {
    const c = path.charCodeAt(i);
    if (c === 37 /* % */) return true;
    if (c === 47 /* / */ && i + 1 < end) {
      const n = path.charCodeAt(i + 1);
      if (n === 47 || n === 46 /* . */) return true;
    }
  }
  return false;
}

/**
 * The canonical form of an origin-form request target (path plus optional
 * query; the query is left as it is), or undefined when the path climbs above
 * the root or holds a malformed escape (the caller answers 400).
 */
export function canonicalTarget(target: string): string | undefined {
  const q = target.indexOf('?');
  const end = q === -1 ? target.length : q;
  if (!needsWork(target, end)) return target;

  // Decode escapes of unreserved characters; keep the others as they are.
  let decoded = '';
  for (let i = 0; i < end; i++) {
    const c = target.charCodeAt(i);
    if (c !== 37) {
      decoded += target[i];
      continue;
    }
    const h = i + 2 < end ? HEX[target.charCodeAt(i + 1) & 127]! : -1;
    const l = i + 2 < end ? HEX[target.charCodeAt(i + 2) & 127]! : -1;
    if (h < 0 || l < 0 || target.charCodeAt(i + 1) > 127 || target.charCodeAt(i + 2) > 127) return undefined;
    const v = h * 16 + l;
    decoded += isUnreserved(v) ? String.fromCharCode(v) : target.slice(i, i + 3);
    i += 2;
  }

  // Remove dot segments and merge empty ones.
  const out: string[] = [];
  const segments = decoded.split('/');
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i]!;
    if (s === '.' || (s === '' && i < segments.length - 1)) continue;
    if (s === '..') {
      if (out.length === 0) return undefined;
      out.pop();
      continue;
    }
    out.push(s);
  }
  // A trailing "/." or "/.." keeps the path a directory (RFC 3986 §5.2.4).
  const last = segments[segments.length - 1];
  if ((last === '.' || last === '..') && out[out.length - 1] !== '') out.push('');
  const path = `/${out.join('/')}`;
  return q === -1 ? path : path + target.slice(q);
}
