// The relay's Prometheus figures (issue 6: a failed store "a metric counts
// it"). They live in the control plane's registry, the one GET /metrics
// serves in both process models: the single process's Metrics registry, or
// the cluster primary's, which merges the workers' samples into it
// (src/cluster/stats.ts). Counts are plain numbers on the hot path, turned
// into samples when scraped; close codes are a small fixed set of labels.

import { Counter, Gauge, type Registry } from 'prom-client';

export interface CollabFigures {
  readonly rooms: () => number;
  readonly connections: () => number;
}

export class CollabMetrics {
  #persisted = 0;
  #connected = 0;
  #storeFailures = 0;
  readonly #closes = new Map<number, number>();

  constructor(registry: Registry, figures: CollabFigures) {
    const registers = [registry];
    const self = this;
    new Gauge({ name: 'edgeway_collab_rooms', help: 'Collab rooms loaded in memory', registers, collect(this: Gauge) { this.set(figures.rooms()); } });
    new Gauge({ name: 'edgeway_collab_connections', help: 'Open collab websockets in rooms', registers, collect(this: Gauge) { this.set(figures.connections()); } });
    const counter = (name: string, help: string, value: () => number): void => {
      new Counter({ name, help, registers, collect(this: Counter) { this.reset(); this.inc(value()); } });
    };
    counter('edgeway_collab_connections_total', 'Collab websockets admitted to a room', () => self.#connected);
    counter('edgeway_collab_store_writes_total', 'Collab store writes made durable (updates and compactions)', () => self.#persisted);
    counter('edgeway_collab_store_failures_total', 'Collab rooms failed because a store read or write failed (sockets closed with 1011)', () => self.#storeFailures);
    new Counter({
      name: 'edgeway_collab_closes_total',
      help: 'Collab websockets closed by edgeway, by close code (1006: dropped without a pong)',
      labelNames: ['code'],
      registers,
      collect(this: Counter<'code'>) {
        this.reset();
        for (const [code, n] of self.#closes) this.inc({ code: String(code) }, n);
      },
    });
  }

  persisted(): void {
    this.#persisted++;
  }

  connected(): void {
    this.#connected++;
  }

  storeFailed(): void {
    this.#storeFailures++;
  }

  closed(code: number): void {
    this.#closes.set(code, (this.#closes.get(code) ?? 0) + 1);
  }
}
