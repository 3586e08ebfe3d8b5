// The targets of one location (`upstream` or `upstreams`): round-robin with
// passive health, like nginx's `max_fails`/`fail_timeout`. Built once per
// compiled location (CompiledLocation.runtime) and read on every request, so
// state lives in flat arrays indexed like `targets` and nothing allocates.

import type { ProxyConfig } from '../config/types.js';
import type { UpstreamTarget } from '../routes/types.js';

export class UpstreamGroup {
  readonly targets: readonly UpstreamTarget[];
  /** No https target: the lean path (lean-forwarder.ts) can carry every request of this group. */
  readonly plain: boolean;
  private readonly maxFails: number;
  private readonly ejectMs: number;
  /** Consecutive failures per target; reset by a success. */
  private readonly fails: Int32Array;
  /** Epoch ms until which a target is out of rotation (0 = in rotation). */
  private readonly ejectedUntil: Float64Array;
  private next = 0;

  constructor(targets: readonly UpstreamTarget[], cfg: Pick<ProxyConfig, 'max_fails' | 'eject_ms'>) {
    if (targets.length === 0) throw new RangeError('an upstream group needs at least one target');
    this.targets = targets;
    this.plain = targets.every((t) => t.protocol === 'http:');
    this.maxFails = Math.max(1, cfg.max_fails);
    this.ejectMs = Math.max(0, cfg.eject_ms);
    this.fails = new Int32Array(targets.length);
    this.ejectedUntil = new Float64Array(targets.length);
  }

  get size(): number {
    return this.targets.length;
  }

  /**
   * Next target in rotation that is not ejected. When every target is ejected,
   * the one whose ejection ends first: a group never refuses outright, since a
   * possibly-recovered upstream beats a certain 503.
   */
  pick(now: number): UpstreamTarget {
    const n = this.targets.length;
    if (n === 1) return this.targets[0] as UpstreamTarget;
    const start = this.next;
    this.next = start + 1 === n ? 0 : start + 1;
    let soonest = start;
    for (let k = 0, i = start; k < n; k++, i = i + 1 === n ? 0 : i + 1) {
      const until = this.ejectedUntil[i] as number;
      if (until <= now) {
        // Keep the rotation fair when we skipped ejected targets.
        if (k > 0) this.next = i + 1 === n ? 0 : i + 1;
        return this.targets[i] as UpstreamTarget;
      }
      if (until < (this.ejectedUntil[soonest] as number)) soonest = i;
    }
    return this.targets[soonest] as UpstreamTarget;
  }

  /** True when `t` is currently in rotation. */
  isHealthy(t: UpstreamTarget, now: number): boolean {
    const i = this.targets.indexOf(t);
    return i >= 0 && (this.ejectedUntil[i] as number) <= now;
  }

  /**
   * A connect failure, reset or timeout. After `max_fails` in a row the target
   * is ejected for `eject_ms`. A target back from ejection keeps its count, so
   * its first failure ejects it again (a probation, as Envoy's outlier detection
   * does) while one success fully restores it.
   */
  reportFailure(t: UpstreamTarget, now: number): void {
    if (this.targets.length === 1) return;
    const i = this.targets.indexOf(t);
    if (i < 0) return;
    // Requests that were already in flight when it was ejected do not extend the ejection.
    if ((this.ejectedUntil[i] as number) > now) return;
    const f = (this.fails[i] as number) + 1;
    this.fails[i] = f;
    if (f >= this.maxFails) this.ejectedUntil[i] = now + this.ejectMs;
  }

  reportSuccess(t: UpstreamTarget): void {
    if (this.targets.length === 1) return;
    const i = this.targets.indexOf(t);
    if (i < 0 || this.fails[i] === 0) return;
    this.fails[i] = 0;
    this.ejectedUntil[i] = 0;
  }
}
