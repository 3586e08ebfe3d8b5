// (f) route churn under load: while wrk runs the (a) load (uc host, c64), a
// target's routing is changed `count` times, one after the other, paced to
// spread over at least `seconds` − 1.5 s from 0.5 s in (a change that takes
// longer than its slot just delays the next). wrk runs until the last change
// is done plus 0.5 s, and at least `seconds` (then SIGINT: it prints its
// report). Failed requests = wrk's socket errors plus its non-2xx/3xx responses.
//   edgeway: 1,000 admin API calls: every 10th a re-PUT of the loaded uc host
//     with the same upstreams, the others alternately PUT a new uc host and
//     DELETE one made earlier;
//   nginx two-stage: 20 rewrites of stage 2's config (1,000 server blocks, one
//     of them renamed per rewrite) each followed by a reload (HUP to its master).

import type { WrkResult } from './load.js';
import type { EdgewayTarget, Target } from './peers.js';
import type { Metric } from './report.js';
import { admin, fillerEntry, platformToken, UC_HOST, ucEntry, type Upstreams } from './setup.js';

export interface Churn {
  readonly count: number;
  /** Change number i (0-based). */
  change(i: number): Promise<void> | void;
  /** Puts the target back as it was (after the load). */
  restore(): Promise<void>;
}

export async function edgewayChurn(e: EdgewayTarget, up: Upstreams, count: number): Promise<Churn> {
  const tok = await platformToken(e);
  const made: string[] = [];
  return {
    count,
    change: async (i) => {
      if (i % 10 === 0) return admin(e, tok, 'PUT', `/v1/hosts/${UC_HOST}`, ucEntry(up));
      const host = made.shift();
      if (i % 2 === 0 && host) return admin(e, tok, 'DELETE', `/v1/hosts/${host}`);
      if (host) made.unshift(host);
      const entry = fillerEntry(up.main);
      await admin(e, tok, 'PUT', `/v1/hosts/${entry.host}`, entry);
      made.push(entry.host);
    },
    restore: async () => {
      for (const h of made.splice(0)) await admin(e, tok, 'DELETE', `/v1/hosts/${h}`);
    },
  };
}

export function nginxChurn(t: Target, count: number, blocks = 1000): Churn {
  const hosts = Array.from({ length: blocks }, (_, j) => `churn-${j}.localhost`);
  return {
    count,
    change: (i) => {
      hosts[i % blocks] = `churn-${i % blocks}-r${i}.localhost`;
      t.reloadWith!(hosts);
    },
    restore: async () => {
      t.reloadWith!([]);
      await new Promise((r) => setTimeout(r, 1000));
    },
  };
}

export async function measureChurn(
  t: Target, churn: Churn, load: (stop: AbortSignal) => Promise<WrkResult>, seconds: number, round: number, say: (s: string) => void,
): Promise<Metric[]> {
  const t0 = performance.now();
  const stop = new AbortController();
  const loaded = load(stop.signal);
  const sleep = (ms: number): Promise<unknown> => new Promise((r) => setTimeout(r, ms));
  let done = 0;
  let failedChanges = 0;
  let firstError = '';
  const slot = (Math.max(0.5, seconds - 1.5) * 1000) / churn.count;
  for (let i = 0; i < churn.count; i++) {
    const wait = 500 + i * slot - (performance.now() - t0);
    if (wait > 0) await sleep(wait);
    try {
      await churn.change(i);
      done++;
    } catch (e) {
      failedChanges++;
      firstError ||= (e as Error).message;
    }
  }
  const changesS = (performance.now() - t0) / 1000;
  await sleep(Math.max(500, seconds * 1000 - (performance.now() - t0)));
  stop.abort();
  const w = await loaded;
  await churn.restore();
  if (failedChanges > 0) say(`(f) ${t.name}: ${failedChanges} of ${churn.count} changes failed (first: ${firstError.slice(0, 200)})`);
  const detail = {
    changes: done, failed_changes: failedChanges, changes_s: Math.round(changesS * 10) / 10, load_s: w.seconds,
    requests: w.requests, socket_errors: w.errors, non_2xx_3xx: w.non_2xx_3xx,
  };
  return [
    { scenario: 'f', target: t.name, round, name: 'failed requests', value: w.errors + w.non_2xx_3xx, better: 'lower', ratio: false, detail },
    { scenario: 'f', target: t.name, round, name: 'req/s', value: Math.round(w.rps), better: 'higher', detail },
  ];
}
