// What the control plane sends to data planes (DESIGN.md "Process model"):
// route-table changes and certificates. In one process these are applied by a
// function call; with `workers: N` they travel over IPC as the same objects
// (certificates as PEM, rebuilt on the worker), so both paths share one shape.

import type { HostEntry } from '../routes/types.js';
import type { CertBundle } from '../tls/cert-bundle.js';

/** A certificate as it crosses IPC: PEM only, parsed again on arrival. */
export interface CertPem {
  readonly certPem: string;
  readonly keyPem: string;
}

export type TableChange =
  | { readonly kind: 'put'; readonly entry: HostEntry; readonly cert?: CertPem }
  | { readonly kind: 'delete'; readonly host: string }
  /** Applied as one step: no request sees half of a batch. */
  | {
      readonly kind: 'batch';
      readonly puts: readonly { readonly entry: HostEntry; readonly cert?: CertPem }[];
      readonly deletes: readonly string[];
    }
  /** Whole state: at worker start, and on SIGHUP (routes/ and certificates reloaded). */
  | {
      readonly kind: 'replace';
      readonly entries: readonly HostEntry[];
      readonly certs: readonly CertPem[];
      readonly fallback: CertPem;
    }
  | { readonly kind: 'cert'; readonly cert: CertPem };

/** A data plane as the control plane sees it: resolves once the change is live there. */
export interface DataPlaneSink {
  apply(change: TableChange, version: number): Promise<void>;
  /** True once every data-plane process listens and holds `version`. */
  current(version: number): boolean;
}

export function toPem(b: CertBundle): CertPem {
  return { certPem: b.certPem, keyPem: b.keyPem };
}
