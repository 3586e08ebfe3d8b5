// Test helpers for the collab relay: the stock y-websocket WebsocketProvider
// (3.x) over TLS to edgeway on 127.0.0.1, given the appliance's CA and a
// lookup that sends every name to loopback (through a WebSocketPolyfill
// subclass of ws: the provider constructs it with (url, protocols) only).

import { lookup as dnsLookup } from 'node:dns';
import WebSocket from 'ws';
import { WebsocketProvider } from 'y-websocket';
import * as Y from 'yjs';

export interface Endpoint {
  readonly httpsPort: number;
  readonly caPem: string;
  readonly adminUrl: string;
  readonly platformToken: string;
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

const loopback = ((_host: string, opts: unknown, cb: (...a: unknown[]) => void) => {
  const o = opts as { all?: boolean };
  if (o.all) cb(null, [{ address: '127.0.0.1', family: 4 }]);
  else cb(null, '127.0.0.1', 4);
}) as unknown as typeof dnsLookup;

export interface ClientOptions {
  /** Sent as `Authorization: Bearer` (a non-browser client). */
  readonly bearer?: string;
  readonly origin?: string;
  readonly cookie?: string;
  /** URL parameters (e.g. `edgeway_token`). */
  readonly params?: Record<string, string>;
  readonly doc?: Y.Doc;
  readonly connect?: boolean;
}

/** A ws client class that trusts the appliance's CA and resolves every name to 127.0.0.1. */
export function wsClass(ep: Pick<Endpoint, 'caPem'>, headers: Record<string, string> = {}): typeof WebSocket {
  return class extends WebSocket {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols, { ca: [ep.caPem], lookup: loopback, headers });
    }
  } as typeof WebSocket;
}

/** A stock WebsocketProvider for `wss://{host}:{port}/collab/yjs/{room}`; destroyed in teardown. */
export function client(t: Teardown, ep: Endpoint, host: string, room: string, o: ClientOptions = {}): WebsocketProvider {
  const headers: Record<string, string> = {};
  if (o.bearer !== undefined) headers['authorization'] = `Bearer ${o.bearer}`;
  if (o.origin !== undefined) headers['origin'] = o.origin;
  if (o.cookie !== undefined) headers['cookie'] = o.cookie;
  const doc = o.doc ?? new Y.Doc();
  const p = new WebsocketProvider(`wss://${host}:${ep.httpsPort}/collab/yjs`, room, doc, {
    WebSocketPolyfill: wsClass(ep, headers) as unknown as typeof globalThis.WebSocket,
    disableBc: true,
    connect: o.connect ?? true,
    params: o.params ?? {},
    maxBackoffTime: 200,
  });
  t.teardown(() => {
    p.destroy();
    doc.destroy();
  });
  return p;
}

export function synced(p: WebsocketProvider, ms = 10_000): Promise<void> {
  if (p.synced) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('not synced in time')), ms);
    p.once('sync', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** The provider's final close ({code, reason}), or a rejection after `ms`. */
export function finalClose(p: WebsocketProvider, ms = 10_000): Promise<{ code: number; reason: string }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no final close in time')), ms);
    p.once('closed', (ev: { code: number; reason: string }) => {
      clearTimeout(timer);
      resolve(ev);
    });
  });
}

export async function until(cond: () => boolean, ms = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A collab host entry for `host` (an org host) through the admin API; `access` optional. */
export async function putCollabHost(ep: Endpoint, host: string, access?: unknown): Promise<void> {
  const res = await fetch(`${ep.adminUrl}/v1/hosts/${host}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${ep.platformToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ ...(access === undefined ? {} : { access }), locations: [{ path: '/collab/yjs', service: 'collab' }] }),
  });
  if (res.status !== 201 && res.status !== 200) throw new Error(`PUT host: ${res.status} ${await res.text()}`);
}

/** A raw ws client on a collab URL (for frames the stock client never sends). */
export function rawSocket(ep: Pick<Endpoint, 'caPem' | 'httpsPort'>, host: string, path: string, opts: WebSocket.ClientOptions = {}, headers: Record<string, string> = {}): Promise<WebSocket> {
  const ws = new WebSocket(`wss://${host}:${ep.httpsPort}${path}`, { ca: [ep.caPem], lookup: loopback, headers, ...opts });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

export function closeOf(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => ws.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() })));
}
