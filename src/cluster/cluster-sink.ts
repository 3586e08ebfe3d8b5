// `workers: N`: the control plane's view of its data-plane workers. A change
// is acknowledged to the admin client only once every live worker has applied
// it, so the next request sees it whichever worker accepts the connection.
// Nothing on the request path waits on this: workers apply changes between
// requests and answer with an ack.

import type { Worker } from 'node:cluster';
import { EdgewayError } from '../errors.js';
import type { DataPlaneSink, TableChange } from '../control/changes.js';
import type { ToWorker } from './messages.js';

interface WorkerState {
  readonly worker: Worker;
  version: number;
  listening: boolean;
}

interface Waiter {
  readonly version: number;
  readonly resolve: () => void;
}

/** How long a change may wait for a worker before the admin API answers 503. */
const ACK_TIMEOUT_MS = 10_000;

export class ClusterSink implements DataPlaneSink {
  private readonly workers = new Map<number, WorkerState>();
  private waiters: Waiter[] = [];

  constructor(private readonly expected: number) {}

  /**
   * Counts a worker once it is handed the state at `version` (its init): a
   * worker still loading is not waited for (it ignores changes before init,
   * and its snapshot, taken in the change queue, already holds them).
   */
  add(worker: Worker, version: number): void {
    this.workers.set(worker.id, { worker, version, listening: false });
  }

  remove(worker: Worker): void {
    this.workers.delete(worker.id);
    this.settle();
  }

  markListening(worker: Worker): void {
    const s = this.workers.get(worker.id);
    if (s) s.listening = true;
  }

  ack(worker: Worker, version: number): void {
    const s = this.workers.get(worker.id);
    if (s && version > s.version) s.version = version;
    this.settle();
  }

  send(worker: Worker, msg: ToWorker): void {
    if (worker.isConnected()) worker.send(msg);
  }

  apply(change: TableChange, version: number): Promise<void> {
    const msg: ToWorker = { t: 'change', change, version };
    for (const s of this.workers.values()) this.send(s.worker, msg);
    if (this.allAt(version)) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new EdgewayError('SERVICE_UNAVAILABLE', 'a data-plane worker did not confirm the change in time'));
      }, ACK_TIMEOUT_MS);
      const waiter: Waiter = {
        version,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      this.waiters.push(waiter);
    });
  }

  current(version: number): boolean {
    if (this.workers.size < this.expected) return false;
    for (const s of this.workers.values()) if (!s.listening || s.version < version) return false;
    return true;
  }

  private allAt(version: number): boolean {
    for (const s of this.workers.values()) if (s.version < version) return false;
    return true;
  }

  private settle(): void {
    if (this.waiters.length === 0) return;
    const still: Waiter[] = [];
    for (const w of this.waiters) {
      if (this.allAt(w.version)) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
  }
}
