// The order ledger (issue 5 "Rate limits"): every new order and every issued
// certificate, with its time, in data_dir/acme/ledger.json, so budgets hold
// across restarts. Let's Encrypt allows 300 new orders per account per 3 hours
// and 50 certificates per registered domain per week; edgeway refuses an order
// that would pass `tls.acme.budget` and says until when (ACME_BUDGET_EXCEEDED).
// Entries older than a week are dropped on every write, so the file stays small.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AcmeConfig } from '../config/types.js';
import { EdgewayError } from '../errors.js';
import { writeFileAtomic } from '../tls/atomic-write.js';

const WEEK_MS = 7 * 24 * 3600 * 1000;
const THREE_HOURS_MS = 3 * 3600 * 1000;

export interface LedgerEntry {
  /** Epoch ms. */
  readonly at: number;
  readonly kind: 'order' | 'certificate';
  readonly names: readonly string[];
}

export class OrderLedger {
  private entries: LedgerEntry[];
  private writing: Promise<void> = Promise.resolve();

  private constructor(
    private readonly path: string,
    entries: LedgerEntry[],
    private readonly budget: AcmeConfig['budget'],
  ) {
    this.entries = entries;
  }

  static async open(dir: string, budget: AcmeConfig['budget']): Promise<OrderLedger> {
    const path = join(dir, 'ledger.json');
    let entries: LedgerEntry[] = [];
    try {
      const parsed = JSON.parse(await readFile(path, 'utf8')) as { entries?: unknown };
      if (Array.isArray(parsed.entries)) entries = parsed.entries.filter(isEntry);
    } catch (e) {
      // Missing is a first start; damaged would be a reason to stop, except
      // that refusing to start over a ledger loses more than it protects:
      // the CA enforces its own limits anyway. Start counting afresh.
      if ((e as { code?: string }).code !== 'ENOENT' && !(e instanceof SyntaxError)) throw e;
    }
    return new OrderLedger(path, entries, budget);
  }

  /** Entries of `kind` since `since` (epoch ms). */
  count(kind: LedgerEntry['kind'], since: number): number {
    let n = 0;
    for (const e of this.entries) if (e.kind === kind && e.at >= since) n++;
    return n;
  }

  /** Throws ACME_BUDGET_EXCEEDED when a new order now would pass a budget. */
  check(now: number): void {
    const orders = this.entries.filter((e) => e.kind === 'order' && e.at >= now - THREE_HOURS_MS);
    if (orders.length >= this.budget.orders_per_3h) {
      const until = new Date(orders[orders.length - this.budget.orders_per_3h]!.at + THREE_HOURS_MS).toISOString();
      throw new EdgewayError('ACME_BUDGET_EXCEEDED', `budget.orders_per_3h (${this.budget.orders_per_3h}) used up; next order possible at ${until}`);
    }
    const certs = this.entries.filter((e) => e.kind === 'certificate' && e.at >= now - WEEK_MS);
    if (certs.length >= this.budget.certificates_per_week) {
      const until = new Date(certs[certs.length - this.budget.certificates_per_week]!.at + WEEK_MS).toISOString();
      throw new EdgewayError(
        'ACME_BUDGET_EXCEEDED',
        `budget.certificates_per_week (${this.budget.certificates_per_week}) used up; next certificate possible at ${until}`,
      );
    }
  }

  /** Records an entry durably before the caller goes on (an order is recorded before it is sent). */
  record(kind: LedgerEntry['kind'], names: readonly string[], now = Date.now()): Promise<void> {
    this.entries = this.entries.filter((e) => e.at >= now - WEEK_MS);
    this.entries.push({ at: now, kind, names: [...names] });
    const text = JSON.stringify({ entries: this.entries });
    // Writes in order, each a whole file: the last one wins with everything.
    this.writing = this.writing.catch(() => undefined).then(() => writeFileAtomic(this.path, text, 0o600));
    return this.writing;
  }
}

function isEntry(v: unknown): v is LedgerEntry {
  const e = v as LedgerEntry;
  return typeof v === 'object' && v !== null && typeof e.at === 'number' && (e.kind === 'order' || e.kind === 'certificate') && Array.isArray(e.names);
}
