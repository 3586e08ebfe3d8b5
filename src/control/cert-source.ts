// Where the control plane's certificates come from, per `tls.mode`. The data
// plane never obtains certificates itself: it serves what it is handed, so a
// handshake never waits on minting or I/O (DESIGN.md "Command line": the leaf
// is handed to the data plane before the entry is acknowledged).

import { AcmeSource } from '../acme/acme-source.js';
import type { CertPublisher, CertReport, CertState } from '../acme/cert-manager.js';
import type { Config } from '../config/types.js';
import { EdgewayError } from '../errors.js';
import type { Logger } from '../log.js';
import type { CertBundle } from '../tls/cert-bundle.js';
import type { CertLoader } from '../tls/cert-store.js';
import { loadCertsDir } from '../tls/files-mode.js';
import { LocalCA } from '../tls/local-ca.js';

export interface CertSource {
  /** Served for no SNI and for names nothing covers. */
  fallback(): Promise<CertBundle>;
  /** Everything to hand the data plane at start and on SIGHUP. */
  all(hosts: Iterable<string>): Promise<CertBundle[]>;
  /** A certificate for a newly stored host, or undefined when the existing set covers it. */
  forHost(host: string): Promise<CertBundle | undefined>;
  /** Lines for the start-up banner (e.g. the CA path and how to trust it). */
  describe(): string[];
  /**
   * Sources whose data planes load certificates on first use (restored hosts,
   * see cert-store.ts): what a data plane in this process calls on a miss.
   */
  loader?(): CertLoader;
  /** For a host whose certificate was never handed over: must it be obtained (again) now? */
  due?(host: string): Promise<boolean>;
  /** A host entry is gone: drop what was kept for it (memory and disk), so churn does not grow data_dir. */
  forget?(host: string): Promise<void>;
  // Sources that obtain certificates by themselves, in the background (ACME, issue 5):
  /** Called once the control plane runs: how the source sees hosts and hands certificates over. */
  attach?(publisher: CertPublisher): void;
  /** The control plane stops: no more orders. */
  detach?(): void;
  /** Whether the certificate covering `host` is in hand (the PUT answer's `certificate`). */
  certState?(host: string): 'ready' | 'pending';
  /** GET /v1/certs. */
  report?(): CertReport[];
  /** Certificates per state, for /metrics. */
  stateCounts?(): Record<CertState, number>;
}

/** Self-signed mode: edgeway's own local CA mints an exact-name leaf per host. */
class LocalCaSource implements CertSource {
  constructor(
    private readonly ca: LocalCA,
    private readonly domain: string,
  ) {}

  fallback(): Promise<CertBundle> {
    return this.ca.leafForNames([this.domain, `*.${this.domain}`]);
  }

  async all(hosts: Iterable<string>): Promise<CertBundle[]> {
    const out: CertBundle[] = [];
    for (const h of hosts) out.push(await this.ca.leafFor(h));
    return out;
  }

  forHost(host: string): Promise<CertBundle> {
    return this.ca.leafFor(host);
  }

  /** In one process the data plane asks the CA itself: from memory, disk, or minted. */
  loader(): CertLoader {
    return (name) => this.ca.leafFor(name);
  }

  due(host: string): Promise<boolean> {
    return this.ca.leafDue(host);
  }

  forget(host: string): Promise<void> {
    return this.ca.forget([host]);
  }

  describe(): string[] {
    return [`local CA certificate: ${this.ca.certPath}`, `trust it on this machine: ${this.ca.trustCommand()}`];
  }
}

/**
 * Files mode: pairs from `tls.certs_dir`, read once when the source is opened
 * (at start, and again on SIGHUP, which opens a new source); the first
 * covering `*.{domain}`, else `{domain}`, is the fallback.
 */
class FilesSource implements CertSource {
  private constructor(
    private readonly dir: string,
    private readonly bundles: CertBundle[],
    private readonly best: CertBundle,
  ) {}

  static async open(dir: string, domain: string): Promise<FilesSource> {
    const bundles = await loadCertsDir(dir);
    const wild = `*.${domain}`;
    const best = bundles.find((b) => b.names.includes(wild)) ?? bundles.find((b) => b.names.includes(domain)) ?? bundles[0];
    if (best === undefined) {
      throw new EdgewayError('CONFIG_INVALID', `tls.certs_dir: no certificate pairs found in ${dir}`, { field: 'tls.certs_dir' });
    }
    return new FilesSource(dir, bundles, best);
  }

  async fallback(): Promise<CertBundle> {
    return this.best;
  }

  async all(): Promise<CertBundle[]> {
    return this.bundles;
  }

  async forHost(): Promise<undefined> {
    return undefined;
  }

  describe(): string[] {
    return [`certificates from ${this.dir} (${this.bundles.length} pairs)`];
  }
}

export async function openCertSource(cfg: Config, log: Logger): Promise<CertSource> {
  switch (cfg.tls.mode) {
    case 'self-signed':
      return new LocalCaSource(await LocalCA.open(cfg.data_dir, { leafDays: cfg.tls.leaf_days }), cfg.domain);
    case 'files':
      return FilesSource.open(cfg.tls.certs_dir, cfg.domain);
    case 'acme':
      return AcmeSource.open(cfg, log);
  }
}

/**
 * A data-plane worker's loader: the leaf files the control plane minted into
 * data_dir (same machine; a file read is fine on the handshake path, IPC is
 * not). Files mode hands every certificate over up front and needs none.
 */
export function workerCertLoader(cfg: Config): CertLoader | undefined {
  // ACME: every certificate is handed over (few: one per org at most).
  return cfg.tls.mode === 'self-signed' ? LocalCA.leafReader(cfg.data_dir) : undefined;
}
