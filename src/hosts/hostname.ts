// Host names by the contract (DESIGN.md "Hostnames"): what a Host header
// normalizes to, what kind of host a name is, and which names an entry may use.
// normalizeHost runs once per request, so it is a single char loop that returns
// its input unchanged (no allocation) when the header is already normal.

import type { HostInfo } from '../routes/types.js';

const DOT = 0x2e;
const DASH = 0x2d;
const COLON = 0x3a;
const MAX_NAME = 253;
const MAX_LABEL = 63;
const UUID_LENGTH = 36;

function isLowerAlnum(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39);
}

/** Digits from `start` to the end of `s`, at most 65535. */
function isPort(s: string, start: number): boolean {
  const n = s.length;
  if (start >= n || n - start > 5) return false;
  let value = 0;
  for (let i = start; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
    value = value * 10 + (c - 0x30);
  }
  return value <= 65535;
}

/** `[v6]` or `[v6]:port` → `[v6]` lower-cased; the address itself is only char-checked (it routes nowhere). */
function normalizeBracketed(raw: string): string | undefined {
  const close = raw.indexOf(']');
  if (close < 3 || close > 47) return undefined; // '[::]' is the shortest, 45 chars the longest address
  let upper = false;
  let colons = 0;
  for (let i = 1; i < close; i++) {
    const c = raw.charCodeAt(i);
    if (c === COLON) colons++;
    else if (c >= 0x41 && c <= 0x46) upper = true;
    else if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || c === DOT)) return undefined;
  }
  if (colons < 2) return undefined;
  if (close + 1 < raw.length && (raw.charCodeAt(close + 1) !== COLON || !isPort(raw, close + 2))) return undefined;
  const name = close + 1 === raw.length ? raw : raw.slice(0, close + 1);
  return upper ? name.toLowerCase() : name;
}

/**
 * Host header → lower-case DNS name without port or trailing dot, or undefined
 * when missing or malformed (the caller answers 400). IPv4 literals pass the
 * label rules and simply route nowhere; '*' and '_' are refused.
 */
export function normalizeHost(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  const n = raw.length;
  if (n === 0) return undefined;
  if (raw.charCodeAt(0) === 0x5b) return normalizeBracketed(raw);

  let end = n; // end of the name: the port separator or the end of input
  let labelStart = 0;
  let upper = false;
  for (let i = 0; i < n; i++) {
    const c = raw.charCodeAt(i);
    if (isLowerAlnum(c)) continue;
    if (c === DOT) {
      const len = i - labelStart;
      if (len === 0 || len > MAX_LABEL || raw.charCodeAt(i - 1) === DASH) return undefined;
      labelStart = i + 1;
    } else if (c === DASH) {
      if (i === labelStart) return undefined;
    } else if (c >= 0x41 && c <= 0x5a) {
      upper = true;
    } else if (c === COLON) {
      if (!isPort(raw, i + 1)) return undefined;
      end = i;
      break;
    } else {
      return undefined;
    }
  }

  let nameEnd = end;
  if (labelStart === end) {
    // Empty last label: either nothing at all (':80') or one trailing dot,
    // whose preceding label the loop has already checked.
    if (end === 0) return undefined;
    nameEnd = end - 1;
  } else if (end - labelStart > MAX_LABEL || raw.charCodeAt(end - 1) === DASH) {
    return undefined;
  }
  if (nameEnd > MAX_NAME) return undefined;
  if (nameEnd === n) return upper ? raw.toLowerCase() : raw;
  const name = raw.slice(0, nameEnd);
  return upper ? name.toLowerCase() : name;
}

/** Lower-case DNS name from `start` to the end of `s`: labels 1–63 of [a-z0-9-], no edge '-', ≤ 253 in all. */
function isDnsNameFrom(s: string, start: number): boolean {
  const n = s.length;
  if (n === start || n - start > MAX_NAME) return false;
  let labelStart = start;
  for (let i = start; i <= n; i++) {
    const c = i === n ? DOT : s.charCodeAt(i);
    if (c === DOT) {
      const len = i - labelStart;
      if (len === 0 || len > MAX_LABEL || s.charCodeAt(i - 1) === DASH) return false;
      labelStart = i + 1;
    } else if (c === DASH) {
      if (i === labelStart) return false;
    } else if (!isLowerAlnum(c)) {
      return false;
    }
  }
  return true;
}

/** A normalized host an entry may use: a DNS name, or '*.' + a DNS name (one wildcard label, leftmost). */
export function isValidEntryHost(host: string): boolean {
  if (host.charCodeAt(0) === 0x2a) return host.charCodeAt(1) === DOT && isDnsNameFrom(host, 2);
  return isDnsNameFrom(host, 0);
}

/** Lower-case 8-4-4-4-12 hex at `start`, exactly UUID_LENGTH chars long. */
function isUuidAt(s: string, start: number): boolean {
  if (s.length < start + UUID_LENGTH) return false;
  for (let i = 0; i < UUID_LENGTH; i++) {
    const c = s.charCodeAt(start + i);
    if (i === 8 || i === 13 || i === 18 || i === 23) {
      if (c !== DASH) return false;
    } else if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66))) {
      return false;
    }
  }
  return true;
}

export function isUuid(s: string): boolean {
  return s.length === UUID_LENGTH && isUuidAt(s, 0);
}

const APEX: HostInfo = Object.freeze({ kind: 'apex' });
const NAMED: HostInfo = Object.freeze({ kind: 'named' });
const ORG_PREFIX = 'org-';
const UC_PREFIX = 'uc-';
const WILDCARD_PREFIX = '*.';

/** True when s[start, end) is exactly `org-{uuid}`. */
function isOrgLabel(s: string, start: number, end: number): boolean {
  return end - start === ORG_PREFIX.length + UUID_LENGTH && s.startsWith(ORG_PREFIX, start) && isUuidAt(s, start + ORG_PREFIX.length);
}

/**
 * What `host` (normalized) is under `domain` (normalized). Only exact shapes
 * count: an org label with an upper-case or malformed UUID, or one outside the
 * domain, is just a named host and gets no org default access.
 */
export function classifyHost(host: string, domain: string): HostInfo {
  if (host === domain) return APEX;
  const end = host.length - domain.length - 1; // where the '.' before the domain sits
  if (end <= 0 || host.charCodeAt(end) !== DOT || !host.endsWith(domain)) return NAMED;

  if (isOrgLabel(host, 0, end)) return { kind: 'org', orgId: host.slice(ORG_PREFIX.length, end) };
  if (host.startsWith(WILDCARD_PREFIX) && isOrgLabel(host, WILDCARD_PREFIX.length, end)) {
    return { kind: 'org-wildcard', orgId: host.slice(WILDCARD_PREFIX.length + ORG_PREFIX.length, end) };
  }
  const orgStart = UC_PREFIX.length + UUID_LENGTH + 1;
  if (host.startsWith(UC_PREFIX) && host.charCodeAt(orgStart - 1) === DOT && isUuidAt(host, UC_PREFIX.length) && isOrgLabel(host, orgStart, end)) {
    return {
      kind: 'uc',
      orgId: host.slice(orgStart + ORG_PREFIX.length, end),
      ucId: host.slice(UC_PREFIX.length, orgStart - 1),
    };
  }
  return NAMED;
}
