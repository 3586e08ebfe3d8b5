// Prometheus metrics of one process: one Registry, every instrument created
// once. The per-request figures (requests by host class, location kind and
// status; latency) are plain numbers in preallocated arrays that are turned
// into samples only when scraped: prom-client's own counter/histogram hash
// their labels into a string (and the histogram builds a closure) on every
// call, which the request path should not pay for. Rare events (upstream
// errors, auth failures, lease expiries) use prom-client counters directly.
//
// Labels are bounded by construction: host class and location kind are small
// enums, status is an HTTP status, causes are catalogue codes, auth reasons
// are capped. No host name is ever a label (tenant certificates are summed up).

import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { ErrorCode } from '../errors.js';
import { classifyHost } from '../hosts/hostname.js';
import type { CompiledHost, CompiledLocation } from '../routes/types.js';
import type { CertListing } from '../tls/cert-store.js';
import type { MetricsSource } from './types.js';

export const HOST_CLASSES = ['apex', 'named', 'org', 'uc', 'org-wildcard', 'none'] as const;
export const LOCATION_KINDS = ['proxy', 'service', 'static', 'none'] as const;
const CLASS_INDEX: Readonly<Record<string, number>> = Object.fromEntries(HOST_CLASSES.map((c, i) => [c, i]));
const KIND_INDEX: Readonly<Record<string, number>> = Object.fromEntries(LOCATION_KINDS.map((k, i) => [k, i]));
const NONE_CLASS = HOST_CLASSES.length - 1;
const NONE_KIND = LOCATION_KINDS.length - 1;

/** 1 ms to 60 s: a cached static file up to a long-polling upstream at its timeout. */
export const LATENCY_BUCKETS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const NB = LATENCY_BUCKETS.length;
/** Per (class, kind): NB bucket counts, +Inf count, sum, count. */
const STRIDE = NB + 3;
const COMBOS = HOST_CLASSES.length * LOCATION_KINDS.length;
/** Distinct auth failure reasons kept as labels; later ones count as `other`. */
const MAX_REASONS = 32;
/** Operator (non-tenant) certificates reported one by one; the rest only in the summary. */
const MAX_CERT_SERIES = 64;

/** Index of a (host class, location kind) pair, for the per-request calls below. */
export function comboOf(host: CompiledHost | undefined, loc: CompiledLocation | undefined): number {
  const c = host === undefined ? NONE_CLASS : (CLASS_INDEX[host.info.kind] ?? NONE_CLASS);
  const k = loc === undefined ? NONE_KIND : (KIND_INDEX[loc.kind] ?? NONE_KIND);
  return c * LOCATION_KINDS.length + k;
}

function comboLabels(combo: number): { host_class: string; location_kind: string } {
  return {
    host_class: HOST_CLASSES[Math.floor(combo / LOCATION_KINDS.length)]!,
    location_kind: LOCATION_KINDS[combo % LOCATION_KINDS.length]!,
  };
}

export interface MetricsOptions {
  /** Normalized domain, to tell tenant certificates from the operator's. */
  readonly domain: string;
  /** Route table size; only the process that owns the table reports it (single process, primary). */
  readonly tableSize?: () => number;
  /** Certificates served by this process (CertStore.list()); data-plane processes only. */
  readonly certificates?: () => Iterable<CertListing>;
  /** Node's process metrics (CPU, memory, event loop lag, GC). Default true. */
  readonly processMetrics?: boolean;
  /** ACME certificates per state (issue 5); the control plane only, undefined in other TLS modes. */
  readonly certStates?: () => Readonly<Record<string, number>> | undefined;
}

/** One process's samples as prom-client's `getMetricsAsJSON()` gives them (what workers send the primary). */
export type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

interface Sample {
  readonly value: number;
  readonly labels: Readonly<Record<string, string | number>>;
  readonly metricName?: string;
}

type Aggregator = 'sum' | 'min' | 'max';

/**
 * A metric in the shape prom-client's Registry reads (`name`, `get()`: the
 * same duck type AggregatorRegistry.aggregate builds), its samples computed
 * when scraped. `aggregator` says how the cluster primary merges workers' values.
 */
function collected(name: string, help: string, type: 'counter' | 'gauge' | 'histogram', aggregator: Aggregator, samples: () => Sample[]) {
  return {
    name,
    help,
    type,
    aggregator,
    get: () => ({ name, help, type, aggregator, values: samples() }),
    reset: () => undefined,
  };
}

export class Metrics implements MetricsSource {
  readonly registry = new Registry();
  /** Open client connections (those that sent at least one request), kept by the observer. */
  openConnections = 0;
  /** Open or opening proxied websockets, kept by the observer. */
  openWebsockets = 0;
  /** key combo * 1000 + status → count. */
  private readonly requests = new Map<number, number>();
  private readonly latency = new Float64Array(COMBOS * STRIDE);
  private readonly upstreamErrors: Counter<'cause'>;
  private readonly causeLabels = new Map<string, { cause: string }>();
  private readonly authFailures: Counter<'reason'>;
  private readonly reasonLabels = new Map<string, { reason: string }>();
  private readonly leaseExpiries: Counter;

  constructor(opts: MetricsOptions) {
    const registers = [this.registry];
    const self = this;
    this.register(
      collected(
        'edgeway_requests_total',
        'Requests and websocket upgrades, by host class, location kind and status (499: the client left first)',
        'counter',
        'sum',
        () => this.requestSamples(),
      ),
    );
    this.register(
      collected(
        'edgeway_request_duration_seconds',
        'Time from routing to the end of the response, by host class and location kind',
        'histogram',
        'sum',
        () => this.latencySamples('edgeway_request_duration_seconds'),
      ),
    );
    this.upstreamErrors = new Counter({
      name: 'edgeway_upstream_errors_total',
      help: 'Requests and upgrades answered with an upstream error, by cause (catalogue code)',
      labelNames: ['cause'],
      registers,
    });
    this.authFailures = new Counter({
      name: 'edgeway_auth_failures_total',
      help: 'Authentication and authorization refusals at the edge, by reason',
      labelNames: ['reason'],
      registers,
    });
    this.leaseExpiries = new Counter({ name: 'edgeway_lease_expiries_total', help: 'Host entries removed because their lease ran out', registers });
    new Gauge({
      name: 'edgeway_open_connections',
      help: 'Open client connections that sent at least one request',
      registers,
      collect(this: Gauge) {
        this.set(self.openConnections);
      },
    });
    new Gauge({
      name: 'edgeway_open_websockets',
      help: 'Open proxied websockets (including upgrades waiting for the upstream)',
      registers,
      collect(this: Gauge) {
        this.set(self.openWebsockets);
      },
    });
    const tableSize = opts.tableSize;
    if (tableSize !== undefined) {
      new Gauge({
        name: 'edgeway_route_table_hosts',
        help: 'Host entries in the route table',
        registers,
        collect(this: Gauge) {
          this.set(tableSize());
        },
      });
    }
    if (opts.certificates !== undefined) this.certificateMetrics(opts.certificates, opts.domain);
    const certStates = opts.certStates;
    if (certStates !== undefined) {
      new Gauge({
        name: 'edgeway_acme_certificates',
        help: 'ACME certificates by state (pending: never obtained yet; renewing: due, old one still served)',
        labelNames: ['state'],
        registers,
        collect(this: Gauge<'state'>) {
          const counts = certStates();
          if (counts === undefined) return;
          for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
        },
      });
    }
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  /** The samples as JSON (for the cluster primary, which merges every worker's). */
  json(): Promise<MetricsJson> {
    return this.registry.getMetricsAsJSON();
  }

  /** One finished request: counted by status, its latency observed. */
  request(combo: number, status: number, seconds: number): void {
    this.count(combo, status);
    const base = combo * STRIDE;
    let i = 0;
    while (i < NB && seconds > LATENCY_BUCKETS[i]!) i++;
    const l = this.latency;
    l[base + i]++;
    l[base + NB + 1] += seconds;
    l[base + NB + 2]++;
  }

  /** Counted by status without a latency (a websocket's lifetime is not a request latency). */
  count(combo: number, status: number): void {
    const key = combo * 1000 + status;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
  }

  /** Counts `code` when it is an upstream failure. */
  upstreamError(code: ErrorCode): void {
    if (!code.startsWith('UPSTREAM_')) return;
    let labels = this.causeLabels.get(code);
    if (labels === undefined) this.causeLabels.set(code, (labels = { cause: code.toLowerCase() }));
    this.upstreamErrors.inc(labels);
  }

  authFailure(reason: string): void {
    let labels = this.reasonLabels.get(reason);
    if (labels === undefined) {
      labels = this.reasonLabels.size < MAX_REASONS ? { reason } : { reason: 'other' };
      if (this.reasonLabels.size < MAX_REASONS) this.reasonLabels.set(reason, labels);
    }
    this.authFailures.inc(labels);
  }

  /** Called by the control plane for each entry whose lease ran out. */
  leaseExpired(): void {
    this.leaseExpiries.inc();
  }

  private register(m: ReturnType<typeof collected>): void {
    this.registry.registerMetric(m as never);
  }

  private requestSamples(): Sample[] {
    const values: Sample[] = [];
    for (const [key, value] of this.requests) {
      values.push({ value, labels: { ...comboLabels(Math.floor(key / 1000)), status: String(key % 1000) } });
    }
    return values;
  }

  private latencySamples(name: string): Sample[] {
    const l = this.latency;
    const values: Sample[] = [];
    for (let combo = 0; combo < COMBOS; combo++) {
      const base = combo * STRIDE;
      const count = l[base + NB + 2]!;
      if (count === 0) continue;
      const labels = comboLabels(combo);
      let acc = 0;
      for (let i = 0; i < NB; i++) {
        acc += l[base + i]!;
        values.push({ value: acc, labels: { ...labels, le: LATENCY_BUCKETS[i]! }, metricName: `${name}_bucket` });
      }
      values.push({ value: count, labels: { ...labels, le: '+Inf' }, metricName: `${name}_bucket` });
      values.push({ value: l[base + NB + 1]!, labels, metricName: `${name}_sum` });
      values.push({ value: count, labels, metricName: `${name}_count` });
    }
    return values;
  }

  /**
   * Certificates: the operator's (fallback, files-mode pairs, routes/ hosts)
   * one series each, named by their DNS names; tenant certificates (names
   * under an org) only as a count and the soonest expiry, since one series per
   * org or container would grow with the platform. No tenant certificate, no
   * soonest-expiry sample (a 0 would read as "expired"). With workers each
   * reports the same set: merged with min/max, never summed.
   */
  private certificateMetrics(list: () => Iterable<CertListing>, domain: string): void {
    let at = -1;
    let operator: Sample[] = [];
    let tenant: Sample[] = [];
    let count: Sample[] = [];
    // The three are read in one scrape: list() is walked once for them.
    const fill = (): void => {
      const now = Date.now();
      if (now - at < 1000) return;
      at = now;
      operator = [];
      let tenants = 0;
      let soonest = Infinity;
      for (const c of list()) {
        const left = (c.notAfter.getTime() - now) / 1000;
        if (c.names.some((n) => classifyHost(n, domain).orgId !== undefined)) {
          tenants++;
          if (left < soonest) soonest = left;
        } else if (operator.length < MAX_CERT_SERIES) {
          operator.push({ value: left, labels: { certificate: c.names.join(',') } });
        }
      }
      tenant = tenants > 0 ? [{ value: soonest, labels: {} }] : [];
      count = [{ value: tenants, labels: {} }];
    };
    this.register(
      collected('edgeway_certificate_expiry_seconds', 'Seconds until notAfter, per operator certificate', 'gauge', 'min', () => {
        fill();
        return operator;
      }),
    );
    this.register(
      collected(
        'edgeway_tenant_certificate_expiry_min_seconds',
        'Seconds until the soonest notAfter among certificates for org and container hosts',
        'gauge',
        'min',
        () => {
          fill();
          return tenant;
        },
      ),
    );
    this.register(
      collected('edgeway_tenant_certificates', 'Certificates for org and container hosts', 'gauge', 'max', () => {
        fill();
        return count;
      }),
    );
  }
}
