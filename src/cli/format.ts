// Readable output for the CLI (the default; `--json` prints the API's JSON
// instead): aligned tables and `key: value` blocks, built from the API's JSON
// without assuming more of its shape than the contract fixes, so a field added
// to the API later shows up rather than breaking the table.

type Obj = Record<string, unknown>;

export function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// Whatever the API echoes (a URL someone typed, a message) must not move the
// terminal's cursor or set its title.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

export function clean(s: string): string {
  return s.replace(CONTROL, '?');
}

/** Columns separated by two spaces, headers in capitals, the last column unpadded. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [headers.map((h) => h.toUpperCase()), ...rows.map((r) => r.map(clean))];
  const widths = headers.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]): string =>
    r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ').trimEnd();
  return all.map(line).join('\n') + '\n';
}

/** Aligned `key: value` lines. */
export function keyValues(pairs: readonly (readonly [string, string])[]): string {
  const width = Math.max(0, ...pairs.map(([k]) => k.length)) + 1;
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(width)}  ${clean(v)}`).join('\n') + '\n';
}

/** A scalar or small structure on one line. */
export function scalar(v: unknown): string {
  if (v === undefined || v === null) return '-';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}

/** Nested objects as dotted keys (`location.path`), arrays of scalars joined; for responses with no fixed table. */
export function flatten(v: unknown, prefix = ''): [string, string][] {
  if (!isObject(v)) return [[prefix || 'value', scalar(v)]];
  const out: [string, string][] = [];
  for (const [k, inner] of Object.entries(v)) {
    const key = prefix === '' ? k : `${prefix}.${k}`;
    if (isObject(inner) && Object.keys(inner).length > 0) out.push(...flatten(inner, key));
    else if (Array.isArray(inner) && inner.every((x) => !isObject(x) && !Array.isArray(x))) out.push([key, inner.length === 0 ? '-' : inner.map(scalar).join(', ')]);
    else out.push([key, scalar(inner)]);
  }
  return out;
}

/**
 * An entry's or location's `access`: `public`, `user`, `scope org:…:member`,
 * `users a, b`; `absent` when there is none (an entry then has its host kind's
 * default, a location its entry's).
 */
export function accessText(access: unknown, absent: string): string {
  if (access === undefined || access === null) return absent;
  if (typeof access === 'string') return access;
  if (isObject(access)) {
    if (typeof access['scope'] === 'string') return `scope ${access['scope']}`;
    if (Array.isArray(access['users'])) return `users ${access['users'].map(scalar).join(', ')}`;
  }
  return scalar(access);
}

/** Where a location sends a request: its upstream(s), `service:NAME` or `static:ROOT`. */
export function targetText(loc: Obj): string {
  if (typeof loc['upstream'] === 'string') return loc['upstream'];
  if (Array.isArray(loc['upstreams'])) return loc['upstreams'].map(scalar).join(' ');
  if (typeof loc['service'] === 'string') return `service:${loc['service']}`;
  if (isObject(loc['static'])) return `static:${scalar(loc['static']['root'])}`;
  return '-';
}

const SUMMARY_MAX = 60;

/** `/ → http://10.0.0.5:8080, /collab/yjs → service:collab`, cut to fit a table column. */
export function locationsSummary(locations: unknown): string {
  if (!Array.isArray(locations) || locations.length === 0) return '-';
  const text = locations.map((l) => (isObject(l) ? `${scalar(l['path'])} → ${targetText(l)}` : scalar(l))).join(', ');
  return text.length <= SUMMARY_MAX ? text : `${text.slice(0, SUMMARY_MAX - 1)}…`;
}

/** `expires_at` relative to now: `in 29s`, `in 4m`, `expired`; `-` for entries without a lease. */
export function expiresText(expiresAt: unknown, now = Date.now()): string {
  if (typeof expiresAt !== 'string') return '-';
  const at = Date.parse(expiresAt);
  if (Number.isNaN(at)) return expiresAt;
  const s = Math.round((at - now) / 1000);
  if (s <= 0) return 'expired';
  if (s < 120) return `in ${s}s`;
  if (s < 7200) return `in ${Math.round(s / 60)}m`;
  return `in ${Math.round(s / 3600)}h`;
}
