// The appliance in one process (`workers: 1`, or one core): control plane and
// data plane side by side, talking through plain function calls. Returned as a
// handle so tests can start it in-process and main can wire signals to it.

import type { Config } from './config/types.js';
import { openCertSource } from './control/cert-source.js';
import { toPem } from './control/changes.js';
import { startControl, type ControlHost } from './control/control-host.js';
import { InProcessSink } from './control/in-process-sink.js';
import type { Logger } from './log.js';
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

export async function startAppliance(cfg: Config, log: Logger): Promise<Appliance> {
  const certs = await openCertSource(cfg);
  const state = new DataState(cfg.domain, toPem(await certs.fallback()));
  const sink = new InProcessSink(state);
  const control = await startControl(cfg, certs, sink, log);
  const data = await startDataPlane(cfg, state, newTicketKeys(), log);
  sink.listening = true;
  return {
    addresses: { ...data.addresses, admin: control.adminAddress },
    control,
    data,
    banner: certs.describe(),
    async reload(): Promise<void> {
      const next = await control.reload();
      data.applyLimits(next);
    },
    async stop(): Promise<boolean> {
      const clean = await data.drain();
      await control.close();
      return clean;
    },
  };
}
