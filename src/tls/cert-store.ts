// What the data plane serves certificates from: name → SecureContext, no I/O.
// A context is built once, at the first handshake for its bundle, and kept;
// every later SNI callback is two Map lookups.
//
// Swapping is per handshake: a new context is picked up by the next ClientHello,
// while established TLS connections keep the keys they negotiated.
//
// Lazy certificates: after a restart with many stored hosts, their leaves are
// not loaded up front (100,000 key parses would delay the first request by a
// minute). With a loader set, a handshake for a routed name the store holds
// nothing for asks the loader (a local file read, or the local CA in one
// process) once; that first handshake waits for it, every later one is a hit.

import { createSecureContext, type SecureContext } from 'node:tls';
import type { CertBundle } from './cert-bundle.js';

/**
 * A bundle and its context, built at the first handshake that needs it:
 * parsing a key costs about a millisecond, which would otherwise be paid by
 * every PUT of a new host (a third of its CPU) for hosts that may never see a
 * browser. The first handshake for a name pays it once, as CPU, not I/O.
 */
class Entry {
  #ctx: SecureContext | undefined;
  constructor(readonly bundle: CertBundle) {}
  get ctx(): SecureContext {
    return (this.#ctx ??= createSecureContext({ key: this.bundle.keyPem, cert: this.bundle.certPem }));
  }
}

export type SniCallback = (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void) => void;

/** Obtains the certificate for a host entry's name (`*.parent` for a wildcard entry), or undefined. */
export type CertLoader = (name: string) => Promise<CertBundle | undefined>;

/** The host entry a normalized server name routes to (its own name, or the `*.parent` covering it). */
export type RoutedName = (servername: string) => string | undefined;

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
  return new Entry(bundle);
}

export class CertStore {
  /** Exact names. */
  readonly #exact = new Map<string, Entry>();
  /** `*.parent` bundles keyed by `parent`, so a lookup slices the name instead of building `'*.' + parent`. */
  readonly #wild = new Map<string, Entry>();
  #fallback: Entry;
  #loader: CertLoader | undefined;
  #routed: RoutedName | undefined;
  /** Loads in flight by entry name, so concurrent handshakes for one host share one read. */
  readonly #loading = new Map<string, Promise<Entry | undefined>>();
  /** For tls.createServer's SNICallback; one closure for the store's lifetime. */
  readonly sniCallback: SniCallback;

  constructor(fallback: CertBundle) {
    this.#fallback = entryOf(fallback);
    this.sniCallback = (servername, cb) => {
      const name = normalizeServername(servername);
      const found = name === undefined ? this.#fallback : this.#find(name);
      if (found !== undefined) return cb(null, found.ctx);
      if (this.#loader === undefined || this.#routed!(name!) === undefined) return cb(null, this.#fallback.ctx);
      this.#load(name!).then((e) => cb(null, (e ?? this.#fallback).ctx));
    };
  }

  /**
   * Certificates on first use: a handshake for a name `routed` maps to an
   * entry, with nothing indexed for it, waits for `loader(entry name)`.
   * Unrouted names never reach the loader (they get the fallback at once),
   * so a scan of random names costs no I/O.
   */
  setLoader(loader: CertLoader, routed: RoutedName): void {
    this.#loader = loader;
    this.#routed = routed;
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
    const name = normalizeServername(servername);
    return ((name === undefined ? undefined : this.#find(name)) ?? this.#fallback).ctx;
  }

  #find(name: string): Entry | undefined {
    const exact = this.#exact.get(name);
    if (exact !== undefined) return exact;
    const dot = name.indexOf('.');
    return dot > 0 ? this.#wild.get(name.slice(dot + 1)) : undefined;
  }

  /** The entry for `name` once loaded, or undefined (fallback) when unrouted, absent or failing. */
  #load(name: string): Promise<Entry | undefined> {
    const host = this.#routed!(name);
    if (host === undefined) return Promise.resolve(undefined);
    let p = this.#loading.get(host);
    if (p === undefined) {
      p = this.#loader!(host)
        .then((bundle) => {
          // Deleted while this loaded: do not index a certificate nothing routes to.
          if (bundle === undefined || this.#routed!(name) !== host) return undefined;
          // The control plane handed one meanwhile (a PUT, a renewal): it is newer.
          const have = this.#find(name);
          if (have !== undefined) return have;
          this.set(bundle);
          return this.#find(name);
        })
        // A load that fails costs that handshake the right name, not the connection.
        .catch(() => undefined)
        .finally(() => this.#loading.delete(host));
      this.#loading.set(host, p);
    }
    return p;
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

/** Lower case, without the trailing dot RFC 6066 §3 forbids but some clients send; undefined for no SNI. */
function normalizeServername(servername: string | undefined): string | undefined {
  if (servername === undefined || servername.length === 0) return undefined;
  const name = servername.toLowerCase();
  return name.charCodeAt(name.length - 1) === 0x2e ? name.slice(0, -1) : name;
}
