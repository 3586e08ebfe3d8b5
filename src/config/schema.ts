// Small declarative field readers for the config validator. A Section wraps
// one YAML mapping and its dotted path; each read records the key as known,
// checks type and range, and returns the value or the default. Problems are
// collected (not thrown) so an operator sees every bad key at once, and
// `done()` reports whatever keys were never read as unknown: the list of
// allowed keys is the code that reads them, so it cannot drift.

import { isIP } from 'node:net';

export interface Issue {
  readonly key: string;
  readonly message: string;
}

export class Issues {
  readonly list: Issue[] = [];

  /** `key: expected WHAT, got SHOWN`, the one message shape for bad values. */
  expected(key: string, what: string, got: string): void {
    this.list.push({ key, message: `${key}: expected ${what}, got ${got}` });
  }

  unknown(key: string): void {
    this.list.push({ key, message: `${key}: unknown key` });
  }
}

/** A value as the operator wrote it, short; secrets are never passed here. */
export function shown(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return v.length <= 8 ? JSON.stringify(v) : 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return JSON.stringify(v.length > 80 ? `${v.slice(0, 77)}...` : v);
  return String(v);
}

export function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export class Section {
  private readonly seen = new Set<string>();

  constructor(
    readonly issues: Issues,
    /** Dotted path of this mapping, '' at the top level. */
    readonly path: string,
    private readonly obj: Record<string, unknown>,
  ) {}

  key(name: string): string {
    return this.path === '' ? name : `${this.path}.${name}`;
  }

  /** The raw value (undefined when absent; YAML `null` counts as absent). */
  raw(name: string): unknown {
    this.seen.add(name);
    const v = this.obj[name];
    return v === null ? undefined : v;
  }

  /** A nested mapping; absent means empty, so every key inside gets its default. */
  section(name: string): Section {
    const v = this.raw(name);
    if (v === undefined) return new Section(this.issues, this.key(name), {});
    if (!isMapping(v)) {
      this.issues.expected(this.key(name), 'a mapping', shown(v));
      return new Section(this.issues, this.key(name), {});
    }
    return new Section(this.issues, this.key(name), v);
  }

  int(name: string, def: number, min: number, max: number): number {
    const v = this.raw(name);
    if (v === undefined) return def;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      this.issues.expected(this.key(name), `an integer ${min}-${max}`, shown(v));
      return def;
    }
    return v;
  }

  bool(name: string, def: boolean): boolean {
    const v = this.raw(name);
    if (v === undefined) return def;
    if (typeof v !== 'boolean') {
      this.issues.expected(this.key(name), 'true or false', shown(v));
      return def;
    }
    return v;
  }

  /** An optional non-empty string. */
  str(name: string): string | undefined {
    const v = this.raw(name);
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v === '') {
      this.issues.expected(this.key(name), 'a non-empty string', shown(v));
      return undefined;
    }
    return v;
  }

  oneOf<T extends string>(name: string, values: readonly T[], def: T): T {
    const v = this.raw(name);
    if (v === undefined) return def;
    if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) {
      this.issues.expected(this.key(name), `one of ${values.join(', ')}`, shown(v));
      return def;
    }
    return v as T;
  }

  /** An optional list of strings (each checked by the caller). */
  strings(name: string): string[] | undefined {
    const v = this.raw(name);
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) {
      this.issues.expected(this.key(name), 'a list of strings', shown(v));
      return undefined;
    }
    return v as string[];
  }

  /** Reports every key of this mapping that nothing read. Call last. */
  done(): void {
    for (const k of Object.keys(this.obj)) if (!this.seen.has(k)) this.issues.unknown(this.key(k));
  }
}

// --- value syntaxes ------------------------------------------------------

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** A lower-case DNS name (no trailing dot, no wildcard, not an IP address). */
export function isDnsName(s: string): boolean {
  if (s.length === 0 || s.length > 253 || isIP(s) !== 0) return false;
  return s.split('.').every((l) => LABEL.test(l));
}

/** `HOST:PORT` with an IPv4 address, `[IPv6]` or a DNS name; the host comes back without brackets. */
export function parseHostPort(s: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(s);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  if (m[1] !== undefined) return isIP(m[1]) === 6 ? { host: m[1], port } : undefined;
  const host = m[2]!;
  if (isIP(host) === 4 || isDnsName(host.toLowerCase())) return { host, port };
  return undefined;
}

/** `ADDRESS/PREFIX`, IPv4 or IPv6, prefix within the family's width. */
export function isCidr(s: string): boolean {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(s);
  if (!m) return false;
  const family = isIP(m[1]!);
  if (family === 0) return false;
  return Number(m[2]) <= (family === 4 ? 32 : 128);
}

/** An absolute URL of one of the given schemes (e.g. ['https:']). */
export function isUrl(s: string, schemes: readonly string[]): boolean {
  try {
    const u = new URL(s);
    return schemes.includes(u.protocol) && u.hostname !== '';
  } catch {
    return false;
  }
}
