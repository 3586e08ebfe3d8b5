// A data-plane worker: waits for the control plane's `init` (config, ticket
// keys, the whole table and certificates), starts the public listeners, then
// applies changes as they come and acknowledges each. Requests never wait on
// IPC: a change is applied between two events of this process.

import process from 'node:process';
import type { Config } from '../config/types.js';
import { createLogger, type Logger } from '../log.js';
import { startDataPlane, type DataPlaneHost } from '../server/data-plane-host.js';
import { DataState } from '../server/data-state.js';
import { workerCertLoader } from '../control/cert-source.js';
import type { Observability } from '../observe/observer.js';
import { remoteServices } from '../services/remote-service.js';
import { isMessage, type ToPrimary, type ToWorker } from './messages.js';
import { answerStats, createWorkerObservability } from './stats.js';

function send(m: ToPrimary): void {
  if (process.connected) process.send?.(m);
}

export function runWorker(earlySignals: readonly NodeJS.Signals[] = []): void {
  let state: DataState | undefined;
  let host: DataPlaneHost | undefined;
  let obs: Observability | undefined;
  let log: Logger = createLogger('info', 'edgeway-worker');

  const drainAndExit = async (): Promise<void> => {
    const clean = host ? await host.drain() : true;
    log.info({ clean }, 'worker drained');
    process.exit(0);
  };

  process.on('message', (m: unknown) => {
    if (!isMessage<ToWorker>(m)) return;
    switch (m.t) {
      case 'init':
        if (state !== undefined) return;
        void init(m.config, Buffer.from(m.ticketKeys, 'base64'), m);
        return;
      case 'change':
        // Changes sent before init are already part of init's snapshot.
        if (state === undefined || m.version <= state.version) return;
        state.apply(m.change, m.version);
        send({ t: 'ack', version: m.version });
        return;
      case 'limits':
        host?.applyLimits(m.config);
        obs?.applyConfig(m.config);
        log.level = m.config.log.level;
        return;
      case 'stats':
        // A failed snapshot still answers, so the primary does not wait out its timeout.
        answerStats(obs, m).then(send, () => send({ t: 'stats', id: m.id }));
        return;
      case 'drain':
        void drainAndExit();
        return;
    }
  });

  async function init(config: Config, ticketKeys: Buffer, m: Extract<ToWorker, { t: 'init' }>): Promise<void> {
    log = createLogger(config.log.level, 'edgeway-worker');
    if (m.change.kind !== 'replace') throw new Error('init carries the whole state');
    const s = new DataState(config.domain, m.change.fallback, workerCertLoader(config));
    s.apply(m.change, m.version);
    state = s;
    obs = createWorkerObservability(config, log, s);
    try {
      host = await startDataPlane(config, s, ticketKeys, log);
      host.plane.observer = obs.observer;
      if (m.services !== undefined) {
        host.plane.services = remoteServices(m.services.names, m.services.socketPath, host.forwarder, host.ws, config.proxy);
      }
    } catch (err) {
      send({ t: 'failed', message: (err as Error).message });
      process.exit(1);
    }
    send({ t: 'ack', version: s.version });
    send({ t: 'ready', addresses: host.addresses });
  }

  if (earlySignals.includes('SIGTERM') || earlySignals.includes('SIGINT')) return void drainAndExit();
  send({ t: 'hello' });

  // systemd signals the whole control group: each worker drains on its own.
  process.on('SIGTERM', () => void drainAndExit());
  process.on('SIGINT', () => void drainAndExit());
  // Reloads are the control plane's; a HUP sent to the group must not kill workers.
  process.on('SIGHUP', () => undefined);
  // The primary is gone: nobody will send changes any more.
  process.on('disconnect', () => void drainAndExit());
}
