// Per-host activity for GET /v1/activity: what a pool manager needs to find
// idle orgs. Each data-plane process keeps one HostStats per host entry that
// saw traffic (keyed by the entry's host, so a wildcard entry collects every
// name it serves and memory is bounded by the route table); the report lists
// every host of the table, idle ones included, and sums hosts into orgs.
//
// "Open connections" of a host: client connections whose most recent request
// or upgrade was routed to that host, whether a request is in flight or the
// connection idles in keep-alive. Each connection counts for exactly one host,
// so org sums never count a connection twice. Open websockets are counted on
// their host as well (and their connection too).

import type { ActivityReport, ActivitySource, HostActivity, OrgActivity } from './types.js';

export class HostStats {
  /** Epoch ms of the last request or upgrade; 0 when none. */
  lastRequestAt = 0;
  openConnections = 0;
  openWebsockets = 0;
  requests = 0;
  bytesIn = 0;
  bytesOut = 0;

  constructor(readonly host: string) {}
}

/**
 * One host's figures in one process, compact for IPC:
 * [host, lastRequestAt, openConnections, openWebsockets, requests, bytesIn, bytesOut].
 */
export type ActivityRow = [string, number, number, number, number, number, number];

/** Drops entries of hosts that left the table at most this often (also done before each snapshot). */
const PRUNE_MS = 60_000;

export class Activity {
  private readonly byHost = new Map<string, HostStats>();
  private readonly timer: NodeJS.Timeout;

  /** `hostExists`: whether the route table still holds an entry with exactly this host. */
  constructor(private readonly hostExists: (host: string) => boolean) {
    this.timer = setInterval(prune, PRUNE_MS, this);
    this.timer.unref();
  }

  /** The stats of a host entry, created on its first request. */
  statsFor(host: string): HostStats {
    let s = this.byHost.get(host);
    if (s === undefined) this.byHost.set(host, (s = new HostStats(host)));
    return s;
  }

  /**
   * Forgets hosts that are no longer in the table. A connection still pointing
   * at a forgotten record moves to the live record with its next request.
   */
  prune(): void {
    for (const host of this.byHost.keys()) if (!this.hostExists(host)) this.byHost.delete(host);
  }

  get size(): number {
    return this.byHost.size;
  }

  rows(): ActivityRow[] {
    this.prune();
    const out: ActivityRow[] = [];
    for (const s of this.byHost.values()) {
      out.push([s.host, s.lastRequestAt, s.openConnections, s.openWebsockets, s.requests, s.bytesIn, s.bytesOut]);
    }
    return out;
  }

  close(): void {
    clearInterval(this.timer);
  }
}

function prune(a: Activity): void {
  a.prune();
}

function iso(ms: number): string | null {
  return ms === 0 ? null : new Date(ms).toISOString();
}

interface Acc {
  org_id: string;
  hosts: number;
  last: number;
  open_connections: number;
  open_websockets: number;
  requests: number;
  bytes_in: number;
  bytes_out: number;
}

/**
 * The report for every host in `hosts` (the route table's, so idle hosts are
 * listed with zeros), from the rows of one or more processes (summed; the
 * latest last-request time wins). Rows of hosts not in `hosts` are ignored.
 */
export function buildReport(
  hosts: Iterable<string>,
  orgOf: (host: string) => string | undefined,
  rowSets: Iterable<readonly ActivityRow[]>,
  workersMissing = 0,
): ActivityReport {
  const merged = new Map<string, ActivityRow>();
  for (const rows of rowSets) {
    for (const r of rows) {
      const m = merged.get(r[0]);
      if (m === undefined) {
        merged.set(r[0], [...r]);
        continue;
      }
      if (r[1] > m[1]) m[1] = r[1];
      for (let i = 2; i < 7; i++) (m[i] as number) += r[i] as number;
    }
  }
  const out: HostActivity[] = [];
  const orgs = new Map<string, Acc>();
  for (const host of hosts) {
    const r = merged.get(host);
    const orgId = orgOf(host) ?? null;
    const h: HostActivity = {
      host,
      org_id: orgId,
      last_request_at: iso(r?.[1] ?? 0),
      open_connections: r?.[2] ?? 0,
      open_websockets: r?.[3] ?? 0,
      requests: r?.[4] ?? 0,
      bytes_in: r?.[5] ?? 0,
      bytes_out: r?.[6] ?? 0,
    };
    out.push(h);
    if (orgId === null) continue;
    let o = orgs.get(orgId);
    if (o === undefined) {
      o = { org_id: orgId, hosts: 0, last: 0, open_connections: 0, open_websockets: 0, requests: 0, bytes_in: 0, bytes_out: 0 };
      orgs.set(orgId, o);
    }
    o.hosts++;
    if ((r?.[1] ?? 0) > o.last) o.last = r![1];
    o.open_connections += h.open_connections;
    o.open_websockets += h.open_websockets;
    o.requests += h.requests;
    o.bytes_in += h.bytes_in;
    o.bytes_out += h.bytes_out;
  }
  const orgList: OrgActivity[] = [];
  for (const o of orgs.values()) {
    const { last, ...rest } = o;
    orgList.push({ ...rest, last_request_at: iso(last) });
  }
  return { hosts: out, orgs: orgList, workers_missing: workersMissing };
}

/** The ActivitySource of a process that serves requests itself (single process). */
export class LocalActivitySource implements ActivitySource {
  constructor(
    private readonly activityOf: Activity,
    private readonly hosts: () => Iterable<string>,
    private readonly orgOf: (host: string) => string | undefined,
  ) {}

  activity(): Promise<ActivityReport> {
    return Promise.resolve(buildReport(this.hosts(), this.orgOf, [this.activityOf.rows()]));
  }
}
