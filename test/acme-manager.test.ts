// The AcmeManager's decisions without a CA (issue 5): a fake orderer that
// issues from a local CA, so batching by time, the cap on orders in flight,
// release, and stored certificates for another domain are checked quickly
// and exactly. Real ACME is covered by test/acme.test.ts against Pebble.

import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AcmeStore } from '../src/acme/acme-store.js';
import { AcmeManager, type CertPublisher } from '../src/acme/cert-manager.js';
import { OrderLedger } from '../src/acme/order-ledger.js';
import type { AcmeConfig } from '../src/config/types.js';
import { createLogger } from '../src/log.js';
import type { CertBundle } from '../src/tls/cert-bundle.js';
import { LocalCA } from '../src/tls/local-ca.js';

const D = 'example.test';
const org = (i: number): string => `7f3a0000-0000-4000-8000-${String(i).padStart(12, '0')}`;
const uc = (i: number): string => `uc-1b4e8f0a-0000-4000-8000-000000000001.org-${org(i)}.${D}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function acmeCfg(extra: Partial<AcmeConfig> = {}): AcmeConfig {
  return {
    directory_url: 'https://ca.invalid/dir', email: undefined, ca_file: undefined,
    dns01: { provider: 'webhook', url: 'http://127.0.0.1:9', command: undefined, propagation_wait_s: 0 },
    renew_at: 2 / 3, max_names: 1, release_after_s: 3600, batch_wait_ms: 0, retry_min_s: 1, retry_max_s: 2,
    budget: { certificates_per_week: 1000, orders_per_3h: 1000 },
    ...extra,
  };
}

interface Rig {
  readonly manager: AcmeManager;
  readonly hosts: Set<string>;
  readonly events: string[];
  readonly orders: string[][];
  inFlight: number;
  maxInFlight: number;
  gate: Promise<void> | undefined;
}

async function rig(t: { teardown(fn: () => unknown): void }, extra: Partial<AcmeConfig> = {}, dir?: string): Promise<Rig> {
  const dataDir = dir ?? (await mkdtemp(join(tmpdir(), 'edgeway-acme-manager-')));
  if (dir === undefined) t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const ca = await LocalCA.open(join(dataDir, 'fake-ca'), { leafDays: 90 });
  const store = await AcmeStore.open(dataDir);
  const cfg = acmeCfg(extra);
  const ledger = await OrderLedger.open(store.dir, cfg.budget);
  const r: Rig = { manager: undefined as unknown as AcmeManager, hosts: new Set(), events: [], orders: [], inFlight: 0, maxInFlight: 0, gate: undefined };
  const orderer = {
    async order(names: readonly string[]) {
      r.orders.push([...names]);
      r.inFlight++;
      r.maxInFlight = Math.max(r.maxInFlight, r.inFlight);
      try {
        if (r.gate !== undefined) await r.gate;
        const b = await ca.leafForNames(names);
        return { certPem: b.certPem, keyPem: b.keyPem };
      } finally {
        r.inFlight--;
      }
    },
  };
  const manager = new AcmeManager({ domain: D, acme: cfg }, store, ledger, orderer, createLogger('silent'));
  await manager.load();
  const publisher: CertPublisher = {
    hosts: () => r.hosts,
    push: async (b: CertBundle) => void r.events.push(`push ${b.names.join(',')}`),
    drop: async (names) => void r.events.push(`drop ${names.join(',')}`),
    fallbackChanged: async () => void r.events.push('fallback'),
  };
  manager.start(publisher);
  t.teardown(() => manager.stop());
  (r as { manager: AcmeManager }).manager = manager;
  return r;
}

async function until(what: string, pred: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(20);
  }
}

t.test('orgs within batch_wait_ms share one order; the domain certificate becomes the fallback', async (t) => {
  const r = await rig(t, { max_names: 3, batch_wait_ms: 400 });
  await until('domain', () => r.events.includes('fallback'));
  const t0 = Date.now();
  r.hosts.add(uc(1));
  r.hosts.add(uc(2));
  r.manager.nudge();
  await sleep(200);
  t.equal(r.orders.length, 1, 'nothing ordered for the orgs before batch_wait_ms');
  await until('batch', () => r.events.some((e) => e.startsWith('push ')));
  t.ok(Date.now() - t0 >= 350, 'ordered once the wait was over');
  t.strictSame(r.orders[1]!.sort(), [`*.org-${org(1)}.${D}`, `*.org-${org(2)}.${D}`]);
  t.equal(r.manager.stateFor(uc(1)), 'ready');
  t.equal(r.manager.stateFor(`org-${org(1)}.${D}`), 'ready', 'org hosts are covered by *.{domain}');
  t.equal(r.manager.stateFor(uc(3)), 'pending');
  t.strictSame(r.manager.counts(), { pending: 0, ready: 2, renewing: 0 });
});

t.test('at most four orders in flight', async (t) => {
  let open!: () => void;
  const r = await rig(t);
  r.gate = new Promise((resolve) => (open = resolve));
  for (let i = 1; i <= 10; i++) r.hosts.add(uc(i));
  r.manager.nudge();
  await until('four in flight', () => r.inFlight === 4);
  await sleep(1500);
  t.equal(r.maxInFlight, 4);
  open();
  await until('all done', () => r.events.filter((e) => e.startsWith('push ')).length === 10);
  t.equal(r.maxInFlight, 4);
});

t.test('an org gone for release_after_s is released: dropped from the data planes and data_dir', async (t) => {
  const r = await rig(t, { release_after_s: 0 });
  r.hosts.add(uc(1));
  r.manager.nudge();
  await until('issued', () => r.events.includes(`push *.org-${org(1)}.${D}`));
  r.hosts.delete(uc(1));
  r.manager.nudge();
  await until('released', () => r.events.includes(`drop *.org-${org(1)}.${D}`));
  t.strictSame(r.manager.report().map((x) => x.id), ['domain']);
});

t.test('stored certificates load without orders; one for another domain is ordered again', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'edgeway-acme-manager-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const ca = await LocalCA.open(join(dir, 'other-ca'), { leafDays: 90 });
  const store = await AcmeStore.open(dir);
  const stale = await ca.leafForNames(['old.test', '*.old.test']);
  await store.save('domain', stale.certPem, stale.keyPem);
  const good = await ca.leafForNames([`*.org-${org(1)}.${D}`]);
  await store.save(`org-${org(1)}`, good.certPem, good.keyPem);
  const r = await rig(t, {}, dir);
  r.hosts.add(uc(1));
  r.manager.nudge();
  await until('domain ordered', () => r.events.includes('fallback'));
  t.strictSame(r.orders, [[D, `*.${D}`]], 'only the certificate for the old domain is ordered again');
  t.strictSame([...r.manager.domainBundle()!.names].sort(), [`*.${D}`, D]);
  t.equal(r.manager.stateFor(uc(1)), 'ready', 'the stored org wildcard serves without an order');
});
