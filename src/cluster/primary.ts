// `workers: N`: this process is the control plane (admin API, certificates,
// the route table's source of truth) and forks N data-plane workers that
// accept connections directly (SCHED_NONE: the kernel spreads accepts, the
// primary never touches request traffic). A worker that dies is replaced and
// handed the whole current state before it counts as ready.

import cluster, { type Worker } from 'node:cluster';
import type { Config } from '../config/types.js';
import { openCertSource } from '../control/cert-source.js';
import { startControl, type ControlHost } from '../control/control-host.js';
import type { Logger } from '../log.js';
import { newTicketKeys } from '../tls/server-options.js';
import { MirrorSink } from '../control/mirror-sink.js';
import type { ServiceName } from '../routes/types.js';
import { listenServiceSocket, type ServiceSocket } from '../services/service-socket.js';
import { ClusterSink } from './cluster-sink.js';
import { isMessage, type ToPrimary } from './messages.js';
import { withDataPlaneFlags } from './heap-flags.js';
import { createPrimaryObservability, type PrimaryObservability } from './stats.js';

export interface Primary {
  readonly addresses: { https: string; http: string; admin: string };
  readonly banner: readonly string[];
  /** GET /metrics and GET /v1/activity for the whole process group; leaseExpired() for the control plane. */
  readonly observability: PrimaryObservability;
  reload(): Promise<void>;
  stop(): Promise<boolean>;
}

const RESPAWN_DELAY_MS = 1000;

export async function startPrimary(cfg: Config, log: Logger, workerArgs: readonly string[]): Promise<Primary> {
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  // Workers carry the traffic: they get the data-plane heap flags (heap-flags.ts).
  cluster.setupPrimary({ args: [...workerArgs], execArgv: withDataPlaneFlags(process.execArgv) });
  const ticketKeys = newTicketKeys().toString('base64');
  const sink = new ClusterSink(cfg.workers);
  const certs = await openCertSource(cfg, log);
  // The admin API is built inside startControl and reads the table through
  // `store` once it is set (an early call sees an empty table, not an error).
  let store: ControlHost['control'] | undefined;
  const observability = createPrimaryObservability({
    domain: cfg.domain,
    workers: cfg.workers,
    hosts: () => store?.list().map((s) => s.entry.host) ?? [],
    tableSize: () => store?.health().hosts ?? 0,
    certStates: () => certs.stateCounts?.(),
  });
  // The services (collab, oauth) live here and route by a copy of the table.
  const mirror = new MirrorSink(sink, cfg.domain);
  const control: ControlHost = await startControl(cfg, certs, mirror, log, observability, mirror.table);
  store = control.control;
  const serviceNames = Object.keys(control.services) as ServiceName[];
  let socket: ServiceSocket | undefined;
  try {
    if (serviceNames.length > 0) socket = await listenServiceSocket(cfg, mirror.table, control.services);
  } catch (err) {
    await control.close();
    throw err;
  }
  const services = socket === undefined ? undefined : { names: serviceNames, socketPath: socket.path };
  let config = cfg;
  let stopping = false;
  const addresses = { https: '', http: '', admin: control.adminAddress };
  let firstReady: (() => void) | undefined;
  let startFailed: ((e: Error) => void) | undefined;
  let readyCount = 0;
  const allReady = new Promise<void>((resolve, reject) => {
    firstReady = resolve;
    startFailed = reject;
  });

  const respawns = new Set<NodeJS.Timeout>();
  const fork = (): void => {
    if (stopping) return;
    const worker = cluster.fork();
    worker.on('message', (m: unknown) => {
      if (!isMessage<ToPrimary>(m)) return;
      if (m.t === 'hello') {
        void control.control.snapshot((change, version) => {
          // Counted from here: changes before this are in the snapshot, and
          // nothing waits on a worker that is still loading.
          sink.add(worker, version);
          sink.send(worker, { t: 'init', config, ticketKeys, change, version, services });
        });
      } else if (m.t === 'ack') sink.ack(worker, m.version);
      else if (m.t === 'stats') observability.collector.reply(m);
      else if (m.t === 'ready') {
        Object.assign(addresses, m.addresses);
        sink.markListening(worker);
        if (++readyCount === cfg.workers) firstReady?.();
      } else if (m.t === 'failed') {
        log.error({ worker: worker.id, reason: m.message }, 'worker failed to start');
        // At start-up a worker that cannot listen is fatal (port taken, no
        // permission); respawning it would loop forever.
        if (readyCount < cfg.workers) {
          stopping = true;
          startFailed?.(new Error(m.message));
        }
      }
    });
    worker.on('exit', (code, signal) => {
      sink.remove(worker);
      if (stopping) return;
      log.error({ worker: worker.id, code, signal }, 'data-plane worker exited; starting another');
      const timer = setTimeout(() => {
        respawns.delete(timer);
        fork();
      }, RESPAWN_DELAY_MS);
      respawns.add(timer);
    });
  };
  for (let i = 0; i < cfg.workers; i++) fork();
  try {
    await allReady;
  } catch (err) {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL');
    await socket?.close();
    await control.close();
    throw err;
  }

  return {
    addresses,
    banner: [...certs.describe(), `data-plane workers: ${cfg.workers}`],
    observability,
    async reload(): Promise<void> {
      config = await control.reload();
      for (const w of Object.values(cluster.workers ?? {})) if (w) sink.send(w, { t: 'limits', config });
    },
    async stop(): Promise<boolean> {
      stopping = true;
      // A worker that died just before the stop must not be replaced mid-drain.
      for (const timer of respawns) clearTimeout(timer);
      respawns.clear();
      const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
      const exits = workers.map((w) => new Promise<number>((resolve) => w.once('exit', (code) => resolve(code ?? 1))));
      for (const w of workers) sink.send(w, { t: 'drain' });
      // Workers bound their own drain by drain_timeout_ms; this is the backstop.
      const backstop = setTimeout(() => {
        for (const w of workers) w.process.kill('SIGKILL');
      }, cfg.limits.drain_timeout_ms + 5000);
      const codes = await Promise.all(exits);
      clearTimeout(backstop);
      await socket?.close();
      await control.close();
      return codes.every((c) => c === 0);
    },
  };
}
