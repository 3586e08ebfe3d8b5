// The seam between the admin API and the control plane's state (DESIGN.md
// "Process model"): the admin API validates and authorizes, the store applies.
// A promise resolves only once every data-plane process holds the change and
// its certificate, so "a change is served by the next request after the
// response" holds in one process and with `workers: N` alike.

import type { HostEntry } from '../routes/types.js';

export interface StoredEntry {
  readonly entry: HostEntry;
  /** Increments on every replace of this host. */
  readonly version: number;
  /** Epoch ms when the lease runs out, or null without a lease. */
  readonly expiresAt: number | null;
}

export interface PutResult {
  readonly created: boolean;
  readonly stored: StoredEntry;
}

export interface BatchResult {
  readonly put: readonly PutResult[];
  readonly deleted: readonly string[];
}

export interface HostStore {
  list(): StoredEntry[];
  get(host: string): StoredEntry | undefined;
  /** Throws EdgewayError STATIC_ENTRY when `host` is a routes/ entry. */
  put(entry: HostEntry): Promise<PutResult>;
  /** Resolves false when absent; throws STATIC_ENTRY for routes/ entries. */
  delete(host: string): Promise<boolean>;
  /** Renews the lease (a full lease_ttl_s from now); undefined when absent. Throws STATIC_ENTRY for routes/ entries. */
  heartbeat(host: string): Promise<StoredEntry | undefined>;
  /**
   * All or nothing: every put and delete applies, or none does (the first
   * failure is thrown: STATIC_ENTRY for a routes/ host, NOT_FOUND for an
   * absent delete) and the state is as before.
   */
  batch(puts: readonly HostEntry[], deletes: readonly string[]): Promise<BatchResult>;
  /** Whether the certificate covering `host` is in hand (issue 5: ACME orders in the background). Absent: always ready. */
  certState?(host: string): 'ready' | 'pending';
  /** Number of host entries and whether every listener and data plane is current. */
  health(): { readonly hosts: number; readonly ready: boolean };
}
