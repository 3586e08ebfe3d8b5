// Which authorization server a request talks to (DESIGN.md "OAuth2"): one per
// org, issuer `https://org-{org_id}.{domain}` plus `:public_port` when that
// is not 443, whichever of the org's hosts the request reached (the org host,
// a container's host, a wildcard name). Endpoint URLs name the host and the
// oauth location the request came through, so a client that discovered them
// keeps talking to the same place. A host outside any org has no issuer.
//
// The port comes from `public_port`, never from the Host header: metadata is
// what clients trust, and a Host header is the client's to choose. Port 0
// (tests: the kernel picks) has no URL form and is left out, like the
// default login_url does.

import type { Config } from '../config/types.js';
import { normalizeHost } from '../hosts/hostname.js';
import type { ServiceCall } from '../services/types.js';

export interface Issuer {
  readonly org: string;
  /** RFC 8414 §2 `issuer`. */
  readonly issuer: string;
  /** `https://{host}[:port]{location}`: the endpoints are this plus `/authorize`, `/token`, … */
  readonly base: string;
}

const cache = new WeakMap<object, Map<string, Issuer>>();

export function issuerOf(cfg: Config, call: ServiceCall): Issuer | undefined {
  const org = call.match.host.info.orgId;
  if (org === undefined) return undefined;
  const host = normalizeHost(call.host);
  if (host === undefined) return undefined;
  // One object per (location, host): metadata and every endpoint reuse it.
  let perLoc = cache.get(call.match.location);
  if (perLoc === undefined) cache.set(call.match.location, (perLoc = new Map()));
  let iss = perLoc.get(host);
  if (iss === undefined) {
    const port = cfg.public_port === 443 || cfg.public_port === 0 ? '' : `:${cfg.public_port}`;
    const path = call.match.location.path === '/' ? '' : call.match.location.path;
    iss = Object.freeze({ org, issuer: `https://org-${org}.${cfg.domain}${port}`, base: `https://${host}${port}${path}` });
    // Wildcard entries serve any label: bound what one location remembers.
    if (perLoc.size > 1024) perLoc.clear();
    perLoc.set(host, iss);
  }
  return iss;
}
