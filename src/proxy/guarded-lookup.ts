// The connect-time half of "no SSRF through the API" (issue 3): a name in an
// upstream URL was resolved and checked when the entry was registered, but DNS
// can answer differently later (DNS rebinding: a short TTL, then the metadata
// address). So every connection to a named upstream resolves through this
// lookup, which refuses the connection when any address the name resolves to
// falls outside the allowed set (the same AddressPolicy the admin API checks,
// link-local and metadata rules included). The address that is connected to is
// one this lookup returned, so there is no window between check and use.
//
// It plugs in wherever Node resolves a connect target: `net.connect({ lookup })`,
// undici's `buildConnector({ lookup })`, and `new http.Agent({ lookup })` /
// `new https.Agent({ lookup })` for http-proxy. Literal IP upstreams never reach
// a lookup (Node connects to them directly); they cannot change after the
// registration check, so they need none.
//
// Entries from routes/ are trusted operator config: the data plane does not
// route them through this lookup (see ForwardRequest.trusted), so a static
// entry may name any host the operator chooses.

import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import type { LookupFunction } from 'node:net';
import { EdgewayError } from '../errors.js';
import type { AddressPolicy } from './address-policy.js';

/** Resolves every address of a name (family 0: both). Injectable so tests can play DNS rebinding. */
export type Resolver = (hostname: string, family: number) => Promise<readonly LookupAddress[]>;

/** The system resolver, as net.connect's default lookup uses it (getaddrinfo, /etc/hosts included). */
export const systemResolver: Resolver = (hostname, family) =>
  new Promise((resolve, reject) => {
    dnsLookup(hostname, { all: true, family }, (err, addresses) => (err ? reject(err) : resolve(addresses)));
  });

function familyNumber(f: LookupOptions['family']): number {
  if (f === 'IPv4') return 4;
  if (f === 'IPv6') return 6;
  return typeof f === 'number' ? f : 0;
}

/** The connection is refused before a socket opens; failure.ts answers it 502 upstream_forbidden. */
function forbidden(hostname: string): EdgewayError {
  // The name only, never the address it resolved to: this text reaches logs.
  return new EdgewayError('UPSTREAM_FORBIDDEN', `upstream ${hostname} resolves outside admin.allowed_upstreams`);
}

/**
 * A lookup for `connect` options that resolves with `resolver` and refuses
 * (error code UPSTREAM_FORBIDDEN) unless every address is allowed by `policy`.
 * Honors `all` (Happy Eyeballs asks for every address) and `family`.
 */
export function guardedLookup(policy: AddressPolicy, resolver: Resolver = systemResolver): LookupFunction {
  return (hostname, options, callback) => {
    resolver(hostname, familyNumber(options.family)).then(
      (addresses) => {
        if (addresses.length === 0) {
          const err: NodeJS.ErrnoException = new Error(`getaddrinfo ENOTFOUND ${hostname}`);
          err.code = 'ENOTFOUND';
          return callback(err, '');
        }
        // All or nothing, as at registration: a name that answers with one
        // allowed and one forbidden address is not trusted with either.
        for (const a of addresses) if (!policy.allows(a.address)) return callback(forbidden(hostname), '');
        if (options.all === true) return callback(null, addresses.map((a) => ({ address: a.address, family: a.family })));
        const first = addresses[0]!;
        return callback(null, first.address, first.family);
      },
      (err: NodeJS.ErrnoException) => callback(err, ''),
    );
  };
}
