// GET /v1/resolve?url=…[&sni=NAME] (DESIGN.md "Admin API"): which entry and
// location a URL reaches, and why, or why the data plane would answer 400, 404
// or 421. The answer is computed with the data plane's own code, never a copy
// of its rules: canonicalTarget for the path, normalizeHost for the host, and a
// RouteTable holding just the entries a lookup of these names could reach (the
// exact name and its one-label `*.parent`, read from the store in O(1)), so
// RouteTable's lookup, wildcard fallback and longest-prefix match decide, as
// they do for a request. The checks run in the data plane's order
// (src/server/data-plane.ts `route()`): path, host, entry and location, SNI.

import type { Config } from '../config/types.js';
import { invalidField } from '../errors.js';
import { normalizeHost } from '../hosts/hostname.js';
import { compilePolicy, fillRoom, scopeFor } from '../auth/scope-template.js';
import { canonicalTarget } from '../routes/canonical-path.js';
import { stripLocationPrefix } from '../routes/compile.js';
import { ownQuery } from '../proxy/headers.js';
import { RouteTable } from '../routes/table.js';
import type { CompiledHost, CompiledLocation } from '../routes/types.js';
import type { HostStore, StoredEntry } from './host-store.js';
import { storedJson } from './hosts-api.js';
import type { HandlerResult, RequestContext, RouteSpec } from './router.js';
import { forbidden, type Tenancy } from './tenancy.js';

const URL_SHAPE = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)([^#]*)/i;
const CONTROL_OR_SPACE = /[\u0000-\u0020\u007f]/;

type Decision = 'routed' | 'bad_host' | 'not_found' | 'host_not_found' | 'misdirected';

interface Target {
  readonly scheme: 'http' | 'https';
  /** The authority as a Host header would carry it. */
  readonly authority: string;
  /** Origin-form request target: path and query. */
  readonly target: string;
}

/** `https://host[:port]/path?query#fragment` (scheme optional: https) → its parts, or 400 naming `url`. */
function parseTarget(raw: string): Target {
  if (raw === '' || CONTROL_OR_SPACE.test(raw)) throw invalidField('url', 'expected an http or https URL');
  const m = URL_SHAPE.exec(raw.includes('://') ? raw : `https://${raw}`);
  const scheme = m?.[1]!.toLowerCase();
  if (m === null || (scheme !== 'http' && scheme !== 'https')) throw invalidField('url', 'expected an http or https URL');
  if (m[2]!.includes('@')) throw invalidField('url', 'expected a URL without credentials');
  const rest = m[3]!;
  return { scheme, authority: m[2]!, target: rest === '' ? '/' : rest.startsWith('?') ? `/${rest}` : rest };
}

/** The names a lookup of `name` can reach: itself, then `*.` + its parent (one label, as RouteTable looks). */
function candidates(name: string): string[] {
  const dot = name.indexOf('.');
  return dot < 0 ? [name] : [name, `*.${name.slice(dot + 1)}`];
}

/**
 * The access policy as the edge applies it to this request: the edge's own
 * compiled policy (src/auth/scope-template.ts), so `{org_id}`, `{uc_id}`,
 * `{host}` and (on collab locations) `{room}` are filled in exactly as a
 * request sees them, and a template naming what the host lacks grants nobody.
 */
function effectiveAccess(compiled: CompiledHost, loc: CompiledLocation, host: string, path: string): unknown {
  const p = compilePolicy(loc.access, compiled);
  switch (p.kind) {
    case 'public':
    case 'user':
      return p.kind;
    case 'users':
      return { users: [...p.users] };
    case 'never':
      return { scope: p.template, grants: 'nobody: the template names an id this host does not have' };
    case 'scope': {
      const scope = scopeFor(p, host);
      const room = p.room && loc.service === 'collab' ? roomOf(loc, path) : undefined;
      return { scope: room === undefined ? scope : fillRoom(scope, room) };
    }
  }
}

/** `/collab/yjs/{room}`: the one segment after the location's path, if there is exactly one. */
function roomOf(loc: CompiledLocation, path: string): string | undefined {
  const q = path.indexOf('?');
  const rest = stripLocationPrefix(loc, q === -1 ? path : path.slice(0, q)).slice(1);
  return rest === '' || rest.includes('/') ? undefined : rest;
}

export interface ResolveApiDeps {
  readonly store: HostStore;
  readonly tenancy: Tenancy;
  readonly config: Config;
}

export function resolveRoute(deps: ResolveApiDeps): RouteSpec {
  const { store, tenancy } = deps;
  const domain = tenancy.domain;
  const defaultTimeout = deps.config.proxy.timeout_ms;

  const handler = (ctx: RequestContext): HandlerResult => {
    const claims = ctx.claims!;
    if (!tenancy.mayUseApi(claims)) throw forbidden();
    const q = new URLSearchParams(ctx.query);
    const url = q.get('url');
    if (url === null) throw invalidField('url', 'required');
    const sniParam = q.get('sni');
    const sni = sniParam === null || sniParam === '' ? undefined : sniParam;
    const t = parseTarget(url);

    const host = normalizeHost(t.authority);
    // A malformed host tells nothing about anyone's entries; a well-formed one must be the token's.
    if (host !== undefined && !tenancy.mayManage(claims, host)) throw forbidden();
    if (sni !== undefined && sni !== host && !tenancy.mayManage(claims, sni.toLowerCase())) throw forbidden();

    // The data plane's order: path first (a path above the root is 404 whatever the host), then host.
    // edgeway's own parameters (edgeway_token, edgeway_state) are never forwarded, nor echoed here.
    const canonical = canonicalTarget(t.target);
    const path = canonical === undefined ? undefined : (ownQuery(canonical)?.url ?? canonical);
    const answer = (decision: Decision, status: number | null, reason: string, extra: Record<string, unknown> = {}): HandlerResult => ({
      status: 200,
      body: {
        url: ownQuery(url)?.url ?? url,
        scheme: t.scheme,
        ...(t.scheme === 'http' ? { note: 'plain HTTP is answered 308 to https; this is where the https request goes' } : {}),
        host: host ?? null,
        path: path ?? null,
        sni: sni ?? null,
        decision,
        status,
        reason,
        entry: null,
        location: null,
        ...extra,
      },
    });

    if (path === undefined) return answer('not_found', 404, 'the path climbs above the root or holds a malformed percent-escape');
    if (host === undefined) return answer('bad_host', 400, 'the host is missing or malformed (not a DNS name, a bad port)');

    // The entries a lookup of these names can reach, in a table of their own.
    const table = new RouteTable(domain);
    const stored = new Map<string, StoredEntry>();
    for (const name of sni === undefined ? [host] : [host, sni.toLowerCase()]) {
      for (const c of candidates(name)) {
        const s = store.get(c);
        if (s !== undefined && !stored.has(c)) {
          stored.set(c, s);
          table.put(s.entry);
        }
      }
    }
    const visible = (h: CompiledHost): boolean => tenancy.mayManage(claims, h.host);
    const entryJson = (h: CompiledHost, wildcard: boolean): Record<string, unknown> => ({
      ...storedJson(stored.get(h.host)!),
      matched_by: wildcard ? `wildcard entry ${h.host} (no exact entry for ${host})` : 'exact host',
    });
    const hidden = { entry: null, location: null, access: null };

    const m = table.match(host, path);
    if (m === undefined) {
      const hit = table.lookupHost(host);
      if (hit === undefined) {
        const wild = candidates(host)[1];
        return answer('host_not_found', 404, `no entry for ${host}${wild === undefined ? '' : ` and none for ${wild}`}`);
      }
      if (!visible(hit.host)) return answer('not_found', 404, 'no location of an entry this token cannot see covers the path', hidden);
      return answer('not_found', 404, `no location of ${hit.host.host} covers ${path}`, {
        entry: entryJson(hit.host, hit.wildcard),
        locations: hit.host.locations.map((l) => l.path),
      });
    }

    // 421 only when the TLS name is routed to a different entry than the Host (RFC 9110 §15.5.20).
    if (sni !== undefined && sni !== host) {
      const s = table.lookupHost(sni.toLowerCase());
      if (s !== undefined && s.host !== m.host) {
        const names = visible(s.host) && visible(m.host) ? `: ${s.host.host}, not ${m.host.host}` : '';
        return answer('misdirected', 421, `the TLS name is routed to a different entry than the Host${names}`);
      }
    }

    if (!visible(m.host)) return answer('routed', null, 'served by an entry this token cannot see', hidden);
    const loc = m.location;
    const forwarded = loc.stripPrefix ? stripLocationPrefix(loc, path) : path;
    const rule = loc.path === '/' ? "the root location '/'" : `longest prefix '${loc.path}'`;
    return answer('routed', null, `${m.wildcard ? `wildcard entry ${m.host.host}` : `exact entry ${m.host.host}`}, ${rule}`, {
      entry: entryJson(m.host, m.wildcard),
      locations: m.host.locations.map((l) => l.path),
      location: {
        path: loc.path,
        matched_by: rule,
        kind: loc.kind,
        ...(loc.kind === 'proxy'
          ? {
              upstreams: loc.upstreams.map((u) => u.origin + u.basePath),
              forwarded_path: loc.upstreams[0]!.basePath + forwarded,
              timeout_ms: loc.timeoutMs ?? defaultTimeout,
            }
          : {}),
        ...(loc.service !== undefined ? { service: loc.service } : {}),
        ...(loc.static !== undefined ? { static: loc.static } : {}),
        strip_prefix: loc.stripPrefix,
      },
      access: { configured: loc.access, effective: effectiveAccess(m.host, loc, host, path) },
    });
  };

  return { method: 'GET', path: '/v1/resolve', auth: true, handler };
}
