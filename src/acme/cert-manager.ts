// What ACME mode keeps and when it orders (issue 5 "What it obtains", "Swap
// without a gap", "Rate limits", "Bad input and faults"). A reconcile loop on
// one coarse timer, not a timer per certificate: each tick compares what is
// wanted ({domain} + *.{domain}, and *.org-{id}.{domain} for every org with a
// host) with what is held, and starts the orders that are missing, due, and
// past their backoff. Orders run in the background, never on a request's
// path; a certificate in hand keeps serving until its replacement is stored
// and handed to the data planes (then the next handshake uses the new one).

import type { Config } from '../config/types.js';
import { EdgewayError, isEdgewayError, type ErrorCode } from '../errors.js';
import { classifyHost } from '../hosts/hostname.js';
import type { Logger } from '../log.js';
import { bundleFromPem, type CertBundle } from '../tls/cert-bundle.js';
import type { AcmeOrderer } from './acme-order.js';
import type { AcmeStore } from './acme-store.js';
import type { OrderLedger } from './order-ledger.js';
import { dueAt, retryDelayMs } from './schedule.js';

/** How the control plane lets the manager see hosts and hand certificates over. */
export interface CertPublisher {
  hosts(): Iterable<string>;
  /** Hands a certificate to every data plane (resolves once they hold it). */
  push(bundle: CertBundle): Promise<void>;
  /** Removes a released certificate's names from every data plane. */
  drop(names: readonly string[]): Promise<void>;
  /** The {domain} certificate changed: the fallback travels with the whole state. */
  fallbackChanged(): Promise<void>;
}

export type CertState = 'pending' | 'ready' | 'renewing';

export interface CertReport {
  readonly id: string;
  readonly names: readonly string[];
  readonly state: CertState;
  readonly issuer: string | null;
  readonly not_before: string | null;
  readonly not_after: string | null;
  readonly renew_at: string | null;
  readonly last_error: { readonly code: string; readonly message: string; readonly at: string } | null;
  readonly next_attempt_at: string | null;
  readonly orgs: readonly string[];
}

/** The reconcile tick. Orders take seconds; one second of latency on top is noise. */
const TICK_MS = 1000;
/** Hosts are scanned on every change (nudge) and at least this often (leases run out without one). */
const SCAN_MS = 10_000;
/**
 * Orders in flight at once: a platform that registers a thousand orgs in a
 * minute gets them ordered a few at a time rather than a thousand DNS hook
 * calls and ACME sessions at once (the CA would rate-limit them anyway).
 */
const MAX_IN_FLIGHT = 4;
export const DOMAIN_ID = 'domain';

interface Managed {
  readonly id: string;
  /** Orgs whose wildcard this certificate carries; empty for the domain certificate. */
  readonly orgs: Set<string>;
  bundle: CertBundle | undefined;
  dueAt: number;
  attempts: number;
  nextAttemptAt: number;
  lastError: { code: ErrorCode; message: string; at: number } | undefined;
  inFlight: boolean;
  released: boolean;
}

export class AcmeManager {
  private readonly certs = new Map<string, Managed>();
  private readonly byOrg = new Map<string, Managed>();
  /** Orgs with a host but no certificate yet, with when they were first seen (batching). */
  private readonly waiting = new Map<string, number>();
  /** Orgs with a certificate but no host, with since when. */
  private readonly goneSince = new Map<string, number>();
  private publisher: CertPublisher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private dirty = true;
  private lastScan = 0;
  private soon = false;
  private ticking = false;
  /** Milliseconds each successful order took, newest last (GET /v1/certs reports the latest). */
  readonly issuanceMs: number[] = [];

  constructor(
    private readonly cfg: Pick<Config, 'domain'> & { readonly acme: Config['tls']['acme'] },
    private readonly store: AcmeStore,
    private readonly ledger: OrderLedger,
    private readonly orderer: Pick<AcmeOrderer, 'order'>,
    private readonly log: Logger,
  ) {}

  /** Takes over the certificates stored under data_dir: a restart serves them without ordering. */
  async load(): Promise<void> {
    const stored = await this.store.load((id, err) => this.log.warn({ id, err: (err as Error).message }, 'stored ACME certificate unusable; it will be ordered again'));
    const d = this.cfg.domain;
    for (const { id, bundle } of stored) {
      const orgs = this.orgsOf(bundle.names);
      // A certificate for names this configuration does not want (the domain
      // changed since it was stored) is not served: ordered again instead.
      const fits = id === DOMAIN_ID ? bundle.names.includes(d) && bundle.names.includes(`*.${d}`) : orgs.length > 0;
      if (!fits) {
        this.log.warn({ id, names: bundle.names }, 'stored ACME certificate does not cover the configured domain; not served');
        continue;
      }
      const m = this.managed(id, orgs);
      m.bundle = bundle;
      m.dueAt = dueAt(bundle, this.cfg.acme.renew_at);
    }
    this.managed(DOMAIN_ID, []);
  }

  start(publisher: CertPublisher): void {
    this.publisher = publisher;
    this.timer = setInterval(() => this.tick(), TICK_MS);
    this.timer.unref();
    this.nudge();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.publisher = undefined;
  }

  /** Hosts changed: look again now (a new org's order starts before its first browser arrives). */
  nudge(): void {
    this.dirty = true;
    if (this.soon || this.timer === undefined) return;
    this.soon = true;
    setImmediate(() => {
      this.soon = false;
      this.tick();
    });
  }

  /** The {domain} + *.{domain} certificate, once obtained. */
  domainBundle(): CertBundle | undefined {
    return this.certs.get(DOMAIN_ID)?.bundle;
  }

  bundles(): CertBundle[] {
    const out: CertBundle[] = [];
    for (const m of this.certs.values()) if (m.bundle !== undefined && !m.released) out.push(m.bundle);
    return out;
  }

  /** Whether the certificate that covers `host` is in hand (PUT answers, DESIGN.md "Admin API"). */
  stateFor(host: string): 'ready' | 'pending' {
    const info = classifyHost(host, this.cfg.domain);
    const m = (info.kind === 'uc' || info.kind === 'org-wildcard') && info.orgId !== undefined ? this.byOrg.get(info.orgId) : this.certs.get(DOMAIN_ID);
    return m?.bundle !== undefined && m.bundle.notAfter.getTime() > Date.now() ? 'ready' : 'pending';
  }

  counts(): Record<CertState, number> {
    const c: Record<CertState, number> = { pending: 0, ready: 0, renewing: 0 };
    for (const m of this.certs.values()) if (!m.released) c[this.state(m, Date.now())]++;
    return c;
  }

  report(): CertReport[] {
    const now = Date.now();
    const iso = (t: number | undefined): string | null => (t === undefined ? null : new Date(t).toISOString());
    return [...this.certs.values()]
      .filter((m) => !m.released)
      .map((m) => ({
        id: m.id,
        names: m.bundle?.names ?? this.namesFor(m),
        state: this.state(m, now),
        issuer: m.bundle?.issuer ?? null,
        not_before: iso(m.bundle?.notBefore.getTime()),
        not_after: iso(m.bundle?.notAfter.getTime()),
        renew_at: m.bundle === undefined ? null : iso(m.dueAt),
        last_error: m.lastError === undefined ? null : { code: m.lastError.code.toLowerCase(), message: m.lastError.message, at: iso(m.lastError.at)! },
        next_attempt_at: m.nextAttemptAt > now ? iso(m.nextAttemptAt) : null,
        orgs: [...m.orgs],
      }));
  }

  private state(m: Managed, now: number): CertState {
    if (m.bundle === undefined) return 'pending';
    return now >= m.dueAt ? 'renewing' : 'ready';
  }

  private tick(): void {
    if (this.ticking || this.publisher === undefined) return;
    this.ticking = true;
    try {
      const now = Date.now();
      if (this.dirty || now - this.lastScan >= SCAN_MS) this.scan(now);
      this.batch(now);
      this.release(now);
      let inFlight = 0;
      for (const m of this.certs.values()) if (m.inFlight) inFlight++;
      for (const m of this.certs.values()) {
        if (inFlight >= MAX_IN_FLIGHT) break;
        if (m.inFlight || m.released || now < m.nextAttemptAt) continue;
        if (m.bundle === undefined || now >= m.dueAt) {
          this.order(m, now);
          if (m.inFlight) inFlight++;
        }
      }
    } catch (err) {
      // A bug here must not stop renewals for good: log it, the next tick tries again.
      this.log.error({ err }, 'ACME reconcile failed');
    } finally {
      this.ticking = false;
    }
  }

  /** Which orgs have hosts now. */
  private scan(now: number): void {
    this.dirty = false;
    this.lastScan = now;
    const inUse = new Set<string>();
    for (const host of this.publisher!.hosts()) {
      const id = classifyHost(host, this.cfg.domain).orgId;
      if (id !== undefined) inUse.add(id);
    }
    for (const org of inUse) {
      this.goneSince.delete(org);
      if (!this.byOrg.has(org) && !this.waiting.has(org)) this.waiting.set(org, now);
    }
    for (const org of this.byOrg.keys()) if (!inUse.has(org) && !this.goneSince.has(org)) this.goneSince.set(org, now);
    for (const org of this.waiting.keys()) if (!inUse.has(org)) this.waiting.delete(org);
  }

  /**
   * Waiting orgs become certificates: one each with max_names 1; otherwise
   * up to max_names per order, once the group is full or its first org has
   * waited batch_wait_ms (Let's Encrypt's 50 certificates a week then cover
   * up to 50 × max_names new orgs).
   */
  private batch(now: number): void {
    const max = this.cfg.acme.max_names;
    while (this.waiting.size > 0) {
      const first = this.waiting.values().next().value!;
      if (max > 1 && this.waiting.size < max && now - first < this.cfg.acme.batch_wait_ms) return;
      const orgs = [...this.waiting.keys()].slice(0, max);
      for (const o of orgs) this.waiting.delete(o);
      const m = this.managed(`org-${orgs[0]}`, orgs);
      this.log.info({ id: m.id, orgs: orgs.length }, 'org wildcard certificate wanted');
    }
  }

  /** Orgs gone for release_after_s leave their certificate; a certificate without orgs is removed. */
  private release(now: number): void {
    const after = this.cfg.acme.release_after_s * 1000;
    for (const [org, since] of this.goneSince) {
      if (now - since < after) continue;
      this.goneSince.delete(org);
      const m = this.byOrg.get(org);
      this.byOrg.delete(org);
      if (m === undefined) continue;
      m.orgs.delete(org);
      if (m.orgs.size === 0) {
        m.released = true;
        if (!m.inFlight) this.remove(m);
      }
    }
  }

  private remove(m: Managed): void {
    this.certs.delete(m.id);
    const names = m.bundle?.names ?? [];
    this.log.info({ id: m.id, names }, 'org wildcard certificate released');
    this.store.remove(m.id).catch((err: unknown) => this.log.warn({ id: m.id, err }, 'could not remove a released certificate'));
    if (names.length > 0) this.publisher?.drop(names).catch((err: unknown) => this.log.warn({ id: m.id, err }, 'could not drop a released certificate'));
  }

  private managed(id: string, orgs: readonly string[]): Managed {
    let m = this.certs.get(id);
    // A released one still finishing its order is left to finish alone.
    if (m === undefined || m.released) {
      m = { id, orgs: new Set(), bundle: undefined, dueAt: 0, attempts: 0, nextAttemptAt: 0, lastError: undefined, inFlight: false, released: false };
      this.certs.set(id, m);
    }
    for (const o of orgs) {
      m.orgs.add(o);
      this.byOrg.set(o, m);
    }
    return m;
  }

  private namesFor(m: Managed): string[] {
    const d = this.cfg.domain;
    return m.id === DOMAIN_ID ? [d, `*.${d}`] : [...m.orgs].sort().map((o) => `*.org-${o}.${d}`);
  }

  private orgsOf(names: readonly string[]): string[] {
    const out: string[] = [];
    for (const n of names) {
      const info = classifyHost(n, this.cfg.domain);
      if (info.kind === 'org-wildcard' && info.orgId !== undefined) out.push(info.orgId);
    }
    return out;
  }

  private order(m: Managed, now: number): void {
    const names = this.namesFor(m);
    try {
      this.ledger.check(now);
    } catch (e) {
      this.failed(m, names, e, now);
      return;
    }
    m.inFlight = true;
    const t0 = performance.now();
    const run = async (): Promise<void> => {
      // Counted before it is sent: a crash mid-order still used up budget at the CA.
      await this.ledger.record('order', names);
      const issued = await this.orderer.order(names);
      const bundle = bundleFromPem(issued.certPem, issued.keyPem);
      await this.store.save(m.id, issued.certPem, issued.keyPem);
      await this.ledger.record('certificate', names);
      const ms = Math.round(performance.now() - t0);
      this.issuanceMs.push(ms);
      const renewal = m.bundle !== undefined;
      m.bundle = bundle;
      m.dueAt = dueAt(bundle, this.cfg.acme.renew_at);
      m.attempts = 0;
      m.nextAttemptAt = 0;
      m.lastError = undefined;
      this.log.info({ id: m.id, names, ms, renewal, not_after: bundle.notAfter.toISOString(), renew_at: new Date(m.dueAt).toISOString() }, 'ACME certificate obtained');
      if (m.released || this.publisher === undefined) return;
      if (m.id === DOMAIN_ID) await this.publisher.fallbackChanged();
      else await this.publisher.push(bundle);
    };
    run()
      .catch((e: unknown) => this.failed(m, names, e, Date.now()))
      .finally(() => {
        m.inFlight = false;
        if (m.released && this.certs.get(m.id) === m) this.remove(m);
      });
  }

  private failed(m: Managed, names: readonly string[], e: unknown, now: number): void {
    const err = isEdgewayError(e) ? e : new EdgewayError('ACME_ORDER_FAILED', (e as Error).message ?? String(e), { cause: e });
    m.attempts++;
    const delay = retryDelayMs(m.attempts, this.cfg.acme.retry_min_s, this.cfg.acme.retry_max_s);
    m.nextAttemptAt = now + delay;
    m.lastError = { code: err.code, message: err.message, at: now };
    // The old certificate (if any) keeps serving: nothing is handed over on failure.
    this.log.warn(
      { id: m.id, names, code: err.code, cause: err.message, attempt: m.attempts, retry_in_s: Math.round(delay / 1000), serving: m.bundle !== undefined },
      'ACME certificate order failed; will retry',
    );
  }
}
