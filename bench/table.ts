// Route-table micro-benchmark: match(host, path) at 10 and at 100,000 hosts.
// The contract says lookup cost must not grow with the number of hosts; the
// ratio printed at the end is that claim, measured. No sockets, no I/O in the
// timed part. Run: npm run bench:table (builds, then node dist/bench/table.js).

import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import v8 from 'node:v8';
import vm from 'node:vm';
import { RouteTable } from '../src/routes/table.js';
import type { HostEntry, LocationSpec } from '../src/routes/types.js';
import { validateEntry } from '../src/routes/validate-entry.js';

const DOMAIN = 'example.test';
const LOOKUPS = 5_000_000;
const WARMUP = 1_000_000;
const QUERIES = 1 << 16; // precomputed (host, path) pairs, cycled through
const UC_PER_ORG = 8; // each org: org host + wildcard + 8 containers = 10 hosts

// Exposed at run time so the script needs no node flags; used only between phases.
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** Deterministic PRNG (mulberry32), so every run measures the same workload. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

function uuid(rand: () => number): string {
  let hex = '';
  for (let i = 0; i < 32; i++) hex += Math.floor(rand() * 16).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20)}`;
}

const ORG_LOCATIONS: LocationSpec[] = [
  { path: '/', upstream: 'http://10.1.0.1:8080' },
  { path: '/collab/yjs', service: 'collab' },
  { path: '/oauth', service: 'oauth' },
];
const UC_LOCATIONS: LocationSpec[] = [
  { path: '/', upstream: 'http://172.16.1.2:8888' },
  { path: '/api', upstream: 'http://172.16.1.2:9000', strip_prefix: true },
];
const WILD_LOCATIONS: LocationSpec[] = [
  { path: '/', upstream: 'http://10.1.0.1:8080' },
  { path: '/oauth', service: 'oauth' },
];

interface Workload {
  entries: HostEntry[];
  orgs: string[];
  ucHosts: string[];
}

function workload(hosts: number, rand: () => number): Workload {
  const entries: HostEntry[] = [];
  const orgs: string[] = [];
  const ucHosts: string[] = [];
  const add = (host: string, locations: LocationSpec[]) => entries.push(validateEntry({ host, locations }, { source: 'api' }));
  while (entries.length < hosts) {
    const org = `org-${uuid(rand)}.${DOMAIN}`;
    orgs.push(org);
    add(org, ORG_LOCATIONS);
    add(`*.${org}`, WILD_LOCATIONS);
    for (let i = 0; i < UC_PER_ORG && entries.length < hosts; i++) {
      const uc = `uc-${uuid(rand)}.${org}`;
      ucHosts.push(uc);
      add(uc, UC_LOCATIONS);
    }
  }
  return { entries, orgs, ucHosts };
}

const PATHS = ['/', '/index.html', '/api/v1/items?page=2', '/collab/yjs/room-1', '/oauth/token', '/static/app.3f9c.js'];

/**
 * 60% container hits, 15% org hits, 15% wildcard fallbacks, 10% misses (unknown
 * org), over `hot` hosts of the table (all of them unless given).
 */
function queries(w: Workload, rand: () => number, hot = Infinity): { hosts: string[]; paths: string[] } {
  const hosts: string[] = [];
  const paths: string[] = [];
  const ucHosts = w.ucHosts.slice(0, Math.ceil(hot * 0.8));
  const orgs = w.orgs.slice(0, Math.ceil(hot * 0.1));
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rand() * list.length)]!;
  for (let i = 0; i < QUERIES; i++) {
    const r = rand();
    let host: string;
    if (r < 0.6) host = pick(ucHosts);
    else if (r < 0.75) host = pick(orgs);
    else if (r < 0.9) host = `app-${i % 97}.${pick(orgs)}`;
    else host = `uc-${uuid(rand)}.org-${uuid(rand)}.${DOMAIN}`;
    // Flat copies, as a parsed Host header would be: no shared cons-strings.
    hosts.push(Buffer.from(host).toString());
    paths.push(pick(PATHS));
  }
  return { hosts, paths };
}

function time(n: number, lookup: (i: number) => boolean): { ns: number; hits: number } {
  let hits = 0;
  const mask = QUERIES - 1;
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) if (lookup(i & mask)) hits++;
  return { ns: Number(process.hrtime.bigint() - start), hits };
}

interface Result {
  label: string;
  hosts: number;
  /** How many distinct hosts the queries draw from. */
  queried_hosts: number;
  ns_per_lookup: number;
  lookups_per_s: number;
  hit_rate: number;
  build_ms: number;
  heap_used_mb: number;
  /** A bare Map<string, …>.get over the same hosts and queries: the floor set by the hash map and the caches. */
  map_get_ns: number;
}

function measure(size: number, hot?: number): Result {
  const rand = rng(size);
  const w = workload(size, rand);
  const q = queries(w, rand, hot);
  gc();
  const heapBefore = process.memoryUsage().heapUsed;
  const table = new RouteTable(DOMAIN);
  const t0 = process.hrtime.bigint();
  table.replaceAll(w.entries);
  const buildMs = Number(process.hrtime.bigint() - t0) / 1e6;
  gc();
  const heapMb = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;

  const { hosts, paths } = q;
  const viaTable = (i: number) => table.match(hosts[i]!, paths[i]!) !== undefined;
  time(WARMUP, viaTable);
  const { ns, hits } = time(LOOKUPS, viaTable);

  const bare = new Map<string, HostEntry>(w.entries.map((e) => [e.host, e]));
  const viaMap = (i: number) => bare.get(hosts[i]!) !== undefined;
  time(WARMUP, viaMap);
  const baseline = time(LOOKUPS, viaMap);

  return {
    label: hot === undefined ? `${size} hosts, random` : `${size} hosts, ${hot} active`,
    hosts: table.size,
    queried_hosts: Math.min(hot ?? size, size),
    ns_per_lookup: ns / LOOKUPS,
    lookups_per_s: Math.round((LOOKUPS * 1e9) / ns),
    hit_rate: hits / LOOKUPS,
    build_ms: buildMs,
    heap_used_mb: heapMb,
    map_get_ns: baseline.ns / LOOKUPS,
  };
}

const small = measure(10);
const large = measure(100_000);
// Real traffic concentrates on the hosts in use; this row shows the lookup
// itself does not grow with the table once its working set is cache-resident.
const largeHot = measure(100_000, 1_000);
const ratio = large.ns_per_lookup / small.ns_per_lookup;

const fmt = (n: number, digits = 1) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
console.log(`route table match(): ${fmt(LOOKUPS, 0)} lookups per row after ${fmt(WARMUP, 0)} warm-up (node ${process.version}, ${os.cpus()[0]?.model ?? 'unknown cpu'})`);
console.log('queries: 60% container hosts, 15% org hosts, 15% wildcard fallbacks, 10% misses\n');
console.log('   hosts |  queried | ns/lookup |    lookups/s | Map.get ns | build ms | table heap MB');
console.log('---------|----------|-----------|--------------|------------|----------|--------------');
for (const r of [small, large, largeHot]) {
  console.log(
    [
      fmt(r.hosts, 0).padStart(8),
      fmt(r.queried_hosts, 0).padStart(8),
      fmt(r.ns_per_lookup).padStart(9),
      fmt(r.lookups_per_s, 0).padStart(12),
      fmt(r.map_get_ns).padStart(10),
      fmt(r.build_ms).padStart(8),
      fmt(r.heap_used_mb).padStart(13),
    ].join(' | '),
  );
}
console.log(`\nratio ns/lookup 100k / 10 (random): ${fmt(ratio, 2)}; bare Map.get: ${fmt(large.map_get_ns / small.map_get_ns, 2)}`);
console.log(`ratio ns/lookup 100k (1,000 active) / 10: ${fmt(largeHot.ns_per_lookup / small.ns_per_lookup, 2)}`);

const date = new Date().toISOString().slice(0, 10);
const dir = new URL('../../bench/results/', import.meta.url); // from dist/bench/ to the repo's bench/results/
mkdirSync(dir, { recursive: true });
const file = new URL(`table-${date}.json`, dir);
const report = {
  benchmark: 'route-table',
  date: new Date().toISOString(),
  node: process.version,
  cpu: os.cpus()[0]?.model ?? 'unknown',
  cores: os.availableParallelism(),
  lookups: LOOKUPS,
  warmup: WARMUP,
  workload: 'per org: org host (3 locations), *.org wildcard (2), up to 8 uc hosts (2); queries 60% uc, 15% org, 15% wildcard fallback, 10% miss',
  results: [small, large, largeHot],
  ratio_100k_over_10: ratio,
  ratio_map_get_100k_over_10: large.map_get_ns / small.map_get_ns,
  ratio_100k_1000_active_over_10: largeHot.ns_per_lookup / small.ns_per_lookup,
};
writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
console.log(`wrote ${file.pathname}`);
