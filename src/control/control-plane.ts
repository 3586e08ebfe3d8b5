// The control plane's state machine: the source of truth for host entries
// (static ones from routes/ and those the admin API stores), certificates for
// them, and the data planes that must hold both before a change is acknowledged.
// Changes are applied one at a time, in order, so versions only grow and a
// data plane never sees a table older than one it already acknowledged.

import { ERRORS, EdgewayError } from '../errors.js';
import type { BatchResult, HostStore, PutResult, StoredEntry } from '../admin/host-store.js';
import type { HostEntry } from '../routes/types.js';
import type { Logger } from '../log.js';
import type { CertSource } from './cert-source.js';
import type { CertBundle } from '../tls/cert-bundle.js';
import { toPem, type DataPlaneSink, type TableChange } from './changes.js';

const RENEW_CHECK_MS = 3_600_000;

export class ControlPlane implements HostStore {
  private readonly entries = new Map<string, StoredEntry>();
  private version = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private leaseTimer: NodeJS.Timeout | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  /** The certificate PEM each host was last handed with, to push only renewed ones. */
  private readonly pushed = new Map<string, string>();
  private pushedFallback = '';
  private readonly expiring = new Set<string>();

  constructor(
    private certs: CertSource,
    private readonly sink: DataPlaneSink,
    private readonly log: Logger,
  ) {}

  /** Loads static entries and certificates and hands the whole state to the data planes. */
  async start(staticEntries: readonly HostEntry[]): Promise<void> {
    await this.replaceStatic(staticEntries, this.certs);
    // One coarse timer for every lease (undici's pattern), not one per entry.
    this.leaseTimer = setInterval(() => this.expireLeases(Date.now()), 250);
    this.leaseTimer.unref();
    // Self-signed leaves are short-lived: look for due ones hourly (the CA
    // re-mints a leaf once less than a third of its lifetime is left).
    this.renewTimer = setInterval(() => {
      this.renewCerts().catch((err: unknown) => this.log.error({ err }, 'certificate renewal failed'));
    }, RENEW_CHECK_MS);
    this.renewTimer.unref();
  }

  stop(): void {
    if (this.leaseTimer) clearInterval(this.leaseTimer);
    if (this.renewTimer) clearInterval(this.renewTimer);
  }

  /** Hands the data planes every certificate that changed since it was last pushed. */
  renewCerts(): Promise<number> {
    return this.serialize(async () => {
      let renewed = 0;
      const fallback = await this.certs.fallback();
      if (fallback.certPem !== this.pushedFallback) {
        // The fallback travels with the whole state (rare: once per leaf lifetime).
        await this.sink.apply(await this.wholeState(), ++this.version);
        renewed++;
      }
      for (const host of this.entries.keys()) {
        const cert = await this.certs.forHost(host);
        if (cert === undefined || this.pushed.get(host) === cert.certPem) continue;
        await this.sink.apply({ kind: 'cert', cert: toPem(cert) }, ++this.version);
        this.pushed.set(host, cert.certPem);
        renewed++;
      }
      if (renewed > 0) this.log.info({ renewed }, 'renewed certificates handed to the data plane');
      return renewed;
    });
  }

  /** SIGHUP: new routes/ entries and certificates replace the old ones in one swap; API entries stay. */
  replaceStatic(staticEntries: readonly HostEntry[], certs: CertSource): Promise<void> {
    return this.serialize(async () => {
      const next = new Map<string, StoredEntry>();
      for (const [host, s] of this.entries) if (s.entry.source !== 'static') next.set(host, s);
      for (const e of staticEntries) {
        if (next.has(e.host)) {
          this.log.warn({ host: e.host }, 'routes/ entry replaces an entry stored through the admin API');
        }
        const prev = this.entries.get(e.host);
        next.set(e.host, { entry: e, version: (prev?.version ?? 0) + 1, expiresAt: null });
      }
      const fallback = await certs.fallback();
      const bundles = await certs.all(next.keys());
      const change: TableChange = {
        kind: 'replace',
        entries: [...next.values()].map((s) => s.entry),
        certs: bundles.map(toPem),
        fallback: toPem(fallback),
      };
      await this.sink.apply(change, ++this.version);
      this.pushedFallback = fallback.certPem;
      this.certs = certs;
      this.pushed.clear();
      for (const b of bundles) for (const n of b.names) this.pushed.set(n, b.certPem);
      this.entries.clear();
      for (const [h, s] of next) this.entries.set(h, s);
    });
  }

  /**
   * Hands `fn` the whole current state between two changes (never in the
   * middle of one), for a data-plane process that starts or restarts.
   */
  snapshot(fn: (change: TableChange, version: number) => void): Promise<void> {
    return this.serialize(async () => fn(await this.wholeState(), this.version));
  }

  private async wholeState(): Promise<TableChange> {
    const fallback = await this.certs.fallback();
    const bundles = await this.certs.all(this.entries.keys());
    this.pushedFallback = fallback.certPem;
    return {
      kind: 'replace',
      entries: [...this.entries.values()].map((s) => s.entry),
      certs: bundles.map(toPem),
      fallback: toPem(fallback),
    };
  }

  list(): StoredEntry[] {
    return [...this.entries.values()];
  }

  get(host: string): StoredEntry | undefined {
    return this.entries.get(host);
  }

  put(entry: HostEntry): Promise<PutResult> {
    return this.serialize(async () => {
      const prev = this.entries.get(entry.host);
      if (prev?.entry.source === 'static') throw new EdgewayError('STATIC_ENTRY');
      // The certificate first, so no handshake for this name ever waits.
      const cert = await this.certs.forHost(entry.host);
      await this.sink.apply({ kind: 'put', entry, cert: cert && toPem(cert) }, ++this.version);
      if (cert) this.pushed.set(entry.host, cert.certPem);
      const stored: StoredEntry = {
        entry,
        version: (prev?.version ?? 0) + 1,
        expiresAt: entry.lease_ttl_s === undefined ? null : Date.now() + entry.lease_ttl_s * 1000,
      };
      this.entries.set(entry.host, stored);
      return { created: prev === undefined, stored };
    });
  }

  heartbeat(host: string): Promise<StoredEntry | undefined> {
    return this.serialize(async () => {
      const prev = this.entries.get(host);
      if (prev === undefined) return undefined;
      if (prev.entry.source === 'static') throw new EdgewayError('STATIC_ENTRY');
      const ttl = prev.entry.lease_ttl_s;
      const stored: StoredEntry = { ...prev, expiresAt: ttl === undefined ? null : Date.now() + ttl * 1000 };
      this.entries.set(host, stored);
      return stored;
    });
  }

  batch(puts: readonly HostEntry[], deletes: readonly string[]): Promise<BatchResult> {
    return this.serialize(async () => {
      // Check everything before changing anything: all or nothing.
      for (const e of puts) {
        if (this.entries.get(e.host)?.entry.source === 'static') throw new EdgewayError('STATIC_ENTRY', `${e.host}: ${ERRORS.STATIC_ENTRY.message}`);
      }
      for (const h of deletes) {
        const prev = this.entries.get(h);
        if (prev === undefined) throw new EdgewayError('NOT_FOUND', `${h}: no such host`);
        if (prev.entry.source === 'static') throw new EdgewayError('STATIC_ENTRY', `${h}: ${ERRORS.STATIC_ENTRY.message}`);
      }
      const certs: (CertBundle | undefined)[] = [];
      for (const e of puts) certs.push(await this.certs.forHost(e.host));
      await this.sink.apply(
        { kind: 'batch', puts: puts.map((entry, i) => ({ entry, cert: certs[i] && toPem(certs[i]!) })), deletes },
        ++this.version,
      );
      const now = Date.now();
      const put: PutResult[] = puts.map((entry, i) => {
        const prev = this.entries.get(entry.host);
        const stored: StoredEntry = {
          entry,
          version: (prev?.version ?? 0) + 1,
          expiresAt: entry.lease_ttl_s === undefined ? null : now + entry.lease_ttl_s * 1000,
        };
        this.entries.set(entry.host, stored);
        const cert = certs[i];
        if (cert) this.pushed.set(entry.host, cert.certPem);
        return { created: prev === undefined, stored };
      });
      for (const h of deletes) {
        this.entries.delete(h);
        this.pushed.delete(h);
      }
      return { put, deleted: [...deletes] };
    });
  }

  delete(host: string): Promise<boolean> {
    return this.serialize(async () => {
      const prev = this.entries.get(host);
      if (prev === undefined) return false;
      if (prev.entry.source === 'static') throw new EdgewayError('STATIC_ENTRY');
      await this.sink.apply({ kind: 'delete', host }, ++this.version);
      this.entries.delete(host);
      this.pushed.delete(host);
      return true;
    });
  }

  health(): { hosts: number; ready: boolean } {
    return { hosts: this.entries.size, ready: this.version > 0 && this.sink.current(this.version) };
  }

  private expireLeases(now: number): void {
    for (const [host, s] of this.entries) {
      if (s.expiresAt === null || s.expiresAt > now || this.expiring.has(host)) continue;
      this.expiring.add(host);
      this.serialize(async () => {
        // Renewed (or replaced) while this waited its turn: keep it.
        const cur = this.entries.get(host);
        if (cur?.expiresAt == null || cur.expiresAt > Date.now()) return;
        await this.sink.apply({ kind: 'delete', host }, ++this.version);
        this.entries.delete(host);
        this.pushed.delete(host);
        this.log.info({ host }, 'lease expired; entry removed');
      })
        .catch((err: unknown) => this.log.error({ host, err }, 'lease expiry failed'))
        .finally(() => this.expiring.delete(host));
    }
  }

  /** Runs `fn` after every earlier change has finished, whatever their outcome. */
  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}
