// `tls.mode: acme` as a CertSource (src/control/cert-source.ts): certificates
// come from the AcmeManager, which orders in the background. Nothing here
// waits on the CA: a host PUT is acknowledged at once with the certificate
// state `pending` until its org's wildcard is in hand, and is served with the
// best certificate available meanwhile (the {domain} wildcard, which covers
// org hosts, or before that a placeholder from edgeway's local CA).

import type { Config } from '../config/types.js';
import type { CertSource } from '../control/cert-source.js';
import type { Logger } from '../log.js';
import type { CertBundle } from '../tls/cert-bundle.js';
import { LocalCA } from '../tls/local-ca.js';
import { AcmeOrderer } from './acme-order.js';
import { AcmeStore } from './acme-store.js';
import { AcmeManager, type CertPublisher, type CertReport, type CertState } from './cert-manager.js';
import { forDisplay, openDns01Hook } from './dns01.js';
import { OrderLedger } from './order-ledger.js';

export class AcmeSource implements CertSource {
  private constructor(
    private readonly cfg: Config,
    readonly manager: AcmeManager,
    private readonly placeholder: () => Promise<CertBundle>,
    private readonly dir: string,
  ) {}

  static async open(cfg: Config, log: Logger): Promise<AcmeSource> {
    const acmeCfg = cfg.tls.acme;
    const store = await AcmeStore.open(cfg.data_dir);
    const ledger = await OrderLedger.open(store.dir, acmeCfg.budget);
    const orderer = await AcmeOrderer.open(acmeCfg, await store.accountKey(), openDns01Hook(acmeCfg), () => store.rotateAccountKey());
    const manager = new AcmeManager({ domain: cfg.domain, acme: acmeCfg }, store, ledger, orderer, log.child({ component: 'acme' }));
    await manager.load();
    // Until the first {domain} certificate arrives something must answer
    // handshakes; a local-CA leaf is at least a certificate for the right
    // names (made once, only when needed).
    let ph: Promise<CertBundle> | undefined;
    const placeholder = (): Promise<CertBundle> =>
      (ph ??= LocalCA.open(cfg.data_dir, { leafDays: cfg.tls.leaf_days }).then((ca) => ca.leafForNames([cfg.domain, `*.${cfg.domain}`])));
    return new AcmeSource(cfg, manager, placeholder, store.dir);
  }

  async fallback(): Promise<CertBundle> {
    return this.manager.domainBundle() ?? this.placeholder();
  }

  /** Every certificate in hand, whatever hosts exist: each covers names, not a host. */
  async all(): Promise<CertBundle[]> {
    return this.manager.bundles();
  }

  /** A new host may be an org's first: look now; its certificate arrives through the publisher. */
  async forHost(): Promise<undefined> {
    this.manager.nudge();
    return undefined;
  }

  async forget(): Promise<void> {
    this.manager.nudge();
  }

  attach(publisher: CertPublisher): void {
    this.manager.start(publisher);
  }

  detach(): void {
    this.manager.stop();
  }

  certState(host: string): 'ready' | 'pending' {
    return this.manager.stateFor(host);
  }

  report(): CertReport[] {
    return this.manager.report();
  }

  stateCounts(): Record<CertState, number> {
    return this.manager.counts();
  }

  describe(): string[] {
    const a = this.cfg.tls.acme;
    const hook = a.dns01.provider === 'webhook' ? `webhook ${forDisplay(a.dns01.url!)}` : `exec ${a.dns01.command}`;
    return [`ACME certificates from ${a.directory_url} (DNS-01 via ${hook}), kept in ${this.dir}`];
  }
}
