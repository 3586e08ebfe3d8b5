// Which addresses the edge may connect to on behalf of an API-registered host
// entry (DESIGN.md "Admin API": upstreams must fall inside
// admin.allowed_upstreams). Used twice: by the admin API when an entry is
// registered, and by the data plane's guarded lookup (guarded-lookup.ts) when
// a name is resolved again at connect time. Built once from the config; a check
// is one or two BlockList probes.
//
// Link-local and cloud metadata addresses are never reached through a broad
// CIDR: `0.0.0.0/0` does not let an entry point at 169.254.169.254. They pass
// only when allowed_upstreams lists a range that lies inside the sensitive
// range itself (`169.254.0.0/16`, `169.254.169.254/32`, …): an operator has to
// mean it. The metadata services answer credentials to whoever asks from the
// machine (the classic SSRF prize), and link-local space is where they live.

import { BlockList, isIP } from 'node:net';
import { EdgewayError } from '../errors.js';

export type Family = 'ipv4' | 'ipv6';

export interface Cidr {
  readonly address: string;
  readonly prefix: number;
  readonly family: Family;
}

/**
 * Ranges refused unless listed explicitly: link-local (RFC 3927, RFC 4291
 * §2.5.6), the metadata services of AWS (169.254.169.254, its IPv6
 * fd00:ec2::254, inside the unique-local fd00::/8 many lists allow) and
 * Alibaba (100.100.100.200, inside CGNAT space), and "this host" (RFC 1122
 * §3.2.1.3: a connect to 0.0.0.0 or :: reaches the local machine).
 */
export const SENSITIVE_RANGES: readonly string[] = Object.freeze([
  '169.254.0.0/16',
  'fe80::/10',
  'fd00:ec2::254/128',
  '100.100.100.200/32',
  '0.0.0.0/8',
  '::/128',
]);

const PREFIX = /^\d{1,3}$/;

/** Parses `10.0.0.0/8`, `fd00::/8` or a bare address; undefined when malformed. */
export function parseCidr(text: string): Cidr | undefined {
  if (typeof text !== 'string') return undefined;
  const slash = text.indexOf('/');
  const address = slash === -1 ? text : text.slice(0, slash);
  const v = isIP(address);
  if (v === 0) return undefined;
  const max = v === 4 ? 32 : 128;
  let prefix = max;
  if (slash !== -1) {
    const p = text.slice(slash + 1);
    if (!PREFIX.test(p)) return undefined;
    prefix = Number(p);
    if (prefix > max) return undefined;
  }
  return { address, prefix, family: v === 4 ? 'ipv4' : 'ipv6' };
}

/** A BlockList holding `cidrs`; throws CONFIG_INVALID naming `key[i]` for a malformed one. */
export function buildBlockList(cidrs: readonly string[], key: string): BlockList {
  const list = new BlockList();
  cidrs.forEach((c, i) => {
    const p = parseCidr(c);
    if (p === undefined) {
      throw new EdgewayError('CONFIG_INVALID', `${key}[${i}]: not a CIDR`, { field: `${key}[${i}]` });
    }
    list.addSubnet(p.address, p.prefix, p.family);
  });
  return list;
}

/** A BlockList of the well-formed CIDRs among `cidrs`; malformed ones allow nothing (fail closed). */
export function lenientBlockList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const c of cidrs) {
    const p = parseCidr(c);
    if (p !== undefined) list.addSubnet(p.address, p.prefix, p.family);
  }
  return list;
}

export function familyOf(address: string): Family | undefined {
  const v = isIP(address);
  return v === 4 ? 'ipv4' : v === 6 ? 'ipv6' : undefined;
}

const SENSITIVE: readonly Cidr[] = SENSITIVE_RANGES.map((c) => parseCidr(c)!);

/** True when the whole of `c` lies inside one sensitive range: the operator named that space on purpose. */
function isExplicitlySensitive(c: Cidr): boolean {
  return SENSITIVE.some((s) => {
    if (s.family !== c.family || c.prefix < s.prefix) return false;
    // c is at least as long as s, so every address of c shares s's first bits with c.address.
    const one = new BlockList();
    one.addSubnet(s.address, s.prefix, s.family);
    return one.check(c.address, c.family);
  });
}

export class AddressPolicy {
  readonly #allowed: BlockList;
  readonly #sensitive: BlockList;
  /** The allowed CIDRs that lie inside a sensitive range. */
  readonly #explicit: BlockList;

  /** Throws CONFIG_INVALID naming `key[i]` for a malformed CIDR. */
  constructor(cidrs: readonly string[], key = 'admin.allowed_upstreams') {
    this.#allowed = buildBlockList(cidrs, key);
    this.#sensitive = buildBlockList(SENSITIVE_RANGES, 'sensitive');
    this.#explicit = new BlockList();
    for (const text of cidrs) {
      const c = parseCidr(text)!;
      if (isExplicitlySensitive(c)) this.#explicit.addSubnet(c.address, c.prefix, c.family);
    }
  }

  /** Whether a literal address may be connected to (false for anything that is not an IP). */
  allows(address: string): boolean {
    const family = familyOf(address);
    if (family === undefined || !this.#allowed.check(address, family)) return false;
    // IPv4-mapped IPv6 forms (::ffff:169.254.169.254) match the IPv4 ranges too.
    return !this.#sensitive.check(address, family) || this.#explicit.check(address, family);
  }
}
