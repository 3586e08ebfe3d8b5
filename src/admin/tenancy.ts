// Who may manage which host entries (DESIGN.md "Tokens"): the one place the
// admin API asks. Platform tokens with `edge:admin` may do anything; an
// organization token only hosts of its own org; user tokens nothing.
//
// Decisions are made on the normalized host (lower case, no trailing dot, no
// port, percent-escapes already decoded by the router), so no spelling of a
// name reaches a host its meaning does not name. What an org owns is the
// contract's hostname table, not any string that ends like its host:
//
//   org-{id}.{domain}                 the org host
//   *.org-{id}.{domain}               its wildcard
//   {label}.org-{id}.{domain}         one label under it: uc-{uuid}.… and the
//                                     names the wildcard (and its certificate,
//                                     which covers exactly one label) would serve
//
// Deeper names are refused: `org-B.example.test.org-A.example.test` reads as org
// B's host in an address bar, and no wildcard certificate covers it anyway. A
// label shaped like an org label (`org-{uuid}`) is refused for the same reason.

import type { BlockList } from 'node:net';
import { ADMIN_SCOPE, type OrgClaims, type TokenClaims } from '../auth/jwt.js';
import { EdgewayError } from '../errors.js';
import { lenientBlockList } from '../proxy/address-policy.js';

const DOT = 0x2e;
const ORG_LABEL = /^org-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isPlatformAdmin(claims: TokenClaims): boolean {
  return claims.type === 'platform' && claims.scope.includes(ADMIN_SCOPE);
}

export function forbidden(message?: string, field?: string): EdgewayError {
  return new EdgewayError('FORBIDDEN', message, field === undefined ? undefined : { field });
}

export class Tenancy {
  readonly domain: string;
  /** Parsed `allowed_upstreams` claims; claims objects are shared by the verifier's cache, so this parses once per token. */
  readonly #claims = new WeakMap<OrgClaims, BlockList>();

  /** `domain` as configured; normalized like every host. */
  constructor(domain: string) {
    const d = domain.toLowerCase();
    this.domain = d.endsWith('.') ? d.slice(0, -1) : d;
  }

  /** Whether the token may use the host-entry endpoints at all (then each host is checked with mayManage). */
  mayUseApi(claims: TokenClaims): boolean {
    return isPlatformAdmin(claims) || claims.type === 'organization_token';
  }

  /** The org token's own host, `org-{id}.{domain}`. */
  orgHost(claims: OrgClaims): string {
    return `org-${claims.organization_id}.${this.domain}`;
  }

  /** Whether the token may see and change the entry of `host` (a normalized entry host). */
  mayManage(claims: TokenClaims, host: string): boolean {
    if (isPlatformAdmin(claims)) return true;
    if (claims.type !== 'organization_token') return false;
    const own = this.orgHost(claims);
    if (host === own) return true;
    const cut = host.length - own.length - 1; // where the '.' before the org host sits
    if (cut <= 0 || host.charCodeAt(cut) !== DOT || !host.endsWith(own)) return false;
    const label = host.slice(0, cut);
    if (label === '*') return true;
    // Entry hosts are validated DNS names, so a label without a dot is one label.
    return label.indexOf('.') === -1 && label.indexOf('*') === -1 && !ORG_LABEL.test(label);
  }

  /** Whether org `orgId`'s activity is visible to the token. */
  maySeeOrg(claims: TokenClaims, orgId: string | null): boolean {
    if (isPlatformAdmin(claims)) return true;
    return claims.type === 'organization_token' && orgId === claims.organization_id;
  }

  /** The token's upstream claim as a BlockList, or undefined when it has none (platform tokens, or no claim). */
  upstreamClaim(claims: TokenClaims): BlockList | undefined {
    if (claims.type !== 'organization_token' || claims.allowed_upstreams === undefined) return undefined;
    let list = this.#claims.get(claims);
    if (list === undefined) {
      // A malformed CIDR in a signed claim allows nothing (fail closed).
      list = lenientBlockList(claims.allowed_upstreams);
      this.#claims.set(claims, list);
    }
    return list;
  }
}
