// Repeated authentication failures from one address get 429 for a while
// (fail2ban's idea, in process): `max_failures` refused credentials within
// `window_s` ban the address for `ban_s`. Other addresses are not affected.
//
// The table is an LRU of bounded size, so an attacker rotating addresses can
// only push old entries out (losing their bans), never grow memory. IPv6
// clients are counted per /64, the block one subscriber usually gets: per
// address, a single host could rotate through 2^64 of them.
//
// Per process: with `workers: N` each data plane counts on its own (the
// kernel spreads connections), so a client sees the ban after at most
// N × max_failures failures. Nothing on the request path waits on IPC.

import { isIPv6 } from 'node:net';
import { LRUCache } from 'lru-cache';
import type { FailLimitConfig } from '../config/types.js';

const MAX_ADDRESSES = 65_536;

interface Entry {
  count: number;
  windowEnd: number;
  bannedUntil: number;
}

export class FailLimiter {
  readonly #cfg: FailLimitConfig;
  readonly #table = new LRUCache<string, Entry>({ max: MAX_ADDRESSES });

  constructor(cfg: FailLimitConfig) {
    this.#cfg = cfg;
  }

  /** Addresses tracked now (for tests and metrics). */
  get size(): number {
    return this.#table.size;
  }

  /** Whole seconds of ban left for this client address (0: not banned). */
  bannedFor(address: string, now: number): number {
    if (this.#table.size === 0) return 0; // the common case costs one comparison
    const e = this.#table.get(keyOf(address));
    if (e === undefined || e.bannedUntil <= now) return 0;
    return Math.ceil((e.bannedUntil - now) / 1000);
  }

  /** Counts one refused credential; true when it started a ban. */
  fail(address: string, now: number): boolean {
    const { max_failures, window_s, ban_s } = this.#cfg;
    if (max_failures === 0) return false;
    const key = keyOf(address);
    let e = this.#table.get(key);
    if (e === undefined || (e.windowEnd <= now && e.bannedUntil <= now)) {
      e = { count: 0, windowEnd: now + window_s * 1000, bannedUntil: 0 };
      this.#table.set(key, e);
    } else if (e.windowEnd <= now) {
      e.count = 0;
      e.windowEnd = now + window_s * 1000;
    }
    if (e.bannedUntil > now) return false;
    if (++e.count < max_failures) return false;
    e.bannedUntil = now + ban_s * 1000;
    e.count = 0;
    return true;
  }
}

/** IPv4 (also IPv4-mapped IPv6) as is; other IPv6 addresses by their /64. */
export function keyOf(address: string): string {
  if (address.startsWith('::ffff:') && address.includes('.')) return address.slice(7);
  if (!isIPv6(address)) return address;
  const pct = address.indexOf('%'); // zone index: not part of the address
  const a = pct === -1 ? address : address.slice(0, pct);
  const gap = a.indexOf('::');
  let groups: string[];
  if (gap === -1) groups = a.split(':');
  else {
    const head = gap === 0 ? [] : a.slice(0, gap).split(':');
    const tail = gap + 2 === a.length ? [] : a.slice(gap + 2).split(':');
    groups = [...head, ...new Array<string>(Math.max(0, 8 - head.length - tail.length)).fill('0'), ...tail];
  }
  return groups.slice(0, 4).map((g) => (parseInt(g, 16) || 0).toString(16)).join(':') + '::/64';
}
