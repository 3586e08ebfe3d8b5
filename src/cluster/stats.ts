// `workers: N`: GET /metrics and GET /v1/activity on the control plane show
// the whole process group. Each worker keeps its own counters (nothing on the
// request path touches IPC); when the admin API asks, the primary sends every
// live worker a `stats` request with a fresh id and merges what comes back
// within STATS_TIMEOUT_MS. A worker that does not answer in time is skipped
// and counted (edgeway_stats_workers_missing, `workers_missing` in the
// activity report), so a stuck worker cannot stall a scrape.
//
// prom-client's AggregatorRegistry.clusterMetrics() is not used: it talks to
// every cluster worker on its own channel, fails the whole scrape when one
// worker is late, and needs prom-client's listener in the worker before the
// first request (our ESM workers listen only once loaded; see 'hello'). Its
// static aggregate() does the merging: sums, or each metric's own aggregator.

import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, Gauge, type Registry } from 'prom-client';
import type { Config } from '../config/types.js';
import { classifyHost } from '../hosts/hostname.js';
import type { Logger } from '../log.js';
import { buildReport } from '../observe/activity.js';
import { Metrics } from '../observe/metrics.js';
import { createObservability, type Observability } from '../observe/observer.js';
import type { ActivityReport, ActivitySource, MetricsSource } from '../observe/types.js';
import type { DataState } from '../server/data-state.js';
import type { StatsWant, ToPrimary, ToWorker } from './messages.js';

/** How long the primary waits for workers' answers. */
export const STATS_TIMEOUT_MS = 1000;

type StatsReply = Extract<ToPrimary, { t: 'stats' }>;

interface Round {
  readonly want: StatsWant;
  readonly replies: StatsReply[];
  asked: number;
  readonly done: (r: { replies: StatsReply[]; missing: number }) => void;
  readonly timer: NodeJS.Timeout;
}

function connectedWorkers(): Worker[] {
  return Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w.isConnected());
}

/** The primary's side of the exchange. Concurrent asks for the same thing share one round. */
export class StatsCollector {
  private nextId = 1;
  private readonly rounds = new Map<number, Round>();
  private readonly inflight = new Map<StatsWant, Promise<{ replies: StatsReply[]; missing: number }>>();

  constructor(
    /** How many workers there should be (`workers: N`). */
    private readonly expected: number,
    private readonly timeoutMs = STATS_TIMEOUT_MS,
  ) {}

  ask(want: StatsWant): Promise<{ replies: StatsReply[]; missing: number }> {
    let p = this.inflight.get(want);
    if (p !== undefined) return p;
    p = new Promise((resolve) => {
      const id = this.nextId++;
      const done = (r: { replies: StatsReply[]; missing: number }): void => {
        clearTimeout(round.timer);
        this.rounds.delete(id);
        this.inflight.delete(want);
        resolve(r);
      };
      const round: Round = { want, replies: [], asked: 0, done, timer: setTimeout(() => this.finish(id), this.timeoutMs) };
      this.rounds.set(id, round);
      const msg: ToWorker = { t: 'stats', id, want };
      for (const w of connectedWorkers()) {
        try {
          w.send(msg);
          round.asked++;
        } catch {
          // The channel closed between the check and the send: that worker is missing.
        }
      }
      if (round.asked === 0) this.finish(id);
    });
    this.inflight.set(want, p);
    return p;
  }

  /** A worker's answer (from primary.ts's message listener). Late or unknown answers are dropped. */
  reply(m: StatsReply): void {
    const round = this.rounds.get(m.id);
    if (round === undefined) return;
    round.replies.push(m);
    if (round.replies.length >= round.asked) this.finish(m.id);
  }

  private finish(id: number): void {
    const round = this.rounds.get(id);
    if (round === undefined) return;
    round.done({ replies: round.replies, missing: Math.max(0, this.expected - round.replies.length) });
  }
}

export interface PrimaryObservability {
  /** For GET /metrics: the primary's own metrics merged with every worker's. */
  readonly metrics: MetricsSource & { leaseExpired(): void };
  /** For GET /v1/activity. */
  readonly activity: ActivitySource;
  /** Hand it every `stats` message from a worker. */
  readonly collector: StatsCollector;
  /** The primary's own registry (merged with the workers' on a scrape): the collab relay's figures live here. */
  readonly registry: Registry;
}

export interface PrimaryObservabilityOptions {
  readonly domain: string;
  readonly workers: number;
  /** The hosts of the route table (the control plane's entries). */
  readonly hosts: () => Iterable<string>;
  readonly tableSize: () => number;
  readonly processMetrics?: boolean;
  /** ACME certificates per state (issue 5). */
  readonly certStates?: () => Readonly<Record<string, number>> | undefined;
  readonly timeoutMs?: number;
}

export function createPrimaryObservability(o: PrimaryObservabilityOptions): PrimaryObservability {
  const collector = new StatsCollector(o.workers, o.timeoutMs);
  const local = new Metrics({
    domain: o.domain,
    tableSize: o.tableSize,
    ...(o.processMetrics === undefined ? {} : { processMetrics: o.processMetrics }),
    ...(o.certStates === undefined ? {} : { certStates: o.certStates }),
  });
  const missingGauge = new Gauge({
    name: 'edgeway_stats_workers_missing',
    help: 'Data-plane workers whose figures are missing from this scrape (no answer in time)',
    registers: [local.registry],
  });
  const metrics = {
    contentType: local.contentType,
    async metrics(): Promise<string> {
      const { replies, missing } = await collector.ask('metrics');
      missingGauge.set(missing);
      const all = [await local.json()];
      for (const r of replies) if (r.metrics !== undefined) all.push(r.metrics);
      return AggregatorRegistry.aggregate(all).metrics();
    },
    leaseExpired(): void {
      local.leaseExpired();
    },
  };
  const activity: ActivitySource = {
    async activity(): Promise<ActivityReport> {
      const { replies, missing } = await collector.ask('activity');
      const rows = replies.map((r) => r.activity ?? []);
      return buildReport(o.hosts(), (h) => classifyHost(h, o.domain).orgId, rows, missing);
    },
  };
  return { metrics, activity, collector, registry: local.registry };
}

/** A worker's observability: like the single process's, minus the table size (the primary reports it). */
export function createWorkerObservability(config: Config, log: Logger, state: DataState): Observability {
  return createObservability({ config, log, table: state.table, certificates: () => state.certs.list(), tableSize: false });
}

/** A worker's answer to a `stats` request; a worker not yet initialized answers with nothing (it has served nothing). */
export async function answerStats(obs: Observability | undefined, m: Extract<ToWorker, { t: 'stats' }>): Promise<StatsReply> {
  if (obs === undefined) return { t: 'stats', id: m.id };
  if (m.want === 'metrics') return { t: 'stats', id: m.id, metrics: await obs.metrics.json() };
  return { t: 'stats', id: m.id, activity: obs.activityRows() };
}
