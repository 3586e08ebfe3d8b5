// `workers: N`: the control plane keeps its own copy of the compiled route
// table, fed by the same changes it sends the workers, so the services it
// hosts (collab, oauth; src/services) route a request a worker forwarded
// exactly as the worker did. Entries handed over in bulk compile on first
// lookup (table.ts), so the copy costs little until a service asks.

import { RouteTable } from '../routes/table.js';
import type { DataPlaneSink, TableChange } from './changes.js';

export class MirrorSink implements DataPlaneSink {
  readonly table: RouteTable;

  constructor(private readonly inner: DataPlaneSink, domain: string) {
    this.table = new RouteTable(domain);
  }

  apply(change: TableChange, version: number): Promise<void> {
    const t = this.table;
    switch (change.kind) {
      case 'put':
        t.put(change.entry);
        break;
      case 'delete':
        t.delete(change.host);
        break;
      case 'batch':
        for (const p of change.puts) t.put(p.entry);
        for (const h of change.deletes) t.delete(h);
        break;
      case 'replace':
        t.replaceAll(change.entries);
        break;
      case 'cert':
      case 'uncert':
        break;
    }
    return this.inner.apply(change, version);
  }

  current(version: number): boolean {
    return this.inner.current(version);
  }
}
