// The IPC protocol between the control plane (cluster primary) and data-plane
// workers. Plain JSON-serializable objects (Node's default cluster
// serialization); certificates travel as PEM, ticket keys as base64.

import type { ServiceName } from '../routes/types.js';
import type { Config } from '../config/types.js';
import type { TableChange } from '../control/changes.js';
import type { ActivityRow } from '../observe/activity.js';
import type { MetricsJson } from '../observe/metrics.js';

/** What the primary asks a worker for (GET /metrics or GET /v1/activity on the control plane). */
export type StatsWant = 'metrics' | 'activity';

export type ToWorker =
  | {
      readonly t: 'init';
      readonly config: Config;
      readonly ticketKeys: string;
      readonly change: TableChange;
      readonly version: number;
      /** The services the control plane hosts and the socket that reaches them (src/services/service-socket.ts). */
      readonly services: { readonly names: readonly ServiceName[]; readonly socketPath: string } | undefined;
    }
  | { readonly t: 'change'; readonly change: TableChange; readonly version: number }
  | { readonly t: 'limits'; readonly config: Config }
  | { readonly t: 'drain' }
  /** Asks for this worker's counters; answered with a `stats` carrying the same id. */
  | { readonly t: 'stats'; readonly id: number; readonly want: StatsWant };

export type ToPrimary =
  /** The worker listens for messages (ESM modules load asynchronously, so
   *  anything sent before this would reach a process with no listener yet). */
  | { readonly t: 'hello' }
  | { readonly t: 'ready'; readonly addresses: { readonly https: string; readonly http: string } }
  | { readonly t: 'ack'; readonly version: number }
  | { readonly t: 'failed'; readonly message: string }
  | { readonly t: 'stats'; readonly id: number; readonly metrics?: MetricsJson; readonly activity?: ActivityRow[] };

export function isMessage<T extends { t: string }>(m: unknown): m is T {
  return typeof m === 'object' && m !== null && typeof (m as { t?: unknown }).t === 'string';
}
