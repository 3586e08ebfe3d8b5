// The IPC protocol between the control plane (cluster primary) and data-plane
// workers. Plain JSON-serializable objects (Node's default cluster
// serialization); certificates travel as PEM, ticket keys as base64.

import type { Config } from '../config/types.js';
import type { TableChange } from '../control/changes.js';

export type ToWorker =
  | { readonly t: 'init'; readonly config: Config; readonly ticketKeys: string; readonly change: TableChange; readonly version: number }
  | { readonly t: 'change'; readonly change: TableChange; readonly version: number }
  | { readonly t: 'limits'; readonly config: Config }
  | { readonly t: 'drain' };

export type ToPrimary =
  /** The worker listens for messages (ESM modules load asynchronously, so
   *  anything sent before this would reach a process with no listener yet). */
  | { readonly t: 'hello' }
  | { readonly t: 'ready'; readonly addresses: { readonly https: string; readonly http: string } }
  | { readonly t: 'ack'; readonly version: number }
  | { readonly t: 'failed'; readonly message: string };

export function isMessage<T extends { t: string }>(m: unknown): m is T {
  return typeof m === 'object' && m !== null && typeof (m as { t?: unknown }).t === 'string';
}
