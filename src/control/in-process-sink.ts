// `workers: 1` (or one core): the control plane hands changes to the data
// plane by a plain function call (DESIGN.md "Process model").

import type { DataState } from '../server/data-state.js';
import type { DataPlaneSink, TableChange } from './changes.js';

export class InProcessSink implements DataPlaneSink {
  /** Set once every public listener accepts. */
  listening = false;

  constructor(private readonly state: DataState) {}

  async apply(change: TableChange, version: number): Promise<void> {
    this.state.apply(change, version);
  }

  current(version: number): boolean {
    return this.listening && this.state.version >= version;
  }
}
