// The control plane's process-level pieces: the state machine, the admin API
// listener, and SIGHUP reloads. A reload builds the new state fully (config
// validated, routes/ parsed, certificates loaded) before anything is swapped,
// so a bad file is refused and the old state keeps serving (Caddy's pattern).

import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type http from 'node:http';
import { createAdminServer } from '../admin/server.js';
import { loadJwtKeys } from '../auth/keys.js';
import { TokenVerifier } from '../auth/jwt.js';
import { AccessGate } from '../auth/access-gate.js';
import { FailLimiter } from '../auth/fail-limiter.js';
import { SessionCookies, loadSessionKey } from '../auth/session-cookie.js';
import type { Registry } from 'prom-client';
import type { RouteTable } from '../routes/table.js';
import { closeServices, openServices } from '../services/registry.js';
import type { ServiceSet } from '../services/types.js';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import type { Logger } from '../log.js';
import type { ActivitySource, MetricsSource } from '../observe/types.js';
import { loadRoutesDir } from '../routes/load-dir.js';
import { listen } from '../server/listeners.js';
import { openCertSource, type CertSource } from './cert-source.js';
import type { DataPlaneSink } from './changes.js';
import { ControlPlane } from './control-plane.js';
import { DurableState } from './durable-state.js';

/** Keys a running process cannot change; a reload that changes them says so and keeps the old values. */
const RESTART_KEYS = ['domain', 'listen', 'workers', 'data_dir', 'tls', 'auth', 'admin'] as const;

export interface ControlHost {
  readonly control: ControlPlane;
  readonly admin: http.Server;
  readonly adminAddress: string;
  /** The services this process hosts (collab, oauth), reached by the data plane(s). */
  readonly services: ServiceSet;
  /** Re-reads the config file, routes/ and certificates; rejects (changing nothing) when any is invalid. */
  reload(): Promise<Config>;
  close(): Promise<void>;
}

/** What the admin API serves as /v1/activity and /metrics (src/observe). */
export interface ControlObservability {
  readonly activity?: ActivitySource;
  readonly metrics?: MetricsSource & { leaseExpired?(): void };
  /** The registry behind `metrics` in this process, where services add their own figures. */
  readonly registry?: Registry;
}

export async function startControl(
  cfg: Config,
  certs: CertSource,
  sink: DataPlaneSink,
  log: Logger,
  observe: ControlObservability = {},
  /** The compiled table the services route by: the data plane's in one process, MirrorSink's with workers. */
  routes?: RouteTable,
): Promise<ControlHost> {
  const entries = await loadRoutesDir(cfg.routes_dir, cfg.domain);
  // API entries persist under data_dir/state (journal + snapshot); static ones come from routes/.
  const { durable, restored, stats } = await DurableState.open(join(cfg.data_dir, 'state'), log);
  const control = new ControlPlane(certs, sink, log, durable);
  const metrics = observe.metrics;
  if (metrics?.leaseExpired) control.onLeaseExpired = () => metrics.leaseExpired!();
  try {
    await control.start(entries, restored, stats);
  } catch (err) {
    await durable.close();
    throw err;
  }

  const verifier = new TokenVerifier(await loadJwtKeys(cfg), cfg.auth.jwt);
  let services: ServiceSet = {};
  if (routes !== undefined) {
    const sessions = new SessionCookies(await loadSessionKey(cfg.data_dir), cfg.auth.session_ttl_s);
    const gate = new AccessGate(cfg, verifier, sessions, new FailLimiter(cfg.auth.fail_limit));
    try {
      services = await openServices({
        config: cfg, log, gate, lookupHost: (h) => routes.lookupHost(h)?.host,
        ...(observe.registry ? { metrics: observe.registry } : {}),
      });
    } catch (err) {
      control.stop();
      await control.close();
      throw err;
    }
  }
  const admin = createAdminServer({
    config: cfg,
    store: control,
    certs: control,
    verifier,
    startedAt: Date.now(),
    ...(observe.activity ? { activity: observe.activity } : {}),
    ...(observe.metrics ? { metrics: observe.metrics } : {}),
    services,
  });
  if (cfg.listen.admin.kind === 'unix') await rm(cfg.listen.admin.path, { force: true });
  const adminAddress = await listen(admin, cfg.listen.admin);

  let current = cfg;
  return {
    control,
    admin,
    adminAddress,
    services,
    async reload(): Promise<Config> {
      const next = await loadConfig(current.config_file);
      const fixed = RESTART_KEYS.filter((k) => JSON.stringify(next[k]) !== JSON.stringify(current[k]));
      if (fixed.length > 0) log.warn({ keys: fixed }, 'these settings change only on restart; keeping the running values');
      const merged: Config = { ...next, ...Object.fromEntries(RESTART_KEYS.map((k) => [k, current[k]])) } as Config;
      const staticEntries = await loadRoutesDir(merged.routes_dir, merged.domain);
      // `tls` only changes on restart: self-signed mode keeps its CA (and the
      // data plane's loader bound to it); files mode re-reads certs_dir.
      const nextCerts = merged.tls.mode === 'files' ? await openCertSource(merged, log) : certs;
      await control.replaceStatic(staticEntries, nextCerts);
      log.level = merged.log.level;
      current = merged;
      return merged;
    },
    async close(): Promise<void> {
      control.stop();
      const closed = new Promise<void>((resolve) => admin.close(() => resolve()));
      admin.closeAllConnections();
      await closed;
      await closeServices(services);
      await control.close();
    },
  };
}
