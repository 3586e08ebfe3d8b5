// "Upstreams registered through the API must fall inside admin.allowed_upstreams"
// (DESIGN.md "Admin API"): a gateway must not point the edge at arbitrary
// addresses (the metadata service, the admin port, another org's network).
// Literal IPs are checked against a BlockList built once; names are resolved
// and every address they resolve to must be inside.

import { BlockList, isIP } from 'node:net';
import { lookup } from 'node:dns/promises';
import type { HostEntry } from '../routes/types.js';
import { EdgewayError, invalidField } from '../errors.js';

type Family = 'ipv4' | 'ipv6';

const PREFIX = /^\d{1,3}$/;

/** Parses `10.0.0.0/8`, `fd00::/8` or a bare address; undefined when malformed. */
export function parseCidr(text: string): { address: string; prefix: number; family: Family } | undefined {
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

/** A BlockList holding `cidrs`; throws naming `key[i]` for a malformed one. */
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

function familyOf(address: string): Family | undefined {
  const v = isIP(address);
  return v === 4 ? 'ipv4' : v === 6 ? 'ipv6' : undefined;
}

const NOT_INSIDE = 'not inside admin.allowed_upstreams';

export class UpstreamPolicy {
  readonly #allowed: BlockList;

  constructor(cidrs: readonly string[]) {
    this.#allowed = buildBlockList(cidrs, 'admin.allowed_upstreams');
  }

  /** Throws EdgewayError INVALID_FIELD naming the first upstream that falls outside. */
  async check(entry: HostEntry): Promise<void> {
    // One lookup per distinct name within an entry (round-robin groups repeat hosts).
    const resolved = new Map<string, Promise<string[] | undefined>>();
    for (let i = 0; i < entry.locations.length; i++) {
      const loc = entry.locations[i]!;
      if (loc.upstream !== undefined) await this.#checkUrl(loc.upstream, `locations[${i}].upstream`, resolved);
      const group = loc.upstreams ?? [];
      for (let j = 0; j < group.length; j++) {
        await this.#checkUrl(group[j]!, `locations[${i}].upstreams[${j}]`, resolved);
      }
    }
  }

  /** True when the literal address is inside the allowed list. */
  allows(address: string): boolean {
    const family = familyOf(address);
    return family !== undefined && this.#allowed.check(address, family);
  }

  async #checkUrl(raw: string, field: string, resolved: Map<string, Promise<string[] | undefined>>): Promise<void> {
    let host: string;
    try {
      host = new URL(raw).hostname;
    } catch {
      throw invalidField(field, 'not a URL');
    }
    // WHATWG URLs bracket IPv6 literals and normalize IPv4 forms such as 0x7f.1.
    if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
    if (isIP(host) !== 0) {
      if (!this.allows(host)) throw invalidField(field, NOT_INSIDE);
      return;
    }
    let addresses = resolved.get(host);
    if (addresses === undefined) {
      addresses = lookup(host, { all: true, verbatim: true }).then(
        (list) => list.map((a) => a.address),
        () => undefined,
      );
      resolved.set(host, addresses);
    }
    const list = await addresses;
    if (list === undefined || list.length === 0) throw invalidField(field, 'the upstream name does not resolve');
    for (const a of list) {
      if (!this.allows(a)) throw invalidField(field, NOT_INSIDE);
    }
  }
}
