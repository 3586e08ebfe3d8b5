// "Upstreams registered through the API must fall inside admin.allowed_upstreams"
// (DESIGN.md "Admin API"): a gateway must not point the edge at arbitrary
// addresses (the metadata service, the admin port, another org's network).
// Literal IPs are checked against the AddressPolicy built once from the config
// (link-local and metadata refused unless listed exactly); names are resolved
// and every address they resolve to must be inside. An organization token's
// `allowed_upstreams` claim narrows the set further (DESIGN.md "Tokens").
//
// Outside admin.allowed_upstreams is bad input for anyone: 400 naming the
// field. Inside it but outside the token's claim is a right the token lacks:
// 403, still naming the field. The data plane checks names again at connect
// time (src/proxy/guarded-lookup.ts): DNS may answer differently later.

import type { BlockList } from 'node:net';
import { isIP } from 'node:net';
import { lookup } from 'node:dns/promises';
import type { HostEntry } from '../routes/types.js';
import { EdgewayError, invalidField } from '../errors.js';
import { AddressPolicy, familyOf } from '../proxy/address-policy.js';

export { parseCidr, buildBlockList } from '../proxy/address-policy.js';

const NOT_INSIDE = 'not inside admin.allowed_upstreams';
const NOT_IN_CLAIM = "not inside the token's allowed_upstreams";

/** Addresses of a name, shared by the checks of one request (round-robin groups and batches repeat names). */
export type ResolveCache = Map<string, Promise<string[] | undefined>>;

export interface CheckOptions {
  /** Prepended to field names: `put[3].` in a batch. */
  readonly prefix?: string;
  /** The token's `allowed_upstreams` claim, when it has one. */
  readonly claim?: BlockList;
  readonly cache?: ResolveCache;
}

export class UpstreamPolicy {
  readonly addresses: AddressPolicy;

  constructor(cidrs: readonly string[]) {
    this.addresses = new AddressPolicy(cidrs);
  }

  /** Throws INVALID_FIELD (400) or FORBIDDEN (403) naming the first upstream that falls outside. */
  async check(entry: HostEntry, opts: CheckOptions = {}): Promise<void> {
    const prefix = opts.prefix ?? '';
    const cache = opts.cache ?? new Map();
    for (let i = 0; i < entry.locations.length; i++) {
      const loc = entry.locations[i]!;
      if (loc.upstream !== undefined) await this.#checkUrl(loc.upstream, `${prefix}locations[${i}].upstream`, opts.claim, cache);
      const group = loc.upstreams ?? [];
      for (let j = 0; j < group.length; j++) {
        await this.#checkUrl(group[j]!, `${prefix}locations[${i}].upstreams[${j}]`, opts.claim, cache);
      }
    }
  }

  /** True when the literal address is inside the allowed list (sensitive ranges only when listed exactly). */
  allows(address: string): boolean {
    return this.addresses.allows(address);
  }

  #checkAddress(address: string, field: string, claim: BlockList | undefined): void {
    if (!this.addresses.allows(address)) throw invalidField(field, NOT_INSIDE);
    if (claim !== undefined && !claim.check(address, familyOf(address)!)) {
      throw new EdgewayError('FORBIDDEN', `${field}: ${NOT_IN_CLAIM}`, { field });
    }
  }

  async #checkUrl(raw: string, field: string, claim: BlockList | undefined, cache: ResolveCache): Promise<void> {
    let host: string;
    try {
      host = new URL(raw).hostname;
    } catch {
      throw invalidField(field, 'not a URL');
    }
    // WHATWG URLs bracket IPv6 literals and normalize IPv4 forms such as 0x7f.1.
    if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
    if (isIP(host) !== 0) return this.#checkAddress(host, field, claim);
    let addresses = cache.get(host);
    if (addresses === undefined) {
      addresses = lookup(host, { all: true }).then(
        (list) => list.map((a) => a.address),
        () => undefined,
      );
      cache.set(host, addresses);
    }
    const list = await addresses;
    if (list === undefined || list.length === 0) throw invalidField(field, 'the upstream name does not resolve');
    for (const a of list) this.#checkAddress(a, field, claim);
  }
}
