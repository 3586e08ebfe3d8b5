// What the control plane sends to data planes (DESIGN.md "Process model"):
// route-table changes and certificates. In one process these are applied by a
// function call; with `workers: N` they travel over IPC as the same objects
// (certificates as PEM, rebuilt on the worker), so both paths share one shape.

import type { HostEntry } from '../routes/types.js';
import { bundleFromPem, type CertBundle } from '../tls/cert-bundle.js';

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
  | { readonly kind: 'cert'; readonly cert: CertPem }
  /** A released certificate (ACME, issue 5): its names stop being served. */
  | { readonly kind: 'uncert'; readonly names: readonly string[] };

/** A data plane as the control plane sees it: resolves once the change is live there. */
export interface DataPlaneSink {
  apply(change: TableChange, version: number): Promise<void>;
  /** True once every data-plane process listens and holds `version`. */
  current(version: number): boolean;
}

/**
 * The bundle a CertPem was made from, while that very object is in hand: in
 * one process the data plane gets it back without parsing and re-checking
 * the PEM (a fifth of a new host's PUT); over IPC the object is a copy, the
 * lookup misses and the worker parses it (bundleOf).
 */
const parsed = new WeakMap<CertPem, CertBundle>();

export function toPem(b: CertBundle): CertPem {
  const pem = { certPem: b.certPem, keyPem: b.keyPem };
  parsed.set(pem, b);
  return pem;
}

/** The bundle for a CertPem: the original when it never left this process, else parsed and checked. */
export function bundleOf(pem: CertPem): CertBundle {
  return parsed.get(pem) ?? bundleFromPem(pem.certPem, pem.keyPem);
}
