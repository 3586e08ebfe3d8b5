// The bench's hosts on an edgeway target and the admin calls that register
// them: the org host (public), the uc host (scope access, session cookie from
// a real login handoff) and, for the websocket and streaming scenarios, /ws and
// /stream locations on the uc host that go to the node upstream.

import { randomBytes, randomUUID } from 'node:crypto';
import { signToken } from '../src/auth/jwt.js';
import { loadJwtKeys } from '../src/auth/keys.js';
import { loadConfig } from '../src/config/load.js';
import { request, type EdgewayTarget } from './peers.js';

export const ORG = '7f3a0000-0000-4000-8000-0000000000b1';
export const UC = '1b4e8f0a-0000-4000-8000-0000000000c1';
export const ORG_HOST = `org-${ORG}.localhost`;
export const UC_HOST = `uc-${UC}.org-${ORG}.localhost`;

/** Where a target's hosts send traffic: the 1 KiB upstream, and the node upstream (websocket echo, streams) when started. */
export interface Upstreams {
  readonly main: string;
  readonly node?: string;
}

export async function platformToken(e: EdgewayTarget): Promise<string> {
  const cfg = await loadConfig(e.configFile);
  return signToken(await loadJwtKeys(cfg), cfg.auth.jwt, { type: 'platform', scope: ['edge:admin'] }, 3600);
}

export async function admin(e: EdgewayTarget, tok: string, method: string, path: string, body?: unknown): Promise<void> {
  const r = await fetch(`${e.adminUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await r.text();
  if (r.status >= 300) throw new Error(`${e.name}: ${method} ${path} answered ${r.status}: ${text.slice(0, 500)}`);
}

/** The uc host's entry: `/` to the 1 KiB upstream, `/ws` and `/stream` to the node upstream, all behind the scope. */
export function ucEntry(up: Upstreams): unknown {
  const access = { scope: 'uc:{uc_id}:access' };
  const locations: unknown[] = [{ path: '/', upstream: up.main, access }];
  if (up.node) locations.push({ path: '/ws', upstream: up.node, access }, { path: '/stream', upstream: up.node, access });
  return { host: UC_HOST, locations };
}

/** A public filler uc host of the bench org with a random id. */
export function fillerEntry(upstreamUrl: string): { host: string; access: 'public'; locations: unknown[] } {
  return { host: `uc-${randomUUID()}.org-${ORG}.localhost`, access: 'public', locations: [{ path: '/', upstream: upstreamUrl }] };
}

/**
 * Registers the org and uc hosts plus `extra` filler uc hosts (POST /v1/batch,
 * 5,000 a chunk) and returns the session cookie from a login handoff and the
 * seconds the fillers took.
 */
export async function prepareEdgeway(e: EdgewayTarget, up: Upstreams, extra: number): Promise<{ cookie: string; fillSeconds: number }> {
  const tok = await platformToken(e);
  await admin(e, tok, 'POST', '/v1/batch', {
    put: [{ host: ORG_HOST, access: 'public', locations: [{ path: '/', upstream: up.main }] }, ucEntry(up)],
  });
  const CHUNK = 5000;
  const t0 = performance.now();
  for (let done = 0; done < extra; ) {
    const n = Math.min(CHUNK, extra - done);
    await admin(e, tok, 'POST', '/v1/batch', { put: Array.from({ length: n }, () => fillerEntry(up.main)) });
    done += n;
  }
  const fillSeconds = (performance.now() - t0) / 1000;
  // The login handoff (src/auth/handoff.ts): a short-lived user token in the
  // query with a state nonce that equals the state cookie → 302 + session cookie.
  const cfg = await loadConfig(e.configFile);
  const user = signToken(await loadJwtKeys(cfg), cfg.auth.jwt, { type: 'user', sub: 'bench-user', scope: [`uc:${UC}:access`] }, 60);
  const nonce = randomBytes(16).toString('base64url');
  const r = await request(e.httpsPort, UC_HOST, `/?edgeway_state=${nonce}&edgeway_token=${user}`, { cookie: `edgeway_state=${nonce}` });
  const set = ([] as string[]).concat(r.headers['set-cookie'] ?? []).find((c) => c.startsWith('edgeway_token='));
  if (r.status !== 302 || !set) throw new Error(`${e.name}: the handoff answered ${r.status} without a session cookie: ${r.body.slice(0, 300)}`);
  return { cookie: set.slice('edgeway_token='.length, set.indexOf(';')), fillSeconds };
}
