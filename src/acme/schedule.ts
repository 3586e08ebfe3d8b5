// When to renew and when to retry (issue 5 "Swap without a gap").
//
// Renewal starts at `renew_at` of the lifetime (default 2/3: day 60 of a
// 90-day certificate, what Let's Encrypt recommends), minus a jitter of up to
// 5% of that point so certificates issued together (a batch of orgs, a fleet
// restored from one backup) do not all renew in the same minute. The jitter
// comes from the certificate itself, so a restart does not move the point.
//
// Failures back off exponentially from retry_min_s to retry_max_s with ±25%
// jitter (RFC 8555 §6.6 asks clients not to hammer a CA that refuses them).

import { createHash } from 'node:crypto';
import type { CertBundle } from '../tls/cert-bundle.js';

const RENEW_JITTER = 0.05;

/** A stable fraction in [0, 1) derived from the certificate's bytes. */
function stableFraction(pem: string): number {
  return createHash('sha256').update(pem).digest().readUInt32BE(0) / 2 ** 32;
}

/** Epoch ms at which `bundle` is due for renewal. */
export function dueAt(bundle: CertBundle, renewAt: number): number {
  const from = bundle.notBefore.getTime();
  const offset = (bundle.notAfter.getTime() - from) * renewAt;
  return Math.round(from + offset * (1 - RENEW_JITTER * stableFraction(bundle.certPem)));
}

/** Delay before attempt `attempts + 1`, after `attempts` failures in a row. */
export function retryDelayMs(attempts: number, minS: number, maxS: number, random = Math.random): number {
  const base = Math.min(maxS, minS * 2 ** Math.min(attempts - 1, 30));
  return Math.round(Math.min(maxS, base * (0.75 + 0.5 * random())) * 1000);
}
