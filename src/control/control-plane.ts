// The control plane's state machine: the source of truth for host entries
// (static ones from routes/ and those the admin API stores), certificates for
// them, and the data planes that must hold both before a change is acknowledged.
// Changes are applied one at a time, in order, so versions only grow and a
// data plane never sees a table older than one it already acknowledged.
//
// Durability (issue 3, "nothing accepted is lost"): each change to an API
// entry is journaled (durable-state.ts) in the same synchronous step that
// changes `entries`, inside the queue; the fsync is awaited outside it, so
// changes queued behind it share the next fsync (group commit). A promise
// resolves only once the data planes hold the change AND it is on disk.
// Slow work that needs no ordering (minting a new host's leaf) also happens
// before a change takes its turn, never while holding the queue.

import { ERRORS, EdgewayError } from '../errors.js';
import type { BatchResult, HostStore, PutResult, StoredEntry } from '../admin/host-store.js';
import type { HostEntry } from '../routes/types.js';
import type { Logger } from '../log.js';
import type { CertSource } from './cert-source.js';
import type { CertPublisher, CertReport } from '../acme/cert-manager.js';
import type { CertBundle } from '../tls/cert-bundle.js';
import { toPem, type CertPem, type DataPlaneSink, type TableChange } from './changes.js';
import type { DurableState, LoadStats } from './durable-state.js';

const RENEW_CHECK_MS = 3_600_000;
/** After a restart, restored hosts' certificates are checked this long after start, off the first requests' path. */
const RESTORED_CHECK_DELAY_MS = 2_000;
/** Restored hosts' certificates are checked this many at a time, with this pause between. */
const LAZY_CHECK_BATCH = 200;
const LAZY_CHECK_PAUSE_MS = 200;

export class ControlPlane implements HostStore {
  /** Called after a lease ran out and its entry was removed (metrics). */
  onLeaseExpired: ((host: string) => void) | undefined;

  private entries = new Map<string, StoredEntry>();
  private version = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private leaseTimer: NodeJS.Timeout | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private restoredTimer: NodeJS.Timeout | undefined;
  /**
   * The certificate PEM each host was last handed with, to push only renewed
   * ones. Restored hosts are absent until a renewal hands them one: the data
   * planes load theirs from disk on first use (cert-store.ts).
   */
  private readonly pushed = new Map<string, string>();
  private pushedFallback = '';
  private readonly expiring = new Set<string>();
  private renewing: Promise<number> | undefined;
  /** Set by stop(): a certificate pass in progress ends early. */
  private stopped = false;

  constructor(
    private certs: CertSource,
    private readonly sink: DataPlaneSink,
    private readonly log: Logger,
    /** Where API entries persist; without it (unit tests) they live in memory only. */
    private readonly durable?: DurableState,
  ) {}

  /**
   * Loads static entries and the API entries restored from data_dir (those
   * whose lease ran out while edgeway was down are dropped; the others keep
   * their absolute deadline, so the lease time they had left) and hands the
   * whole state to the data planes. `restored` becomes the store's own map.
   * Restored hosts get no certificate here: loading 100,000 leaves up front
   * would delay the first request by a minute; the data planes load each on
   * first use, and a background pass soon after start mints missing or due ones.
   */
  async start(staticEntries: readonly HostEntry[], restored: Map<string, StoredEntry> = new Map(), load?: LoadStats): Promise<void> {
    const now = Date.now();
    let expired = 0;
    // Taken over, not copied (100,000 entries), minus the expired ones.
    this.entries = restored;
    for (const [host, s] of this.entries) {
      if (s.expiresAt !== null && s.expiresAt <= now) {
        this.entries.delete(host);
        expired++;
      }
    }
    const count = this.entries.size;
    const t = performance.now();
    await this.replaceStatic(staticEntries, this.certs);
    if (load !== undefined) {
      this.log.info(
        {
          entries: count,
          expired,
          snapshot_entries: load.snapshotEntries,
          journal_records: load.journalRecords,
          snapshot_ms: Math.round(load.snapshotMs),
          journal_ms: Math.round(load.journalMs),
          table_ms: Math.round(performance.now() - t),
        },
        'state restored',
      );
    }
    if (count > 0 && this.certs.due !== undefined) {
      this.restoredTimer = setTimeout(() => {
        this.renewCerts().catch((err: unknown) => this.log.error({ err }, 'certificate check of restored hosts failed'));
      }, RESTORED_CHECK_DELAY_MS);
      this.restoredTimer.unref();
    }
    // One coarse timer for every lease (undici's pattern), not one per entry.
    this.leaseTimer = setInterval(() => this.expireLeases(Date.now()), 250);
    this.leaseTimer.unref();
    // Self-signed leaves are short-lived: look for due ones hourly (the CA
    // re-mints a leaf once less than a third of its lifetime is left).
    this.renewTimer = setInterval(() => {
      this.renewCerts().catch((err: unknown) => this.log.error({ err }, 'certificate renewal failed'));
    }, RENEW_CHECK_MS);
    this.renewTimer.unref();
    // Sources that obtain certificates in the background (ACME) start now.
    this.certs.attach?.(this.publisher());
  }

  stop(): void {
    this.stopped = true;
    this.certs.detach?.();
    if (this.leaseTimer) clearInterval(this.leaseTimer);
    if (this.renewTimer) clearInterval(this.renewTimer);
    if (this.restoredTimer) clearTimeout(this.restoredTimer);
  }

  /** stop(), then waits for the changes in the queue and closes the journal (logging its totals). */
  async close(): Promise<void> {
    this.stop();
    await this.serialize(async () => undefined);
    if (this.durable === undefined) return;
    const stats = await this.durable.close();
    this.log.info({ ...stats }, 'state journal closed');
  }

  /**
   * Writes a snapshot of every API entry and drops the journals it covers.
   * Runs by itself once the journals pass a threshold; callable to force one.
   */
  compact(): Promise<void> {
    if (this.durable === undefined) return Promise.resolve();
    return this.durable.compact(
      (fn) => this.serialize(fn),
      () => [...this.entries.values()].filter((s) => s.entry.source !== 'static'),
    );
  }

  /**
   * Hands the data planes every certificate that changed since it was last
   * pushed. Leaves are obtained (and minted, when due) outside the queue; only
   * handing one over takes a turn, so a renewal of many hosts never stalls PUTs.
   */
  renewCerts(): Promise<number> {
    // One pass at a time (the hourly one may meet the one after start).
    this.renewing ??= this.renewPass().finally(() => {
      this.renewing = undefined;
    });
    return this.renewing;
  }

  private async renewPass(): Promise<number> {
    let renewed = await this.serialize(async () => {
      const fallback = await this.certs.fallback();
      if (fallback.certPem === this.pushedFallback) return 0;
      // The fallback travels with the whole state (rare: once per leaf lifetime).
      await this.sink.apply(await this.wholeState(), ++this.version);
      this.pushedFallback = fallback.certPem;
      return 1;
    });
    let checked = 0;
    for (const host of [...this.entries.keys()]) {
      if (this.stopped) break;
      // A restored host's leaf is read from disk by the data planes on first
      // use: only one that is missing or due is minted (and then handed over,
      // so no data plane keeps serving the old one). The first check of each
      // reads its certificate: paced, so 100,000 of them after a restart take
      // a slice of one core for a minute or two instead of all of it.
      if (!this.pushed.has(host)) {
        if (this.certs.due === undefined) continue;
        if (++checked % LAZY_CHECK_BATCH === 0) await new Promise((r) => setTimeout(r, LAZY_CHECK_PAUSE_MS).unref());
        if (!(await this.certs.due(host))) continue;
      }
      let cert: CertBundle | undefined;
      try {
        cert = await this.certs.forHost(host);
      } catch (err) {
        this.log.error({ host, err }, 'certificate renewal failed');
        continue;
      }
      if (cert === undefined || this.pushed.get(host) === cert.certPem) continue;
      const fresh = cert;
      renewed += await this.serialize(async () => {
        if (!this.entries.has(host) || this.pushed.get(host) === fresh.certPem) return 0;
        await this.sink.apply({ kind: 'cert', cert: toPem(fresh) }, ++this.version);
        this.pushed.set(host, fresh.certPem);
        return 1;
      });
    }
    if (renewed > 0) this.log.info({ renewed }, 'renewed certificates handed to the data plane');
    return renewed;
  }

  /** SIGHUP: new routes/ entries and certificates replace the old ones in one swap; API entries stay. */
  replaceStatic(staticEntries: readonly HostEntry[], certs: CertSource): Promise<void> {
    return this.serialize(async () => {
      // One pass over the entries, no copy of the map: at start it holds every
      // restored entry (100,000 of them must not cost a second per restart).
      const statics = new Map(staticEntries.map((e) => [e.host, e]));
      const shadowed: string[] = [];
      const entries: HostEntry[] = [];
      // Static hosts and those stored during this run get certificates now; restored ones on first use.
      const eager: string[] = [];
      for (const [host, s] of this.entries) {
        if (s.entry.source === 'static') continue;
        if (statics.has(host)) {
          this.log.warn({ host }, 'routes/ entry replaces an entry stored through the admin API');
          shadowed.push(host);
          continue;
        }
        entries.push(s.entry);
        if (this.pushed.has(host)) eager.push(host);
      }
      for (const e of statics.values()) {
        entries.push(e);
        eager.push(e.host);
      }
      const fallback = await certs.fallback();
      const bundles = await certs.all(eager);
      await this.sink.apply({ kind: 'replace', entries, certs: bundles.map(toPem), fallback: toPem(fallback) }, ++this.version);
      this.pushedFallback = fallback.certPem;
      this.certs = certs;
      this.pushed.clear();
      for (const b of bundles) for (const n of b.names) this.pushed.set(n, b.certPem);
      for (const [host, s] of this.entries) if (s.entry.source === 'static' && !statics.has(host)) this.entries.delete(host);
      for (const e of statics.values()) {
        this.entries.set(e.host, { entry: e, version: (this.entries.get(e.host)?.version ?? 0) + 1, expiresAt: null });
      }
      // The API entry is gone from the table; keep the journal in step.
      for (const h of shadowed) this.journaled(this.durable?.delete(h), h);
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
    // Only what was handed over; a restarting worker loads the rest on first use too.
    const bundles = await this.certs.all([...this.pushed.keys()].filter((h) => this.entries.has(h)));
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

  /** Whether the certificate covering `host` is in hand; sources that mint before the answer are always ready. */
  certState(host: string): 'ready' | 'pending' {
    return this.certs.certState?.(host) ?? 'ready';
  }

  /** GET /v1/certs: the source's own report (ACME), else what the data planes are handed. */
  async certReport(): Promise<CertReport[]> {
    if (this.certs.report !== undefined) return this.certs.report();
    // Files mode: the fallback and every pair. Self-signed: the fallback only
    // (a leaf per host would make this list as long as the table).
    const fallback = await this.certs.fallback();
    const held = this.certs.loader === undefined ? await this.certs.all([]) : [];
    const bundles = [fallback, ...held.filter((b) => b.certPem !== fallback.certPem)];
    return bundles.map((b, i) => ({
      id: i === 0 ? 'fallback' : b.names[0] ?? `pair-${i}`,
      names: b.names,
      state: 'ready' as const,
      issuer: b.issuer,
      not_before: b.notBefore.toISOString(),
      not_after: b.notAfter.toISOString(),
      renew_at: null,
      last_error: null,
      next_attempt_at: null,
      orgs: [],
    }));
  }

  /**
   * How a background source (ACME) hands certificates over: each takes a turn
   * in the queue like any change, so versions stay ordered and a worker that
   * starts meanwhile gets it in its snapshot.
   */
  private publisher(): CertPublisher {
    return {
      hosts: () => this.entries.keys(),
      push: (bundle) =>
        this.serialize(async () => {
          await this.sink.apply({ kind: 'cert', cert: toPem(bundle) }, ++this.version);
        }),
      drop: (names) =>
        this.serialize(async () => {
          await this.sink.apply({ kind: 'uncert', names }, ++this.version);
        }),
      fallbackChanged: () =>
        this.serialize(async () => {
          const fallback = await this.certs.fallback();
          if (fallback.certPem === this.pushedFallback) return;
          await this.sink.apply(await this.wholeState(), ++this.version);
          this.pushedFallback = fallback.certPem;
        }),
    };
  }

  get(host: string): StoredEntry | undefined {
    return this.entries.get(host);
  }

  async put(entry: HostEntry): Promise<PutResult> {
    this.refuseStatic(entry.host);
    // A replace keeps the host name, so its certificate (handed over, or loaded
    // on first use): only a new host needs one, obtained before taking a turn
    // because minting and writing a leaf costs milliseconds.
    const known = this.entries.has(entry.host);
    let cert = known ? undefined : await this.certs.forHost(entry.host);
    const { result, durable } = await this.serialize(async () => {
      const prev = this.entries.get(entry.host);
      this.refuseStatic(entry.host);
      // Deleted while this waited: a create after all (rare enough to mint in turn).
      if (prev === undefined && known) cert = await this.certs.forHost(entry.host);
      this.durable?.check();
      // The certificate first, so no handshake for this name ever waits.
      const acked = this.sink.apply({ kind: 'put', entry, cert: this.toHand(entry.host, cert) }, ++this.version);
      if (cert) this.pushed.set(entry.host, cert.certPem);
      const stored = storedEntry(entry, prev, Date.now());
      this.entries.set(entry.host, stored);
      const durable = this.journaled(this.durable?.put(stored));
      await confirmed(acked, durable);
      return { result: { created: prev === undefined, stored }, durable };
    });
    await durable;
    return result;
  }

  async heartbeat(host: string): Promise<StoredEntry | undefined> {
    const { stored, durable } = await this.serialize(async () => {
      const prev = this.entries.get(host);
      if (prev === undefined) return { stored: undefined, durable: undefined };
      this.refuseStatic(host);
      const ttl = prev.entry.lease_ttl_s;
      if (ttl === undefined) return { stored: prev, durable: undefined }; // no lease: nothing changes
      this.durable?.check();
      const next: StoredEntry = { ...prev, expiresAt: Date.now() + ttl * 1000 };
      this.entries.set(host, next);
      return { stored: next, durable: this.journaled(this.durable?.heartbeat(host, next.expiresAt!)) };
    });
    await durable;
    return stored;
  }

  async batch(puts: readonly HostEntry[], deletes: readonly string[]): Promise<BatchResult> {
    for (const e of puts) this.refuseStatic(e.host, true);
    // As for put: only new hosts need a certificate.
    const obtain = (e: HostEntry): Promise<CertBundle | undefined> =>
      this.entries.has(e.host) ? Promise.resolve(undefined) : this.certs.forHost(e.host);
    const certs = await Promise.all(puts.map(obtain));
    const { result, durable } = await this.serialize(async () => {
      // Check everything before changing anything: all or nothing.
      for (const e of puts) this.refuseStatic(e.host, true);
      for (let i = 0; i < puts.length; i++) {
        if (certs[i] === undefined && !this.entries.has(puts[i]!.host)) certs[i] = await this.certs.forHost(puts[i]!.host);
      }
      for (const h of deletes) {
        const prev = this.entries.get(h);
        if (prev === undefined) throw new EdgewayError('NOT_FOUND', `${h}: no such host`);
        this.refuseStatic(h, true);
      }
      this.durable?.check();
      const acked = this.sink.apply(
        { kind: 'batch', puts: puts.map((entry, i) => ({ entry, cert: this.toHand(entry.host, certs[i]) })), deletes },
        ++this.version,
      );
      const now = Date.now();
      const put: PutResult[] = puts.map((entry, i) => {
        const prev = this.entries.get(entry.host);
        const stored = storedEntry(entry, prev, now);
        this.entries.set(entry.host, stored);
        const cert = certs[i];
        if (cert) this.pushed.set(entry.host, cert.certPem);
        return { created: prev === undefined, stored };
      });
      for (const h of deletes) this.removed(h);
      const durable = this.journaled(this.durable?.batch(put.map((p) => p.stored), deletes));
      await confirmed(acked, durable);
      return { result: { put, deleted: [...deletes] }, durable };
    });
    await durable;
    return result;
  }

  async delete(host: string): Promise<boolean> {
    const { found, durable } = await this.serialize(async () => {
      const prev = this.entries.get(host);
      if (prev === undefined) return { found: false, durable: undefined };
      this.refuseStatic(host);
      this.durable?.check();
      const acked = this.sink.apply({ kind: 'delete', host }, ++this.version);
      this.removed(host);
      const durable = this.journaled(this.durable?.delete(host));
      await confirmed(acked, durable);
      return { found: true, durable };
    });
    await durable;
    return found;
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
        const acked = this.sink.apply({ kind: 'delete', host }, ++this.version);
        this.removed(host);
        // Nobody waits on the journal here; a restart drops the entry by its deadline anyway.
        this.journaled(this.durable?.delete(host), host);
        await acked;
        this.onLeaseExpired?.(host);
        this.log.info({ host }, 'lease expired; entry removed');
      })
        .catch((err: unknown) => this.log.error({ host, err }, 'lease expiry failed'))
        .finally(() => this.expiring.delete(host));
    }
  }

  /** An entry left the table: forget it and (in the background) its certificate. */
  private removed(host: string): void {
    this.entries.delete(host);
    this.pushed.delete(host);
    this.certs.forget?.(host).catch((err: unknown) => this.log.warn({ host, err }, 'could not remove the certificate of a deleted host'));
  }

  private refuseStatic(host: string, named = false): void {
    if (this.entries.get(host)?.entry.source === 'static') {
      throw new EdgewayError('STATIC_ENTRY', named ? `${host}: ${ERRORS.STATIC_ENTRY.message}` : undefined);
    }
  }

  /** The certificate to send with a put, unless the data planes hold it already (a replace). */
  private toHand(host: string, cert: CertBundle | undefined): CertPem | undefined {
    return cert === undefined || this.pushed.get(host) === cert.certPem ? undefined : toPem(cert);
  }

  /**
   * A journal append's promise; starts a compaction when the journals grew
   * past the threshold. With `quietHost`, nobody awaits it: failures are logged.
   */
  private journaled(done: Promise<void> | undefined, quietHost?: string): Promise<void> | undefined {
    if (done === undefined) return undefined;
    if (this.durable!.wantsCompaction) {
      this.compact().catch((err: unknown) => this.log.error({ err }, 'state compaction failed; retrying later'));
    }
    if (quietHost !== undefined) {
      done.catch((err: unknown) => this.log.error({ host: quietHost, err }, 'journal write failed'));
    }
    return done;
  }

  /** Runs `fn` after every earlier change has finished, whatever their outcome. */
  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

/** An entry as stored: one more version than the one it replaces, and its lease deadline from `now`. */
function storedEntry(entry: HostEntry, prev: StoredEntry | undefined, now: number): StoredEntry {
  return {
    entry,
    version: (prev?.version ?? 0) + 1,
    expiresAt: entry.lease_ttl_s === undefined ? null : now + entry.lease_ttl_s * 1000,
  };
}

/**
 * Waits for the data planes to confirm a change that is already recorded
 * here (table, journal). Recording first means a late confirmation (a worker
 * over its ack deadline: 503 to the caller) never leaves the control plane
 * behind the workers that did apply it; the late worker catches up or, if it
 * dies, restarts from the snapshot that includes the change.
 */
async function confirmed(acked: Promise<void>, durable: Promise<void> | undefined): Promise<void> {
  try {
    await acked;
  } catch (err) {
    durable?.catch(() => undefined); // the caller gets `err`; the journal write's outcome is logged by the journal
    throw err;
  }
}
