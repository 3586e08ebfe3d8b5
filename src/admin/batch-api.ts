// POST /v1/batch (DESIGN.md "Admin API"): `{ "put": [entries], "delete": [hosts] }`,
// all or nothing. Every put and delete is checked before the store sees any:
// first the token's right to every host (403 naming the first it lacks, so a
// caller without the right learns nothing from validation), then every entry's
// shape (400 naming e.g. `put[3].locations[0].upstream`), then every upstream.
// Only then does the store apply the whole batch as one step, itself refusing
// routes/ hosts (409) and absent deletes (404) before changing anything.

import type { TokenClaims } from '../auth/jwt.js';
import { EdgewayError, invalidField, isEdgewayError } from '../errors.js';
import { validateEntry } from '../routes/validate-entry.js';
import type { HostEntry } from '../routes/types.js';
import { readJsonBody } from './body.js';
import type { HostStore } from './host-store.js';
import { authorizedHost, normalizePathHost, storedJson } from './hosts-api.js';
import type { HandlerResult, RequestContext, RouteSpec } from './router.js';
import { forbidden, isPlatformAdmin, type Tenancy } from './tenancy.js';
import type { ResolveCache, UpstreamPolicy } from './upstream-policy.js';

const BATCH_KEYS = new Set(['put', 'delete']);

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Re-roots an error of one entry under `put[i]`: `locations[0].upstream` → `put[3].locations[0].upstream`. */
function underPut(e: unknown, i: number): unknown {
  if (!isEdgewayError(e) || e.field === undefined) return e;
  const root = `put[${i}]`;
  const field = e.field === 'entry' ? root : `${root}.${e.field}`;
  // Messages of field errors start with the field's name.
  const message = e.message.startsWith(`${e.field}:`) ? field + e.message.slice(e.field.length) : `${field}: ${e.message}`;
  return new EdgewayError(e.code, message, { field, cause: e });
}

function list(body: Obj, key: 'put' | 'delete'): unknown[] {
  const v = body[key];
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw invalidField(key, key === 'put' ? 'expected a list of host entries' : 'expected a list of host names');
  return v;
}

/** The hosts the token names, each checked against its rights before anything else is looked at. */
function authorizeAll(tenancy: Tenancy, claims: TokenClaims, puts: readonly unknown[], deletes: readonly unknown[]): void {
  const admin = isPlatformAdmin(claims);
  puts.forEach((p, i) => {
    const raw = isObject(p) ? p.host : undefined;
    // A missing or malformed host is named by validation (400) for platform
    // tokens; anyone else has no right to a host that is not one of theirs.
    if (typeof raw !== 'string') {
      if (!admin) throw forbidden();
      return;
    }
    let host: string;
    try {
      host = normalizePathHost(raw, `put[${i}].host`);
    } catch {
      if (!admin) throw forbidden();
      return;
    }
    if (!tenancy.mayManage(claims, host)) throw forbidden(undefined, `put[${i}].host`);
  });
  deletes.forEach((d, j) => {
    if (typeof d !== 'string') {
      if (!admin) throw forbidden();
      throw invalidField(`delete[${j}]`, 'expected a host name');
    }
    authorizedHost(tenancy, claims, d, `delete[${j}]`);
  });
}

export interface BatchApiDeps {
  readonly store: HostStore;
  readonly policy: UpstreamPolicy;
  readonly tenancy: Tenancy;
}

export function batchRoute(deps: BatchApiDeps): RouteSpec {
  const { store, policy, tenancy } = deps;

  const handler = async (ctx: RequestContext): Promise<HandlerResult> => {
    const claims = ctx.claims!;
    if (!tenancy.mayUseApi(claims)) throw forbidden();
    const body = await readJsonBody(ctx.req);
    if (!isObject(body)) throw invalidField('batch', 'expected an object {put?, delete?}');
    for (const key of Object.keys(body)) if (!BATCH_KEYS.has(key)) throw invalidField(key, 'unknown key');
    const rawPuts = list(body, 'put');
    const rawDeletes = list(body, 'delete');

    authorizeAll(tenancy, claims, rawPuts, rawDeletes);

    const seen = new Map<string, string>();
    const puts: HostEntry[] = rawPuts.map((p, i) => {
      let entry: HostEntry;
      try {
        entry = validateEntry(p, { source: 'api' });
      } catch (e) {
        throw underPut(e, i);
      }
      // Checked again on the validated host: the one the store will use.
      if (!tenancy.mayManage(claims, entry.host)) throw forbidden(undefined, `put[${i}].host`);
      const twice = seen.get(entry.host);
      if (twice !== undefined) throw invalidField(`put[${i}].host`, `${entry.host} is also ${twice}`);
      seen.set(entry.host, `put[${i}]`);
      return entry;
    });
    const deletes: string[] = rawDeletes.map((d, j) => {
      const host = normalizePathHost(d as string, `delete[${j}]`);
      const twice = seen.get(host);
      if (twice !== undefined) throw invalidField(`delete[${j}]`, `${host} is also ${twice}`);
      seen.set(host, `delete[${j}]`);
      return host;
    });

    // One resolution per name across the whole batch.
    const cache: ResolveCache = new Map();
    const claim = tenancy.upstreamClaim(claims);
    for (let i = 0; i < puts.length; i++) await policy.check(puts[i]!, { prefix: `put[${i}].`, claim, cache });

    const result = await store.batch(puts, deletes);
    return {
      status: 200,
      body: {
        // Issue 5: each put says whether its certificate is in hand, as a single PUT does.
        put: result.put.map((r) => ({ ...storedJson(r.stored), created: r.created, certificate: store.certState?.(r.stored.entry.host) ?? 'ready' })),
        deleted: result.deleted,
      },
    };
  };

  return { method: 'POST', path: '/v1/batch', auth: true, handler };
}
