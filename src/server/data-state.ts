// A data plane's copy of the state: the route table and the certificates it
// serves. It applies the control plane's changes (by function call in one
// process, from IPC in a worker) synchronously, so the request after the
// acknowledgement already sees them. No I/O here.

import { bundleOf, type TableChange, type CertPem } from '../control/changes.js';
import { RouteTable } from '../routes/table.js';
import type { CompiledHost, CompiledLocation, HostEntry } from '../routes/types.js';
import { CertStore, type CertLoader } from '../tls/cert-store.js';

export class DataState {
  readonly table: RouteTable;
  readonly certs: CertStore;
  version = 0;
  /** Called with the locations of a host that was removed or replaced (their websockets close). */
  onRetired: ((ids: ReadonlySet<number>) => void) | undefined;
  /** Called when a location was compiled again unchanged: its websockets now belong to the new id. */
  onMoved: ((from: number, to: number) => void) | undefined;
  /** Called when the fallback certificate changed (no-SNI clients use the server's default context). */
  onFallback: (() => void) | undefined;

  /**
   * Whether certificates belong to host entries (self-signed: one leaf per
   * host, dropped with it). In files and ACME mode a certificate covers names,
   * not entries: deleting the entry `*.org-x.d` must not drop the org's
   * wildcard that its uc hosts still use.
   */
  private readonly hostCerts: boolean;

  /** With `loader`, certificates the control plane did not hand over are loaded on first use (restored hosts). */
  constructor(domain: string, fallback: CertPem, loader?: CertLoader) {
    this.table = new RouteTable(domain);
    this.certs = new CertStore(bundleOf(fallback));
    // Only self-signed mode has a loader (cert-source.ts): its leaves are per host.
    this.hostCerts = loader !== undefined;
    if (loader !== undefined) this.certs.setLoader(loader, (name) => this.table.lookupHost(name)?.host.host);
  }

  apply(change: TableChange, version: number): void {
    switch (change.kind) {
      case 'put':
        this.put(change.entry, change.cert);
        break;
      case 'delete':
        this.remove(change.host);
        break;
      case 'batch':
        for (const p of change.puts) this.put(p.entry, p.cert);
        for (const h of change.deletes) this.remove(h);
        break;
      case 'cert':
        this.certs.set(bundleOf(change.cert));
        break;
      case 'uncert':
        for (const n of change.names) this.certs.delete(n);
        break;
      case 'replace': {
        if (change.fallback.certPem !== this.certs.fallback.certPem) {
          this.certs.setFallback(bundleOf(change.fallback));
          this.onFallback?.();
        }
        for (const c of change.certs) this.certs.set(bundleOf(c));
        const before = new Map<string, CompiledHost>();
        // Only compiled hosts can have served traffic (and hold websockets).
        for (const h of this.table.compiledEntries()) before.set(h.host, h);
        this.table.replaceAll(change.entries);
        for (const [host, old] of before) this.retire(old, this.table.get(host));
        break;
      }
    }
    this.version = version;
  }

  private put(entry: HostEntry, cert: CertPem | undefined): void {
    if (cert) this.certs.set(bundleOf(cert));
    const old = this.table.get(entry.host);
    const next = this.table.put(entry);
    if (old) this.retire(old, next);
  }

  private remove(host: string): void {
    const old = this.table.delete(host);
    if (old) {
      if (this.hostCerts) this.certs.delete(host);
      this.retire(old, undefined);
    }
  }

  /**
   * Websockets that went through a location that is gone or changed are closed;
   * those of unchanged locations stay (a heartbeat or an unrelated edit must not
   * cut a user's terminal).
   */
  private retire(old: CompiledHost, next: CompiledHost | undefined): void {
    if (this.onRetired === undefined) return;
    const ids = new Set<number>();
    for (const loc of old.locations) {
      const same = next?.locations.find((l) => l.path === loc.path);
      if (same === undefined || fingerprint(same) !== fingerprint(loc)) ids.add(loc.id);
      else this.onMoved?.(loc.id, same.id);
    }
    if (ids.size > 0) this.onRetired(ids);
  }
}

function fingerprint(loc: CompiledLocation): string {
  return JSON.stringify([loc.spec, loc.access]);
}
