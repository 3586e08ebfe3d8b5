// Scopes (RFC 6749 §3.3): a space-delimited list of scope-tokens, each one
// or more of %x21 / %x23-5B / %x5D-7E (printable ASCII but space, `"` and
// `\`). Kept as arrays in the store, joined with one space on the wire.

const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/;
export const MAX_SCOPE_TOKEN = 256;

export function isScopeToken(s: string): boolean {
  return s.length <= MAX_SCOPE_TOKEN && SCOPE_TOKEN.test(s);
}

/** The scopes of a `scope` parameter, without duplicates; undefined when one is not a scope-token. */
export function parseScope(s: string): string[] | undefined {
  const out: string[] = [];
  for (const t of s.split(' ')) {
    if (t === '') continue;
    if (!isScopeToken(t)) return undefined;
    if (!out.includes(t)) out.push(t);
  }
  return out;
}

/** Whether every scope of `want` is in `have`. */
export function within(want: readonly string[], have: readonly string[]): boolean {
  return want.every((s) => have.includes(s));
}

export function joinScope(s: readonly string[]): string {
  return s.join(' ');
}
