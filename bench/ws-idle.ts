// (e) idle TLS websockets: RSS per connection. For each target (a fresh one
// per round, so memory freed by an earlier run cannot be reused and hide the
// cost): the RSS of its process tree, then `count` websockets opened through
// it to the node upstream's echo and left idle, then the RSS again after they
// settle. (after − before) / opened, in KB (1,000 bytes; /proc counts KiB).
// The client is a forked process (bench/ws-client.ts); the upstream is not
// counted.

import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { memoryKb, processTree } from './load.js';
import type { Target } from './peers.js';
import type { Metric } from './report.js';
import type { ClientReport, ClientSpec } from './ws-client.js';

const CLIENT_JS = fileURLToPath(new URL('ws-client.js', import.meta.url));

export interface Client {
  /** The first report: after every socket was tried (idle), or at the end (echo). */
  readonly report: Promise<ClientReport>;
  /** idle: closes the sockets and waits for the client to exit. */
  close(): Promise<void>;
}

/** Forks bench/ws-client.js with `spec`; it is killed if the harness dies first (IPC closes). */
export function startClient(spec: ClientSpec): Client {
  const child = fork(CLIENT_JS, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  child.on('error', () => undefined); // a send after the client disconnected (echo mode ends by itself)
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const report = new Promise<ClientReport>((resolve, reject) => {
    child.once('message', (m) => resolve(m as ClientReport));
    child.once('exit', (code) => reject(new Error(`websocket client exited (${code}) before reporting`)));
  });
  report.catch(() => undefined);
  child.send(spec);
  return {
    report,
    close: async () => {
      if (child.connected && spec.mode === 'idle') child.send('close');
      const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(t);
    },
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface IdleSpec {
  readonly count: number;
  readonly host: string;
  readonly cookie?: string;
}

/** One (e) run against `t`; undefined (with the reason in `say`) when no websocket could be opened. */
export async function measureIdle(t: Target, spec: IdleSpec, round: number, say: (s: string) => void): Promise<Metric | undefined> {
  await sleep(1000);
  const before = memoryKb(processTree(t.pids)).rss_kb;
  const t0 = performance.now();
  const client = startClient({ mode: 'idle', port: t.httpsPort, host: spec.host, path: '/ws', count: spec.count, concurrency: 64, ...(spec.cookie ? { cookie: spec.cookie } : {}) });
  try {
    const r = await client.report;
    const openS = (performance.now() - t0) / 1000;
    if (r.opened === 0) {
      say(`(e) ${t.name}: no websocket opened (${r.error ?? 'no error reported'}): no figure`);
      return undefined;
    }
    if (r.failed > 0) say(`(e) ${t.name}: ${r.failed} of ${spec.count} websockets failed to open (first: ${r.error}); per-connection figure over the ${r.opened} open`);
    await sleep(2000); // let allocations settle (TLS buffers, timers)
    const after = memoryKb(processTree(t.pids)).rss_kb;
    const kb = ((after - before) * 1024) / 1000 / r.opened;
    return {
      scenario: 'e',
      target: t.name,
      round,
      name: 'KB/ws',
      value: Math.round(kb * 100) / 100,
      better: 'lower',
      detail: { opened: r.opened, resumed: r.resumed, failed: r.failed, rss_before_kib: before, rss_after_kib: after, open_s: Math.round(openS * 10) / 10 },
    };
  } finally {
    await client.close();
  }
}
