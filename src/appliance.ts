// The appliance in one process (`workers: 1`, or one core): control plane and
// data plane side by side, talking through plain function calls. Returned as a
// handle so tests can start it in-process and main can wire signals to it.

import type { Config } from './config/types.js';
import { openCertSource } from './control/cert-source.js';
import { toPem } from './control/changes.js';
import { startControl, type ControlHost } from './control/control-host.js';
import { InProcessSink } from './control/in-process-sink.js';
import type { Logger } from './log.js';
import { createObservability } from './observe/observer.js';
import { startDataPlane, type DataPlaneHost } from './server/data-plane-host.js';
import { DataState } from './server/data-state.js';
import { newTicketKeys } from './tls/server-options.js';

export interface Appliance {
  readonly addresses: { readonly https: string; readonly http: string; readonly admin: string };
  readonly control: ControlHost;
  readonly data: DataPlaneHost;
  /** Lines for the start-up banner. */
  readonly banner: readonly string[];
  reload(): Promise<void>;
  /** Drains and closes everything; resolves true when the drain finished before its deadline. */
  stop(): Promise<boolean>;
}

export interface ApplianceOptions {
  /** Node process metrics (event loop, GC) in /metrics; prom-client cannot remove their monitors, so tests that start many appliances in one process turn them off. */
  readonly processMetrics?: boolean;
}

export async function startAppliance(cfg: Config, log: Logger, opts: ApplianceOptions = {}): Promise<Appliance> {
  const certs = await openCertSource(cfg, log);
  const state = new DataState(cfg.domain, toPem(await certs.fallback()), certs.loader?.());
  const sink = new InProcessSink(state);
  const observe = createObservability({
    config: cfg,
    log,
    table: state.table,
    certificates: () => state.certs.list(),
    certStates: () => certs.stateCounts?.(),
    ...(opts.processMetrics === undefined ? {} : { processMetrics: opts.processMetrics }),
  });
  const control = await startControl(cfg, certs, sink, log, { activity: observe.activity, metrics: observe.metrics, registry: observe.metrics.registry }, state.table);
  let data: DataPlaneHost;
  try {
    data = await startDataPlane(cfg, state, newTicketKeys(), log);
  } catch (err) {
    await control.close();
    throw err;
  }
  data.plane.observer = observe.observer;
  data.plane.services = control.services;
  sink.listening = true;
  return {
    addresses: { ...data.addresses, admin: control.adminAddress },
    control,
    data,
    banner: certs.describe(),
    async reload(): Promise<void> {
      const next = await control.reload();
      data.applyLimits(next);
      observe.applyConfig(next);
    },
    async stop(): Promise<boolean> {
      const clean = await data.drain();
      await control.close();
      observe.close();
      return clean;
    },
  };
}
