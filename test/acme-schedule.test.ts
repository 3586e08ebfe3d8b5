// Issue 5 "Swap without a gap": when renewal starts (renew_at share of the
// lifetime, with a stable jitter) and how failed orders back off (exponential,
// capped). Pure functions, no ACME server needed.

import t from 'tap';
import { dueAt, retryDelayMs } from '../src/acme/schedule.js';
import type { CertBundle } from '../src/tls/cert-bundle.js';

const DAY = 86400_000;
const bundle = (pem: string, days = 90): CertBundle => ({
  names: ['x.test'],
  certPem: pem,
  keyPem: '',
  notBefore: new Date(Date.UTC(2025, 0, 1)),
  notAfter: new Date(Date.UTC(2025, 0, 1) + days * DAY),
  issuer: 'test',
});

t.test('renewal starts at renew_at of the lifetime, up to 5% earlier, the same for the same certificate', async (t) => {
  const from = Date.UTC(2025, 0, 1);
  const points = Array.from({ length: 200 }, (_, i) => dueAt(bundle(`cert ${i}`), 2 / 3));
  for (const p of points) {
    t.ok(p <= from + 60 * DAY && p >= from + 57 * DAY, 'between day 57 and day 60 of 90');
  }
  t.ok(new Set(points).size > 150, 'spread out (jitter)');
  t.equal(dueAt(bundle('cert 7'), 2 / 3), points[7], 'stable across calls (and restarts)');
  t.ok(dueAt(bundle('a'), 0.5) < dueAt(bundle('a'), 0.9));
});

t.test('retries back off exponentially from retry_min_s up to retry_max_s', async (t) => {
  const mid = (): number => 0.5; // no jitter
  t.strictSame([1, 2, 3, 4, 5, 6, 7, 40].map((n) => retryDelayMs(n, 60, 3600, mid)), [60_000, 120_000, 240_000, 480_000, 960_000, 1_920_000, 3_600_000, 3_600_000]);
  t.equal(retryDelayMs(1, 60, 3600, () => 0), 45_000, '-25% jitter');
  t.equal(retryDelayMs(1, 60, 3600, () => 0.999999), 75_000, '+25% jitter');
  t.equal(retryDelayMs(10, 60, 3600, () => 0.999999), 3_600_000, 'jitter never passes the cap');
});
