// Helpers for the OAuth tests: an appliance whose issuer URL is real (the
// HTTPS port is picked before start, so `public_port` is the port clients
// reach), a fetch for openid-client that trusts the appliance's CA and sends
// every name to 127.0.0.1 (SNI and Host stay the URL's), the org hosts with an
// oauth location, clients registered through the admin API, and the
// authorize step driven by a plain HTTPS request carrying a user token.

import type { LookupAddress } from 'node:dns';
import { Agent, fetch as undiciFetch } from 'undici';
import * as oidc from 'openid-client';
import { signToken } from '../../src/auth/jwt.js';
import { loadJwtKeys } from '../../src/auth/keys.js';
import { DOMAIN, ORG, ORG2, ORG_HOST, ORG2_HOST, UC_HOST, admin, httpsGet, startTestAppliance, userToken, type TestAppliance } from './appliance.js';
import { freePort } from './process.js';

export { DOMAIN, ORG, ORG2, ORG_HOST, ORG2_HOST, UC_HOST };

interface Teardown {
  teardown(fn: () => unknown): void;
}

export const CONF_ID = 'app-confidential';
export const CONF_SECRET = 'conf-secret-0123456789abcdef0123456789';
export const PUB_ID = 'app-public';
export const CB = `https://${UC_HOST}/cb`;
export const ORG2_ID = 'org2-app';
export const ORG2_SECRET = 'org2-secret-0123456789abcdef0123456789';
export const ORG2_CB = `https://${ORG2_HOST}/cb`;

type Lookup = (host: string, opts: { all?: boolean }, cb: (err: Error | null, addr: string | LookupAddress[], family?: number) => void) => void;
const loopback: Lookup = (_host, opts, cb) => (opts.all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4));

/** A fetch (for openid-client's customFetch) over real TLS to the appliance, trusting its local CA. */
export function tlsFetch(t: Teardown, caPem: string): oidc.CustomFetch {
  const agent = new Agent({ connect: { ca: caPem, lookup: loopback as never } });
  t.teardown(() => agent.close());
  return ((url: string, options: oidc.CustomFetchOptions) =>
    undiciFetch(url, { ...(options as object), dispatcher: agent } as never)) as unknown as oidc.CustomFetch;
}

export interface OAuthAppliance extends TestAppliance {
  readonly port: number;
  readonly issuer: string;
  readonly issuer2: string;
  readonly fetch: oidc.CustomFetch;
  /** A member of ORG with a container (UC). */
  readonly user: string;
}

export function hostEntry(oauthAccess?: unknown): Record<string, unknown> {
  return {
    locations: [
      { path: '/', upstream: 'http://127.0.0.1:9' },
      { path: '/oauth', service: 'oauth', ...(oauthAccess === undefined ? {} : { access: oauthAccess }) },
    ],
  };
}

/** An appliance with ORG (org + uc host) and ORG2 (org host) serving oauth, and three clients. */
export async function startOAuthAppliance(t: Teardown, overrides: Record<string, unknown> = {}, port?: number, routes: Record<string, unknown> = {}): Promise<OAuthAppliance> {
  const p = port ?? (await freePort());
  const ta = await startTestAppliance(t, { listen: { https: `127.0.0.1:${p}`, http: '127.0.0.1:0', admin: '127.0.0.1:0' }, ...overrides }, routes);
  const o = await setUp(t, ta, p);
  return o;
}

export async function setUp(t: Teardown, ta: TestAppliance, port: number, register = true): Promise<OAuthAppliance> {
  if (register) {
    // The org's default access (org member) guards authorize; the container host allows its owner.
    for (const [host, access] of [[ORG_HOST, undefined], [UC_HOST, { scope: `org:${ORG}:member` }], [ORG2_HOST, undefined]] as const) {
      const r = await admin(ta, 'PUT', `/v1/hosts/${host}`, hostEntry(access));
      if (r.status !== 201 && r.status !== 200) throw new Error(`PUT ${host}: ${r.status} ${JSON.stringify(r.json)}`);
    }
    await putClient(ta, CONF_ID, { org_id: ORG, redirect_uris: [CB, `https://${ORG_HOST}/cb?app=1`], scopes: ['read', 'write'], secret: CONF_SECRET });
    await putClient(ta, PUB_ID, { org_id: ORG, redirect_uris: [CB], scopes: ['read'] });
    await putClient(ta, ORG2_ID, { org_id: ORG2, redirect_uris: [ORG2_CB], scopes: ['read'], secret: ORG2_SECRET });
  }
  return {
    ...ta,
    port,
    issuer: `https://${ORG_HOST}:${port}`,
    issuer2: `https://${ORG2_HOST}:${port}`,
    fetch: tlsFetch(t, ta.caPem),
    user: await userToken(ta, 'user-1', [`org:${ORG}:member`]),
  };
}

export async function putClient(ta: Pick<TestAppliance, 'adminUrl' | 'platformToken'>, id: string, body: unknown): Promise<void> {
  const r = await admin(ta, 'PUT', `/v1/oauth/clients/${id}`, body);
  if (r.status !== 201 && r.status !== 200) throw new Error(`PUT client ${id}: ${r.status} ${JSON.stringify(r.json)}`);
}

export async function orgToken(ta: Pick<TestAppliance, 'cfg'>, org: string): Promise<string> {
  return signToken(await loadJwtKeys(ta.cfg), ta.cfg.auth.jwt, { type: 'organization_token', organization_id: org }, 600);
}

/** openid-client's configuration from RFC 8414 discovery on `issuer`. */
export function discover(o: OAuthAppliance, issuer: string, clientId: string, auth?: oidc.ClientAuth): Promise<oidc.Configuration> {
  return oidc.discovery(new URL(issuer), clientId, undefined, auth, { algorithm: 'oauth2', [oidc.customFetch]: o.fetch });
}

/** The authorize step as a browser with a user token would make it: the Location it answers with. */
export async function authorizeAs(o: OAuthAppliance, url: URL, token = o.user): Promise<{ status: number; location: string | undefined; body: string }> {
  const r = await httpsGet(o, url.hostname, url.pathname + url.search, { headers: { authorization: `Bearer ${token}` } });
  return { status: r.status, location: r.headers.location, body: r.body };
}

export interface Pkce {
  readonly verifier: string;
  readonly challenge: string;
  readonly state: string;
}

export async function pkce(): Promise<Pkce> {
  const verifier = oidc.randomPKCECodeVerifier();
  return { verifier, challenge: await oidc.calculatePKCECodeChallenge(verifier), state: oidc.randomState() };
}

/** buildAuthorizationUrl with PKCE S256 and state, then authorize as the user; the callback URL. */
export async function codeFor(o: OAuthAppliance, config: oidc.Configuration, k: Pkce, extra: Record<string, string> = {}): Promise<URL> {
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: CB, scope: 'read', code_challenge: k.challenge, code_challenge_method: 'S256', state: k.state, ...extra,
  });
  const r = await authorizeAs(o, url);
  if (r.status !== 302 || r.location === undefined) throw new Error(`authorize: ${r.status} ${r.body}`);
  return new URL(r.location);
}

/** A form POST to an endpoint of ORG's issuer, raw (for what openid-client would never send). */
export function post(o: OAuthAppliance, path: string, form: string, headers: Record<string, string> = {}, host = ORG_HOST) {
  return httpsGet(o, host, path, { method: 'POST', body: form, headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers } });
}

export function basic(id: string, secret: string): string {
  return 'Basic ' + Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64');
}

/** The RFC error code an openid-client call was refused with (undefined when it succeeded). */
export async function oauthError(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    const err = e as { error?: string; response?: Response; status?: number };
    if (err.error !== undefined) return err.error;
    // A 401 with WWW-Authenticate (Basic) is reported as a challenge error: read the RFC 6749 §5.2 body.
    const body = (await err.response?.json().catch(() => undefined)) as { error?: string } | undefined;
    return body?.error ?? String(e);
  }
}
