// Admin rows for OAuth clients (DESIGN.md "Admin API"):
//   PUT    /v1/oauth/clients/{client_id}  { org_id, redirect_uris, secret?, scopes }
//   DELETE /v1/oauth/clients/{client_id}
// A platform token manages any client; an org token only its org's (DESIGN.md
// "Tokens"), checked against the stored client before the body is read and
// against the body's org_id after. redirect_uris are https URLs on hosts
// equal to or under `org-{org_id}.{domain}` (registered or not), without a
// fragment (RFC 6749 §3.1.2) or user info; they are kept exactly as given,
// since authorize compares them as strings (RFC 9700 §4.1.3). A secret makes
// the client confidential and is stored only as scrypt; the answer never
// echoes it.

import { EdgewayError, invalidField } from '../errors.js';
import { isUuid } from '../hosts/hostname.js';
import { readJsonBody } from '../admin/body.js';
import type { RequestContext, RouteSpec } from '../admin/router.js';
import { forbidden, type Tenancy } from '../admin/tenancy.js';
import { isScopeToken } from './scope.js';
import { hashClientSecret } from './secrets.js';
import type { Client } from './store-state.js';
import type { OAuthStore } from './store.js';

const CLIENT_ID = /^[A-Za-z0-9._~-]{1,128}$/;
const FIELDS = new Set(['org_id', 'redirect_uris', 'secret', 'scopes']);
const MAX_URIS = 32;
const MAX_URI = 2048;
const MAX_SCOPES = 100;
const SECRET = /^[\x21-\x7e]{32,512}$/;

interface ClientBody {
  readonly org_id: string;
  readonly redirect_uris: string[];
  readonly scopes: string[];
  readonly secret: string | undefined;
}

function isUnder(hostname: string, orgHost: string): boolean {
  return hostname === orgHost || (hostname.endsWith(orgHost) && hostname.charCodeAt(hostname.length - orgHost.length - 1) === 0x2e);
}

export function validateClientBody(raw: unknown, domain: string): ClientBody {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalidField('(body)', 'expected a JSON object');
  const b = raw as Record<string, unknown>;
  for (const k of Object.keys(b)) if (!FIELDS.has(k)) throw invalidField(k, 'unknown field');
  const org = b['org_id'];
  if (typeof org !== 'string' || !isUuid(org)) throw invalidField('org_id', 'expected a lower-case UUID');
  const orgHost = `org-${org}.${domain}`;
  const uris = b['redirect_uris'];
  if (!Array.isArray(uris) || uris.length === 0 || uris.length > MAX_URIS) throw invalidField('redirect_uris', `expected a list of 1-${MAX_URIS} URLs`);
  uris.forEach((u, i) => {
    const field = `redirect_uris[${i}]`;
    if (typeof u !== 'string' || u.length > MAX_URI) throw invalidField(field, `expected a URL of at most ${MAX_URI} characters`);
    let url: URL;
    try {
      url = new URL(u);
    } catch {
      throw invalidField(field, 'expected an absolute https URL');
    }
    if (url.protocol !== 'https:') throw invalidField(field, 'expected an https URL');
    if (u.includes('#')) throw invalidField(field, 'a redirect URI has no fragment (RFC 6749 §3.1.2)');
    if (url.username !== '' || url.password !== '') throw invalidField(field, 'a redirect URI has no user info');
    if (!isUnder(url.hostname, orgHost)) throw invalidField(field, `expected a host equal to or under ${orgHost}`);
  });
  const scopes = b['scopes'];
  if (!Array.isArray(scopes) || scopes.length > MAX_SCOPES || !scopes.every((s) => typeof s === 'string' && isScopeToken(s) && s !== '')) {
    throw invalidField('scopes', `expected a list of at most ${MAX_SCOPES} scope tokens (printable ASCII without space, " or \\)`);
  }
  const secret = b['secret'];
  if (secret !== undefined && (typeof secret !== 'string' || !SECRET.test(secret))) {
    // The value is never echoed.
    throw invalidField('secret', 'expected 32-512 printable ASCII characters without spaces');
  }
  return { org_id: org, redirect_uris: [...new Set(uris as string[])], scopes: [...new Set(scopes as string[])], secret: secret as string | undefined };
}

function clientJson(c: Client): Record<string, unknown> {
  return { client_id: c.id, org_id: c.org, redirect_uris: c.redirect_uris, scopes: c.scopes, client_type: c.secret === null ? 'public' : 'confidential' };
}

export function clientRoutes(store: OAuthStore, tenancy: Tenancy): RouteSpec[] {
  /** The client id of the path, once the token may touch it (403 before any 400 for tokens without the right). */
  const target = (ctx: RequestContext): string => {
    const claims = ctx.claims!;
    if (!tenancy.mayUseApi(claims)) throw forbidden();
    const id = ctx.params['client_id']!;
    const existing = store.client(id);
    if (existing !== undefined && !tenancy.maySeeOrg(claims, existing.org)) throw forbidden();
    if (!CLIENT_ID.test(id)) throw invalidField('client_id', 'expected 1-128 characters of A-Z a-z 0-9 . _ ~ -');
    return id;
  };
  return [
    {
      method: 'PUT',
      path: '/v1/oauth/clients/{client_id}',
      auth: true,
      handler: async (ctx) => {
        const id = target(ctx);
        const body = validateClientBody(await readJsonBody(ctx.req), tenancy.domain);
        if (!tenancy.maySeeOrg(ctx.claims!, body.org_id)) throw forbidden('an organization token registers clients of its own org only', 'org_id');
        const secret = body.secret === undefined ? null : await hashClientSecret(body.secret);
        // Re-checked after the await: the client may have changed meanwhile.
        const now = store.client(id);
        if (now !== undefined && !tenancy.maySeeOrg(ctx.claims!, now.org)) throw forbidden();
        const { created, durable } = store.putClient({ id, org: body.org_id, redirect_uris: body.redirect_uris, scopes: body.scopes, secret });
        await durable.catch((cause: unknown) => {
          throw new EdgewayError('STATE_UNAVAILABLE', undefined, { cause });
        });
        return { status: created ? 201 : 200, body: clientJson(store.client(id)!) };
      },
    },
    {
      method: 'DELETE',
      path: '/v1/oauth/clients/{client_id}',
      auth: true,
      handler: async (ctx) => {
        const id = target(ctx);
        const done = store.deleteClient(id);
        if (done === undefined) throw new EdgewayError('NOT_FOUND', `no OAuth client ${id}`);
        await done.catch((cause: unknown) => {
          throw new EdgewayError('STATE_UNAVAILABLE', undefined, { cause });
        });
        return { status: 204 };
      },
    },
  ];
}
