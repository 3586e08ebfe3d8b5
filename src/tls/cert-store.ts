// What the data plane serves certificates from: name → prebuilt SecureContext,
// no I/O. Contexts are built once when a bundle arrives (key parsing costs far
// more than a handshake lookup), so the SNI callback is two Map lookups.
//
// Swapping is per handshake: a new context is picked up by the next ClientHello,
// while established TLS connections keep the keys they negotiated.

import { createSecureContext, type SecureContext } from 'node:tls';
import type { CertBundle } from './cert-bundle.js';

interface Entry {
  readonly bundle: CertBundle;
  readonly ctx: SecureContext;
}

export type SniCallback = (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void) => void;

export interface CertListing {
  readonly names: readonly string[];
  readonly issuer: string;
  readonly notAfter: Date;
}

/**
 * Only key and chain matter here: for a context returned by SNICallback, Node
 * copies the certificate, key and chain onto the connection and keeps the
 * server's default context for everything else (protocol versions, ciphers,
 * ticket keys, ALPN), which server-options.ts sets once.
 */
function entryOf(bundle: CertBundle): Entry {
  return { bundle, ctx: createSecureContext({ key: bundle.keyPem, cert: bundle.certPem }) };
}

export class CertStore {
  /** Exact names. */
  readonly #exact = new Map<string, Entry>();
  /** `*.parent` bundles keyed by `parent`, so a lookup slices the name instead of building `'*.' + parent`. */
  readonly #wild = new Map<string, Entry>();
  #fallback: Entry;
  /** For tls.createServer's SNICallback; one closure for the store's lifetime. */
  readonly sniCallback: SniCallback;

  constructor(fallback: CertBundle) {
    this.#fallback = entryOf(fallback);
    this.sniCallback = (servername, cb) => {
      cb(null, this.contextFor(servername));
    };
  }

  /** Indexes the bundle under each of its names, replacing what those names had. */
  set(bundle: CertBundle): void {
    const entry = entryOf(bundle);
    for (const name of bundle.names) {
      if (name.startsWith('*.')) this.#wild.set(name.slice(2), entry);
      else this.#exact.set(name, entry);
    }
  }

  /**
   * Removes whatever is indexed under exactly `name` (other names of the same
   * bundle stay). With `only`, removes it only while `only` is still the
   * current bundle there, so a late delete cannot undo a newer set.
   */
  delete(name: string, only?: CertBundle): void {
    const lower = name.toLowerCase();
    const wild = lower.startsWith('*.');
    const map = wild ? this.#wild : this.#exact;
    const key = wild ? lower.slice(2) : lower;
    if (only !== undefined && map.get(key)?.bundle !== only) return;
    map.delete(key);
  }

  setFallback(bundle: CertBundle): void {
    this.#fallback = entryOf(bundle);
  }

  get fallback(): CertBundle {
    return this.#fallback.bundle;
  }

  /** The fallback's context, for a server's default (no-SNI) context. */
  get fallbackContext(): SecureContext {
    return this.#fallback.ctx;
  }

  /**
   * Exact servername, then `*.` + parent (a wildcard covers exactly one label,
   * RFC 6125 §6.4.3), else the fallback. No SNI, or a name we do not route,
   * still completes the handshake (DESIGN.md "Hostnames"): the Host decides.
   */
  contextFor(servername: string | undefined): SecureContext {
    if (servername === undefined || servername.length === 0) return this.#fallback.ctx;
    let name = servername.toLowerCase();
    // RFC 6066 §3 forbids the trailing dot in SNI; tolerate clients that send it anyway.
    if (name.charCodeAt(name.length - 1) === 0x2e) name = name.slice(0, -1);
    const exact = this.#exact.get(name);
    if (exact !== undefined) return exact.ctx;
    const dot = name.indexOf('.');
    if (dot > 0) {
      const wild = this.#wild.get(name.slice(dot + 1));
      if (wild !== undefined) return wild.ctx;
    }
    return this.#fallback.ctx;
  }

  /** Every distinct bundle, the fallback first (for /v1/certs; not a hot path). */
  list(): CertListing[] {
    const seen = new Set<CertBundle>([this.#fallback.bundle]);
    for (const map of [this.#exact, this.#wild]) for (const e of map.values()) seen.add(e.bundle);
    return [...seen].map((b) => ({ names: b.names, issuer: b.issuer, notAfter: b.notAfter }));
  }

  /** Whether a bundle is indexed under exactly `name` (`*.x` asks for the wildcard). */
  has(name: string): boolean {
    const lower = name.toLowerCase();
    return lower.startsWith('*.') ? this.#wild.has(lower.slice(2)) : this.#exact.has(lower);
  }
}
